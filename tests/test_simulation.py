"""Simulation (step 2): one batched call, shared prefixes, hard/soft labels, path subsets,
agreement with the arith oracle."""

from dataclasses import replace

import pytest

from sipf.config import SimulateConfig
from sipf.errors import ConfigError
from sipf.generation import Completion, HFGenerator
from sipf.pipeline.simulation import label_agreement, prefix_prompt, select_paths, simulate
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


class RolloutGenerator:
    """Answers each prefix with its scripted rollouts; records every call."""

    def __init__(self) -> None:
        self.calls = []
        self.scripted = {prefix_prompt(PROMPT, list(steps), len(steps) - 1): answers
                         for steps, answers in ROLLOUTS.items()}

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        texts = [[f"So the rest.\nThe answer is {a}" if a else "I give up." for a in
                  self.scripted[prompt][:params.n]] for prompt in prompts]
        return [[Completion(t, len(t)) for t in ts] for ts in texts]


def _simulate(cfg):
    generator = RolloutGenerator()
    rollouts, labels = simulate(generator, [WRONG_PATH, RIGHT_PATH], {"q1": RECORD},
                                {"q1": PROMPT}, cfg)
    return rollouts, labels, generator


def test_prefix_prompt_ends_each_step_with_a_newline():
    assert prefix_prompt("Q: x\nA:\n", ["a", "b", "c"], 0) == "Q: x\nA:\na\n"
    assert prefix_prompt("Q: x\nA:\n", ["a", "b", "c"], 1) == "Q: x\nA:\na\nb\n"


def test_one_generate_call_over_distinct_prefixes_with_n_k():
    cfg = SimulateConfig(k=4, temperature=0.8, max_new_tokens=30, seed=5)
    _, _, generator = _simulate(cfg)
    assert len(generator.calls) == 1
    prompts, params = generator.calls[0]
    assert prompts == [prefix_prompt(PROMPT, list(steps), len(steps) - 1) for steps in
                       [(S1,), (S1, S2_WRONG), (S1, S2_WRONG, S3_WRONG), (S1, S2), (S1, S2, S3)]]
    assert (params.n, params.temperature, params.max_new_tokens, params.seed) == (4, 0.8, 30, 5)


def test_rollout_rows_read_the_answer_from_the_completion():
    rollouts, _, _ = _simulate(SimulateConfig(k=4))
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
    _, labels, _ = _simulate(SimulateConfig(k=4))
    assert [(r["path_id"], r["step_index"], r["n_correct"]) for r in labels] == [
        ("q1/it1/000", 0, 3), ("q1/it1/000", 1, 1), ("q1/it1/000", 2, 0),
        ("q1/it1/001", 0, 3), ("q1/it1/001", 1, 4), ("q1/it1/001", 2, 3)]
    assert [r["hard"] for r in labels] == [True, True, False, True, True, True]
    assert [r["soft"] for r in labels] == [0.75, 0.25, 0.0, 0.75, 1.0, 0.75]
    assert labels[1]["step"] == S2_WRONG and labels[1]["k"] == 4
    _, strict, _ = _simulate(SimulateConfig(k=4, delta=2))
    assert [r["hard"] for r in strict] == [True, False, False, True, True, True]


def test_agreement_with_the_arith_oracle():
    oracle = {p["path_id"]: step_labels(RECORD, p["steps"]) for p in (WRONG_PATH, RIGHT_PATH)}
    assert oracle == {"q1/it1/000": [True, False, False], "q1/it1/001": [True, True, True]}
    _, labels, _ = _simulate(SimulateConfig(k=4))
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
    chosen = select_paths(pool, SimulateConfig(max_paths=6))
    assert sum(p["outcome"] for p in chosen) == 3 and len(chosen) == 6
    assert chosen == sorted(chosen, key=lambda p: int(p["path_id"][1:]))
    assert select_paths(pool, SimulateConfig(max_paths=6)) == chosen
    assert select_paths(pool, SimulateConfig(max_paths=6, seed=1)) != chosen


def test_select_paths_fills_a_short_outcome_from_the_other():
    assert sum(p["outcome"] for p in select_paths(_pool(1, 10), SimulateConfig(max_paths=5))) == 1
    assert sum(p["outcome"] for p in select_paths(_pool(10, 1), SimulateConfig(max_paths=5))) == 4


@pytest.mark.parametrize("change, key", [
    ({"k": 0}, "simulate.k"), ({"k": 4, "delta": 4}, "simulate.delta"),
    ({"simulator": ""}, "simulate.simulator"), ({"max_paths": -1}, "simulate.max_paths"),
])
def test_config_validation_names_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        replace(SimulateConfig(), **change)


def test_smoke_with_a_real_tiny_model():
    model, tokenizer = tiny_model([QUESTION, S1, S2, S3])
    generator = HFGenerator(model, tokenizer, batch_size=8)
    rollouts, labels = simulate(generator, [WRONG_PATH, RIGHT_PATH], {"q1": RECORD},
                                {"q1": PROMPT}, SimulateConfig(k=2, max_new_tokens=6))
    assert len(rollouts) == 6 * 2 and len(labels) == 6
    assert all(0.0 <= r["soft"] <= 1.0 and r["k"] == 2 for r in labels)
