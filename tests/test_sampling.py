"""Sampling (step 1): quotas, equation dedup, dropped annotations, budgets, rows, seeds."""

import itertools
from dataclasses import replace

import pytest

from sipf.config import SampleConfig
from sipf.errors import ConfigError
from sipf.generation import Completion, HFGenerator
from sipf.pipeline.sampling import (annotations_hold, equation_key, grow_pool,
                           quota_for_iteration, sample_paths)
from sipf.tasks.base import MathRecord, split_steps
from tests.helpers import tiny_model

QUESTION = ("Mia has 23 apples. She finds 4 bags with 6 apples each. She gives away 7 apples. "
            "How many apples does Mia have now?")
RECORD = MathRecord("q1", QUESTION, "40", "")
HOPELESS = MathRecord("q2", "Leo has 10 pens. He gets 5 more pens. How many pens now?", "15", "")
PROMPT, PROMPT2 = "Q: q1\nA:\n", "Q: q2\nA:\n"

CORRECT_1 = ("4*6=<<4*6=24>>24 apples are in the bags.\nMia has 23+24=<<23+24=47>>47 apples.\n"
             "Mia has 47-7=<<47-7=40>>40 apples.\nThe answer is 40")
# Same equations as CORRECT_1 in other words and spacing: a duplicate.
CORRECT_1_REWORDED = ("The bags hold 4 * 6 =<< 4 * 6 = 24 >>24.\nSo 23+24=<<23+24=47>>47.\n"
                      "Then 47-7=<<47-7=40>>40.\nThe answer is 40")
CORRECT_2 = ("Mia has 23+4*6=<<23+4*6=47>>47 apples.\nMia has 47-7=<<47-7=40>>40 apples.\n"
             "The answer is 40")
CORRECT_3 = ("Mia has 4*6+23=<<4*6+23=47>>47 apples.\nMia has 47-7=<<47-7=40>>40 apples.\n"
             "The answer is 40")
WRONG_1 = "Mia has 23+4=<<23+4=27>>27 apples.\nMia has 27-7=<<27-7=20>>20 apples.\nThe answer is 20"
WRONG_2 = "Mia has 23+6=<<23+6=29>>29 apples.\nMia has 29-7=<<29-7=22>>22 apples.\nThe answer is 22"
FALSE_ANNOTATION = ("Mia has 23+24=<<23+24=48>>48 apples.\nMia has 48-7=<<48-7=40>>40.\n"
                    "The answer is 40")
NO_STEPS = "The answer is 40"


class ScriptedGenerator:
    """Hands out each prompt's scripted completions in order, ``params.n`` per call; an
    exhausted script yields empty (invalid) completions. Records every call."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = {prompt: list(texts) for prompt, texts in scripts.items()}
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        out = []
        for prompt in prompts:
            script = self.scripts[prompt]
            texts = [script.pop(0) if script else "" for _ in range(params.n)]
            out.append([Completion(text, max(1, len(text))) for text in texts])
        return out


def _still_clock() -> float:
    """Wall time is the one input that is not fixed; tests of determinism freeze it."""
    return 0.0


def _sample(scripts, cfg, records=(RECORD,), prompts=(PROMPT,), iteration=1, **kwargs):
    generator = ScriptedGenerator(scripts)
    rows, report = sample_paths(generator, list(records), list(prompts), cfg, iteration, "sft",
                                **kwargs)
    return rows, report, generator


def test_quota_shrinks_per_iteration_as_in_the_paper():
    assert [quota_for_iteration(4, k) for k in range(1, 5)] == [4, 2, 1, 1]
    assert [quota_for_iteration(50, k) for k in range(1, 6)] == [50, 12, 3, 1, 1]
    assert quota_for_iteration(0, 3) == 0  # "keep none" stays none
    with pytest.raises(ValueError):
        quota_for_iteration(4, 0)


def test_paths_without_annotations_are_keyed_by_their_steps():
    plain_1 = ["She has 23 + 24 = 47 pens.", "Then 47 - 7 = 40."]
    plain_2 = ["She has 23 + 24 = 47 pens.", "Then 47 - 8 = 39."]
    assert equation_key(plain_1) != equation_key(plain_2)
    respaced = ["She  has 23 + 24 = 47 pens. ", "Then 47 - 7 = 40."]
    assert equation_key(plain_1) == equation_key(respaced)
    assert equation_key(plain_1) != equation_key(split_steps(CORRECT_1))


def test_equation_key_ignores_prose_and_whitespace():
    assert equation_key(split_steps(CORRECT_1)) == equation_key(split_steps(CORRECT_1_REWORDED))
    assert equation_key(split_steps(CORRECT_1)) == ("4*6=24", "23+24=47", "47-7=40")
    assert equation_key(split_steps(CORRECT_1)) != equation_key(split_steps(CORRECT_2))
    assert annotations_hold(split_steps(CORRECT_1))
    assert not annotations_hold(split_steps(FALSE_ANNOTATION))


def test_quotas_end_sampling_and_paths_keep_generation_order():
    cfg = SampleConfig(n_correct=2, n_wrong=1, per_round=4, max_rounds=5)
    script = [CORRECT_1, WRONG_1, WRONG_2, CORRECT_2,  # round 1: C, W, W over quota, C
              CORRECT_3]
    rows, report, generator = _sample({PROMPT: script}, cfg)
    assert [r["text"] for r in rows] == [CORRECT_1, WRONG_1, CORRECT_2]
    assert [r["outcome"] for r in rows] == [True, False, True]
    assert len(generator.calls) == 1  # both quotas met after the first round
    stats = report.questions[0]
    assert (stats.rounds, stats.attempts, stats.correct, stats.wrong) == (1, 4, 2, 1)
    assert report.summary()["questions_met_quota"] == 1


def test_duplicates_false_annotations_and_stepless_paths_are_dropped():
    cfg = SampleConfig(n_correct=3, n_wrong=3, per_round=3, max_rounds=2,
                       drop_false_annotations=True)
    script = [CORRECT_1, CORRECT_1_REWORDED, FALSE_ANNOTATION, NO_STEPS, CORRECT_1, WRONG_1]
    rows, report, _ = _sample({PROMPT: script}, cfg)
    assert [r["text"] for r in rows] == [CORRECT_1, WRONG_1]
    stats = report.questions[0]
    assert (stats.invalid, stats.duplicates, stats.attempts) == (2, 2, 6)


def test_hopeless_question_spends_its_rounds_and_is_reported():
    cfg = SampleConfig(n_correct=1, n_wrong=1, per_round=2, max_rounds=3)
    scripts = {PROMPT: [CORRECT_1, WRONG_1],
               PROMPT2: ["Leo has 10+2=<<10+2=12>>12 pens.\nThe answer is 12"] * 6}
    rows, report, generator = _sample(scripts, cfg, records=(RECORD, HOPELESS),
                                      prompts=(PROMPT, PROMPT2))
    # q1 is done after round 1; q2 alone is sampled in rounds 2 and 3, then given up.
    assert [prompts for prompts, _ in generator.calls] == [[PROMPT, PROMPT2], [PROMPT2], [PROMPT2]]
    q1, q2 = report.questions
    assert (q1.rounds, q1.correct, q1.wrong) == (1, 1, 1)
    assert (q2.rounds, q2.attempts, q2.correct, q2.wrong, q2.duplicates) == (3, 6, 0, 1, 5)
    summary = report.summary()
    assert summary["questions_no_correct"] == 1 and summary["questions_met_quota"] == 1
    assert [r["question_id"] for r in rows] == ["q1", "q1", "q2"]


def test_wall_clock_budget_stops_a_question():
    # Each round takes 1 s on the fake clock; a 1.5 s budget allows two rounds.
    cfg = SampleConfig(n_correct=1, n_wrong=1, per_round=1, max_rounds=4,
                       max_seconds_per_question=1.5)
    _, report, generator = _sample({PROMPT: [WRONG_1] * 4}, cfg,
                                   clock=itertools.count().__next__)
    assert len(generator.calls) == 2
    assert report.questions[0].seconds == 2


def test_generation_calls_carry_the_config_and_a_seed_per_round_and_iteration():
    cfg = SampleConfig(temperature=0.7, top_p=0.9, max_new_tokens=50, per_round=2, max_rounds=2,
                       n_correct=1, n_wrong=1, seed=3)
    _, _, gen1 = _sample({PROMPT: []}, cfg, stop=("\nQ:",))
    _, _, gen2 = _sample({PROMPT: []}, cfg, iteration=2)
    params = [p for _, p in gen1.calls]
    assert all((p.n, p.temperature, p.top_p, p.max_new_tokens, p.stop)
               == (2, 0.7, 0.9, 50, ("\nQ:",)) for p in params)
    seeds = {p.seed for _, p in gen1.calls + gen2.calls}
    assert len(seeds) == 4
    _, _, again = _sample({PROMPT: []}, cfg, stop=("\nQ:",))
    assert [p.seed for _, p in again.calls] == [p.seed for p in params]


def test_row_schema_ids_and_determinism():
    cfg = SampleConfig(n_correct=4, n_wrong=4, per_round=4, max_rounds=1)
    script = [CORRECT_1, WRONG_1, CORRECT_2, NO_STEPS]
    rows, report, _ = _sample({PROMPT: list(script)}, cfg, iteration=2, clock=_still_clock)
    assert report.quota_correct == 2 and report.quota_wrong == 2
    assert rows[0] == {"question_id": "q1", "path_id": "q1/it2/000", "text": CORRECT_1,
                       "steps": CORRECT_1.split("\n")[:3], "answer": "40", "outcome": True,
                       "iteration": 2, "generator": "sft"}
    assert [r["path_id"] for r in rows] == ["q1/it2/000", "q1/it2/001", "q1/it2/002"]
    assert rows[1]["answer"] == "20" and rows[1]["outcome"] is False
    again, report_again, _ = _sample({PROMPT: list(script)}, cfg, iteration=2, clock=_still_clock)
    assert again == rows and report_again == report


def test_question_limit_keeps_the_first_questions():
    cfg = SampleConfig(question_limit=1, per_round=1, max_rounds=1)
    rows, report, generator = _sample({PROMPT: [CORRECT_1]}, cfg, records=(RECORD, HOPELESS),
                                      prompts=(PROMPT, PROMPT2))
    assert [s.question_id for s in report.questions] == ["q1"]
    assert generator.calls[0][0] == [PROMPT]


@pytest.mark.parametrize("change, key", [
    ({"top_p": 0.0}, "sample.top_p"), ({"per_round": 0}, "sample.per_round"),
    ({"n_correct": 0, "n_wrong": 0}, "sample.n_correct"),
    ({"max_seconds_per_question": -1.0}, "sample.max_seconds_per_question"),
])
def test_config_validation_names_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        replace(SampleConfig(), **change)


def test_smoke_with_a_real_tiny_model():
    model, tokenizer = tiny_model([QUESTION, CORRECT_1])
    generator = HFGenerator(model, tokenizer, batch_size=8)
    cfg = SampleConfig(per_round=3, max_rounds=2, max_new_tokens=12)
    rows, report = sample_paths(generator, [RECORD, HOPELESS], [PROMPT, PROMPT2], cfg, 1, "tiny")
    assert [s.attempts for s in report.questions] == [6, 6]
    for row in rows:
        assert set(row) == {"question_id", "path_id", "text", "steps", "answer", "outcome",
                            "iteration", "generator"}
        assert row["steps"]


def test_false_annotations_can_be_kept_as_wrong_paths():
    from sipf.pipeline.sampling import SamplingReport, QuestionStats, _keep, _screen
    from sipf.tasks.base import MathRecord
    from sipf.tasks.kinds import MathKind

    record = MathRecord("q", "Mia has 5 pens. She gets 3 more pens. How many?", "8",
                        "Mia has 5+3=<<5+3=8>>8 pens.\nThe answer is 8")
    slip = "Mia has 5+3=<<5+3=9>>9 pens.\nThe answer is 9"
    for drop, kept_count in ((True, 0), (False, 1)):
        report = SamplingReport(4, 4, [QuestionStats("q")])
        kept: list = []
        kind = MathKind()
        steps = _screen(slip, kind, report.questions[0], kind.deduper(), drop)
        if steps is not None:
            (outcome, answer), = kind.judge([record], [slip])
            _keep(slip, steps, answer, outcome, report.questions[0], kept, report)
        assert len(kept) == kept_count
        assert report.questions[0].invalid == (1 if drop else 0)
    assert SampleConfig().drop_false_annotations is True  # the paper's filter


def test_grow_pool_keeps_the_old_pool_and_adds_only_new_equations():
    def row(qid, steps, iteration):
        return {"question_id": qid, "steps": steps, "iteration": iteration}
    old = [row("q1", ["a 1+2=<<1+2=3>>3"], 1), row("q2", ["b 1+2=<<1+2=3>>3"], 1)]
    fresh = [row("q1", ["other words 1+2=<<1+2=3>>3"], 2),   # same equations: a duplicate
             row("q1", ["1+3=<<1+3=4>>4"], 2),               # new for q1
             row("q3", ["b 1+2=<<1+2=3>>3"], 2),             # same equations, other question
             row("q1", ["1+3=<<1+3=4>>4"], 2)]               # duplicate within the new ones
    pool = grow_pool(old, fresh)
    assert pool == old + [fresh[1], fresh[2]]
