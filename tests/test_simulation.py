"""Simulation (step 2): one batched call, shared prefixes, hard/soft labels, path subsets,
agreement with the arith oracle; the cheaper labellers (early stop, binary and linear search): their
rollout counts, labels against the reference's, seeds."""

import math
import random
from dataclasses import replace

import pytest

from sipf.config import SimulateConfig
from sipf.errors import ConfigError
from sipf.generation import Completion, HFGenerator
from sipf.pipeline.simulation import (label_agreement, prefix_prompt, rollout_rounds, round_seed,
                                     select_paths, simulate, simulation_cost)
from sipf.tasks.arith import step_labels
from sipf.tasks.base import MathRecord, join_steps
from tests.helpers import tiny_model

QUESTION = ("Mia has 23 apples. She finds 4 bags with 6 apples each. She gives away 7 apples. "
            "How many apples does Mia have now?")
PROMPT = "Q: q1\nA:\n"
S1 = "4*6=<<4*6=24>>24 apples are in the bags."
S2_WRONG, S3_WRONG = "Mia has 23+4=<<23+4=27>>27 apples.", "Mia has 27-7=<<27-7=20>>20 apples."
S2, S3 = "Mia has 23+24=<<23+24=47>>47 apples.", "Mia has 47-7=<<47-7=40>>40 apples."
RECORD = MathRecord("q1", QUESTION, "40", join_steps([S1, S2, S3], "40"))
# Two paths that share their first step: five distinct prefixes for six steps.
WRONG_PATH = {"question_id": "q1", "path_id": "q1/it1/000", "steps": [S1, S2_WRONG, S3_WRONG],
              "outcome": False}
RIGHT_PATH = {"question_id": "q1", "path_id": "q1/it1/001", "steps": [S1, S2, S3],
              "outcome": True}

# Rollout answers per prefix (k = 4); None is a rollout that never states an answer.
ROLLOUTS = {
    (S1,): ["40", "40", "20", "40"],
    (S1, S2_WRONG): ["20", "40", "20", "20"],
    (S1, S2_WRONG, S3_WRONG): ["20", "20", "20", "20"],
    (S1, S2): ["40", "40", "40", "40"],
    (S1, S2, S3): ["40", "40", "40", None],
}


def _completion(answer):
    text = f"So the rest.\nThe answer is {answer}" if answer else "I give up."
    return Completion(text, len(text))


class RolloutGenerator:
    """Answers each prefix with its scripted rollouts, in order: a prefix asked for n more
    gets the next n of its script (independent draws, as a sampler makes), so early stop
    sees the first rollouts the reference labeller sees. Records every call."""

    def __init__(self) -> None:
        self.calls = []
        self.scripted = {prefix_prompt(PROMPT, list(steps), len(steps) - 1): answers
                         for steps, answers in ROLLOUTS.items()}
        self.drawn = dict.fromkeys(self.scripted, 0)

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        out = []
        for prompt in prompts:
            start = self.drawn[prompt]
            self.drawn[prompt] += params.n
            out.append([_completion(a) for a in self.scripted[prompt][start:start + params.n]])
        return out


def _simulate(cfg):
    generator = RolloutGenerator()
    rollouts, labels = simulate(generator, [WRONG_PATH, RIGHT_PATH], {"q1": RECORD},
                                {"q1": PROMPT}, cfg)
    return rollouts, labels, generator


def test_prefix_prompt_ends_each_step_with_a_newline():
    assert prefix_prompt("Q: x\nA:\n", ["a", "b", "c"], 0) == "Q: x\nA:\na\n"
    assert prefix_prompt("Q: x\nA:\n", ["a", "b", "c"], 1) == "Q: x\nA:\na\nb\n"


def test_one_generate_call_over_distinct_prefixes_with_n_k():
    cfg = SimulateConfig(early_stop=False, k=4, temperature=0.8, max_new_tokens=30, seed=5,
                         search="all")
    _, _, generator = _simulate(cfg)
    assert len(generator.calls) == 1
    prompts, params = generator.calls[0]
    assert prompts == [prefix_prompt(PROMPT, list(steps), len(steps) - 1) for steps in
                       [(S1,), (S1, S2_WRONG), (S1, S2_WRONG, S3_WRONG), (S1, S2), (S1, S2, S3)]]
    assert (params.n, params.temperature, params.max_new_tokens, params.seed) == (4, 0.8, 30, 5)


def test_rollout_rows_read_the_answer_from_the_completion():
    rollouts, _, _ = _simulate(SimulateConfig(early_stop=False, k=4, search="all"))
    assert len(rollouts) == 6 * 4
    assert set(rollouts[0]) == {"path_id", "question_id", "step_index", "rollout_index",
                                "completion", "answer", "correct"}
    last = [r for r in rollouts if r["path_id"] == "q1/it1/001" and r["step_index"] == 2]
    assert [(r["answer"], r["correct"]) for r in last] == [("40", True)] * 3 + [(None, False)]
    # The shared first step has the same rollouts in both paths.
    first = [[r["completion"] for r in rollouts if r["step_index"] == 0 and r["path_id"] == p]
             for p in ("q1/it1/000", "q1/it1/001")]
    assert first[0] == first[1]


def test_hard_and_soft_labels_with_delta_0_and_2():
    _, labels, _ = _simulate(SimulateConfig(early_stop=False, k=4, search="all"))
    assert [(r["path_id"], r["step_index"], r["n_correct"]) for r in labels] == [
        ("q1/it1/000", 0, 3), ("q1/it1/000", 1, 1), ("q1/it1/000", 2, 0),
        ("q1/it1/001", 0, 3), ("q1/it1/001", 1, 4), ("q1/it1/001", 2, 3)]
    assert [r["hard"] for r in labels] == [True, True, False, True, True, True]
    assert [r["soft"] for r in labels] == [0.75, 0.25, 0.0, 0.75, 1.0, 0.75]
    assert labels[1]["step"] == S2_WRONG and labels[1]["k"] == 4
    _, strict, _ = _simulate(SimulateConfig(early_stop=False, k=4, delta=2, search="all"))
    assert [r["hard"] for r in strict] == [True, False, False, True, True, True]


def test_agreement_with_the_arith_oracle():
    oracle = {p["path_id"]: step_labels(RECORD, p["steps"]) for p in (WRONG_PATH, RIGHT_PATH)}
    assert oracle == {"q1/it1/000": [True, False, False], "q1/it1/001": [True, True, True]}
    _, labels, _ = _simulate(SimulateConfig(early_stop=False, k=4, search="all"))
    agreement = label_agreement(labels, oracle)
    assert agreement == {"steps": 6, "oracle_correct": 4,
                         "hard_accuracy": 5 / 6, "hard_tp": 4, "hard_fp": 1, "hard_tn": 1,
                         "hard_fn": 0,
                         "soft_accuracy": 1.0, "soft_tp": 4, "soft_fp": 0, "soft_tn": 2,
                         "soft_fn": 0}


def test_no_paths_means_no_generation():
    generator = RolloutGenerator()
    assert simulate(generator, [], {}, {}, SimulateConfig()) == ([], [])
    assert generator.calls == []


def _pool(n_correct, n_wrong):
    return [{"path_id": f"p{i}", "outcome": i < n_correct} for i in range(n_correct + n_wrong)]


def test_select_paths_draws_a_balanced_seeded_subset_in_input_order():
    pool = _pool(20, 20)
    assert select_paths(pool, SimulateConfig()) == pool  # max_paths 0: everything
    cfg = SimulateConfig(max_paths=6, paths_per_question=0)
    chosen = select_paths(pool, cfg)
    assert sum(p["outcome"] for p in chosen) == 3 and len(chosen) == 6
    assert chosen == sorted(chosen, key=lambda p: int(p["path_id"][1:]))
    assert select_paths(pool, cfg) == chosen
    assert select_paths(pool, replace(cfg, seed=1)) != chosen


def test_select_paths_fills_a_short_outcome_from_the_other():
    cfg = SimulateConfig(max_paths=5, paths_per_question=0)
    assert sum(p["outcome"] for p in select_paths(_pool(1, 10), cfg)) == 1
    assert sum(p["outcome"] for p in select_paths(_pool(10, 1), cfg)) == 4


def test_select_paths_takes_right_and_wrong_siblings_of_mixed_questions_first():
    # q0-q3: 3 right and 3 wrong paths each; q4-q9: 6 right paths each
    pool = [{"path_id": f"q{q}-{i}", "question_id": f"q{q}", "outcome": q > 3 or i < 3}
            for q in range(10) for i in range(6)]
    chosen = select_paths(pool, SimulateConfig(max_paths=10, paths_per_question=2))
    by_question = {}
    for path in chosen:
        by_question.setdefault(path["question_id"], []).append(path["outcome"])
    assert len(chosen) == 10 and chosen == [p for p in pool if p in chosen]  # input order
    assert {q: sorted(o) for q, o in by_question.items() if q < "q4"} == {
        f"q{q}": [False, True] for q in range(4)}  # every mixed question: one of each
    assert [len(o) for o in by_question.values()] == [2] * 5  # then one right-only question
    assert select_paths(pool, SimulateConfig(max_paths=10, paths_per_question=2, seed=1)) != \
        chosen


def test_select_paths_with_one_path_per_question_spreads_over_questions():
    pool = [{"path_id": f"q{q}-{i}", "question_id": f"q{q}", "outcome": i % 2 == 0}
            for q in range(8) for i in range(4)]
    chosen = select_paths(pool, SimulateConfig(max_paths=5, paths_per_question=1))
    assert len({p["question_id"] for p in chosen}) == 5


@pytest.mark.parametrize("change, key", [
    ({"k": 0}, "simulate.k"), ({"k": 4, "delta": 4}, "simulate.delta"),
    ({"simulator": ""}, "simulate.simulator"), ({"max_paths": -1}, "simulate.max_paths"),
    ({"search": "ternary"}, "simulate.search"),
    ({"paths_per_question": -1}, "simulate.paths_per_question"),
])
def test_config_validation_names_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        replace(SimulateConfig(), **change)


def test_smoke_with_a_real_tiny_model():
    model, tokenizer = tiny_model([QUESTION, S1, S2, S3])
    generator = HFGenerator(model, tokenizer, batch_size=8)
    rollouts, labels = simulate(generator, [WRONG_PATH, RIGHT_PATH], {"q1": RECORD},
                                {"q1": PROMPT},
                                SimulateConfig(early_stop=False, k=2, max_new_tokens=6,
                                               search="all"))
    assert len(rollouts) == 6 * 2 and len(labels) == 6
    assert all(0.0 <= r["soft"] <= 1.0 and r["k"] == 2 for r in labels)


# ----------------------------------------------------------------------------- cheaper labellers
# the naive labeller's: _simulate(SimulateConfig(early_stop=False, k=4, search="all"))
NAIVE_HARD = [True, True, False, True, True, True]


def test_rollout_rounds_double_and_add_up_to_k():
    assert rollout_rounds(8) == [1, 1, 2, 4]
    assert rollout_rounds(4) == [1, 1, 2]
    assert rollout_rounds(5) == [1, 1, 2, 1]
    assert rollout_rounds(1) == [1]
    assert all(sum(rollout_rounds(k)) == k for k in range(1, 40))


def test_early_stop_with_binary_search_is_the_default():
    # the paper's naive labeller (early_stop off, search all) stays the reference the tests
    # compare with, named in full wherever it is used
    cfg = SimulateConfig()
    assert (cfg.early_stop, cfg.search) == (True, "binary")


def test_early_stop_stops_each_prefix_at_its_first_success():
    rollouts, labels, generator = _simulate(SimulateConfig(k=4, early_stop=True, search="all"))
    # Rounds of 1, 1, 2 over the prefixes still open: S1, S2 and S3 succeed at once,
    # S2_WRONG at its 2nd rollout, S3_WRONG never (all 4 drawn).
    assert [(len(prompts), params.n) for prompts, params in generator.calls] == [
        (5, 1), (2, 1), (1, 2)]
    assert [r["hard"] for r in labels] == NAIVE_HARD
    assert [(r["n_correct"], r["k"], r["soft"]) for r in labels] == [
        (1, 1, 1.0), (1, 2, 0.5), (0, 4, 0.0), (1, 1, 1.0), (1, 1, 1.0), (1, 1, 1.0)]
    assert len(rollouts) == sum(r["k"] for r in labels)  # the shared S1 rollout, once a path
    assert simulation_cost([WRONG_PATH, RIGHT_PATH], labels)["rollouts_drawn"] == 9  # of 20


def test_early_stop_with_delta_2_also_stops_once_a_success_is_out_of_reach():
    _, labels, _ = _simulate(SimulateConfig(k=4, delta=2, early_stop=True, search="all"))
    _, naive, _ = _simulate(SimulateConfig(early_stop=False, k=4, delta=2, search="all"))
    assert [r["hard"] for r in labels] == [r["hard"] for r in naive]
    # S3_WRONG: 0 of 2 with 2 left can no longer exceed δ = 2; the others need all 4.
    assert [r["k"] for r in labels] == [4, 4, 2, 4, 4, 4]


class StreamGenerator:
    """Any prefix: its i-th rollout is right with probability 1/2, drawn from the prompt,
    i and the call's seed when ``seeded`` (else from the prompt and i alone, a stream the
    reference and early stop share); a prefix whose last step says 'bad' never is, and with
    ``at_least_one`` every other prefix gets a success among its first ``k``."""

    def __init__(self, k: int, at_least_one: bool = False, seeded: bool = False) -> None:
        self.k, self.at_least_one, self.seeded = k, at_least_one, seeded
        self.calls = []
        self.drawn = {}

    def _right(self, prompt, i, seed):
        if "bad" in prompt.rstrip("\n").rsplit("\n", 1)[-1]:  # the prefix's last step
            return False
        rng = random.Random(f"{prompt}/{i}/{seed if self.seeded else ''}")
        forced = random.Random(prompt).randrange(self.k) if self.at_least_one else -1
        return i == forced or rng.random() < 0.5

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        out = []
        for prompt in prompts:
            start = self.drawn.get(prompt, 0)
            self.drawn[prompt] = start + params.n
            out.append([_completion("40" if self._right(prompt, i, params.seed) else "41")
                        for i in range(start, start + params.n)])
        return out


def _paths(rng, n_paths, monotone=True):
    """Paths of q1 that share openings, with a first wrong step ('bad') anywhere or none;
    not monotone: a wrong step may be followed by right ones."""
    paths = []
    for i in range(n_paths):
        n = rng.randint(1, 7)
        first_wrong = rng.randint(0, n)
        steps = [f"step {j} of {rng.randint(0, 2) if j < 2 else i}" for j in range(n)]
        for j in range(first_wrong, n if monotone else min(first_wrong + 1, n)):
            steps[j] += " bad"
        paths.append({"question_id": "q1", "path_id": f"q1/it1/{i:03d}", "steps": steps,
                      "outcome": first_wrong == n})
    return paths


def _run(paths, cfg, **generator_options):
    generator = StreamGenerator(cfg.k, **generator_options)
    rollouts, labels = simulate(generator, paths, {"q1": RECORD}, {"q1": PROMPT}, cfg)
    return rollouts, labels, generator


@pytest.mark.parametrize("delta", [0, 1, 3])
def test_early_stop_never_changes_a_hard_label(delta):
    """Rollouts drawn in order from the same streams: stopping early gives each prefix the
    hard label all k of them give, for any δ."""
    rng = random.Random(delta)
    for _ in range(20):
        paths = _paths(rng, 6, monotone=rng.random() < 0.5)
        cfg = SimulateConfig(early_stop=False, k=8, delta=delta, search="all")
        naive_rollouts, naive, _ = _run(paths, cfg)
        early_rollouts, early, _ = _run(paths, replace(cfg, early_stop=True))
        assert [r["hard"] for r in early] == [r["hard"] for r in naive]
        assert all(1 <= r["k"] <= 8 and r["soft"] == r["n_correct"] / r["k"] for r in early)
        assert sum(r["k"] for r in early) <= sum(r["k"] for r in naive)
        # Each step's early-stopped rollouts are the first k of the reference's.
        for row in early:
            def correct(rollouts):
                return [r["correct"] for r in rollouts if (r["path_id"], r["step_index"]) ==
                        (row["path_id"], row["step_index"])]
            assert correct(early_rollouts) == correct(naive_rollouts)[:row["k"]]


def test_binary_search_on_the_constructed_paths():
    rollouts, labels, generator = _simulate(SimulateConfig(early_stop=False, k=4, search="binary"))
    # Each path's search visits steps 1 then 2; the shared first step is inferred.
    assert [len(prompts) for prompts, _ in generator.calls] == [2, 2]
    assert [r["hard"] for r in labels] == NAIVE_HARD
    assert [(r["k"], r["n_correct"], r["soft"]) for r in labels] == [
        (0, 0, 1.0), (4, 1, 0.25), (4, 0, 0.0), (0, 0, 1.0), (4, 4, 1.0), (4, 3, 0.75)]
    assert len(rollouts) == 16 and {r["step_index"] for r in rollouts} == {1, 2}
    cost = simulation_cost([WRONG_PATH, RIGHT_PATH], labels)
    assert cost == {"steps": 6, "distinct_prefixes": 5, "estimated_prefixes": 4,
                    "rollouts_drawn": 16, "rollouts_per_step": 16 / 6}


def test_binary_search_with_early_stop_on_the_constructed_paths():
    _, labels, generator = _simulate(SimulateConfig(k=4, search="binary", early_stop=True))
    assert [r["hard"] for r in labels] == NAIVE_HARD
    assert [r["k"] for r in labels] == [0, 2, 4, 0, 1, 1]
    assert [(len(prompts), params.n) for prompts, params in generator.calls] == [
        (2, 1), (1, 1), (2, 1), (1, 1), (1, 2)]


@pytest.mark.parametrize("search", ["binary", "linear"])
@pytest.mark.parametrize("early_stop", [False, True])
def test_search_labels_equal_the_reference_on_monotone_paths(search, early_stop):
    """Right prefixes succeed at least once in k, wrong ones never: a search's labels are
    the reference's, from at most ceil(log2(n + 1)) rolled-out prefixes a path (binary) or
    at most one wrong one (linear)."""
    rng = random.Random(7)
    for _ in range(20):
        paths = _paths(rng, 8)
        cfg = SimulateConfig(early_stop=False, k=4, search="all")
        _, naive, _ = _run(paths, cfg, at_least_one=True)
        _, labels, _ = _run(paths, replace(cfg, search=search, early_stop=early_stop),
                            at_least_one=True)
        assert [r["hard"] for r in labels] == [r["hard"] for r in naive]
        if search == "binary":
            bound = sum(math.ceil(math.log2(len(path["steps"]) + 1)) for path in paths)
            assert simulation_cost(paths, labels)["estimated_prefixes"] <= bound
        else:  # every step up to the first wrong one is rolled out, none after it
            first_wrong = {}
            for r in naive:
                if not r["hard"]:
                    first_wrong.setdefault(r["path_id"], r["step_index"])
            assert all((r["k"] > 0) == (r["step_index"] <= first_wrong.get(r["path_id"], 99))
                       for r in labels)


def test_binary_search_can_differ_from_the_reference_where_a_wrong_step_is_followed_by_right_ones():
    bad_then_good = {"question_id": "q1", "path_id": "p", "steps": ["a", "b bad", "c"],
                     "outcome": True}
    _, naive, _ = _run([bad_then_good], SimulateConfig(early_stop=False, k=4, search="all"),
                       at_least_one=True)
    _, search, _ = _run([bad_then_good], SimulateConfig(early_stop=False, k=4, search="binary"),
                        at_least_one=True)
    assert [r["hard"] for r in naive] == [True, False, True]
    # It visits step 1 (wrong), then step 0 (right): step 2 is inferred wrong.
    assert [(r["hard"], r["k"]) for r in search] == [(True, 4), (False, 4), (False, 0)]


@pytest.mark.parametrize("early_stop, search", [(False, "all"), (True, "all"), (False, "binary"),
                                                (True, "binary"), (True, "linear")])
def test_every_prefix_is_rolled_out_once_and_counted_once(early_stop, search):
    rng = random.Random(3)
    paths = _paths(rng, 12)
    cfg = SimulateConfig(k=8, early_stop=early_stop, search=search)
    rollouts, labels, generator = _run(paths, cfg)
    # A prompt comes back in a later call only to continue its own early-stopped rollouts.
    asked = [prompt for prompts, params in generator.calls for prompt in prompts]
    if not early_stop:
        assert len(asked) == len(set(asked))
    drawn = sum(len(prompts) * params.n for prompts, params in generator.calls)
    assert all(n <= 8 for n in generator.drawn.values())
    assert simulation_cost(paths, labels)["rollouts_drawn"] == drawn
    assert len(rollouts) == sum(r["k"] for r in labels)


@pytest.mark.parametrize("early_stop, search", [(False, "all"), (True, "all"), (False, "binary"),
                                                (True, "binary"), (True, "linear")])
def test_each_round_has_its_own_seed_and_a_rerun_is_identical(early_stop, search):
    paths = _paths(random.Random(5), 10)
    cfg = SimulateConfig(k=8, seed=11, early_stop=early_stop, search=search)
    first = _run(paths, cfg, seeded=True)
    second = _run(paths, cfg, seeded=True)
    assert first[:2] == second[:2]
    seeds = [params.seed for _, params in first[2].calls]
    assert seeds == [round_seed(11, c) for c in range(len(seeds))]
    assert seeds[0] == 11 and len(set(seeds)) == len(seeds)
    reseeded = _run(paths, replace(cfg, seed=12), seeded=True)
    assert [params.seed for _, params in reseeded[2].calls][0] == 12
    assert reseeded[0] != first[0]


def test_linear_search_on_the_constructed_paths():
    _, labels, generator = _simulate(SimulateConfig(k=4, search="linear", early_stop=True))
    assert [r["hard"] for r in labels] == NAIVE_HARD
    # Both paths probe the shared S1 (once), then step 1, then step 2.
    assert [r["k"] for r in labels] == [1, 2, 4, 1, 1, 1]
    assert [len(prompts) for prompts, _ in generator.calls] == [1, 2, 1, 2, 1, 1]
