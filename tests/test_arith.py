"""The arithmetic task: generation (determinism, splits, format) and the step oracle."""

from __future__ import annotations

import dataclasses

import pytest

from sipf.config import ArithConfig
from sipf.errors import ConfigError
from sipf.tasks.arith import (Computation, Op, Wording, first_error, generate,
                              problems, render, solution_is_correct, step_labels)
from sipf.tasks.base import (MathRecord, annotation_holds, annotations, extract_answer,
                             split_steps)

CFG = ArithConfig()
QUESTION = ("Mia has 23 apples. She finds 4 bags with 6 apples each. She gives away 7 apples. "
            "How many apples does Mia have now?")
SOLUTION = ("4*6=<<4*6=24>>24 apples are in the bags.\n"
            "Mia has 23+24=<<23+24=47>>47 apples.\n"
            "Mia has 47-7=<<47-7=40>>40 apples.\n"
            "The answer is 40")
RECORD = MathRecord("arith-test-00000", QUESTION, "40", SOLUTION)
PRODUCT, TOTAL, FINAL = split_steps(SOLUTION)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[tuple[Computation, MathRecord]]]:
    return {split: problems(CFG, split) for split in ("train", "test", "ood")}


# ----------------------------------------------------------------------------- generation
def test_render_matches_the_documented_example():
    computation = Computation(23, (Op("groups", 4, 6), Op("sub", 7)))
    wording = Wording("Mia", "She", "apples", "bags")
    assert render(computation, wording) == (QUESTION, SOLUTION, "40")


def test_deterministic_per_config(splits):
    assert generate(CFG, "test") == [record for _, record in splits["test"]]
    assert generate(dataclasses.replace(CFG, seed=1), "test") != generate(CFG, "test")


def test_counts_ids_and_no_duplicates(splits):
    for split, count in (("train", CFG.n_train), ("test", CFG.n_test), ("ood", CFG.n_ood)):
        records = [record for _, record in splits[split]]
        assert len(records) == count
        assert records[42].id == f"arith-{split}-00042"
        assert len({c.key() for c, _ in splits[split]}) == count


def test_train_and_test_are_disjoint(splits):
    train, test = splits["train"], splits["test"]
    assert not {c.key() for c, _ in train} & {c.key() for c, _ in test}
    assert not {r.question for _, r in train} & {r.question for _, r in test}


def test_step_counts_and_value_range(splits):
    for split, (lo, hi) in (("train", (2, 3)), ("test", (2, 3)), ("ood", (2, 3))):
        first, last = (60, 99) if split == "ood" else (10, 59)
        for computation, record in splits[split]:
            assert lo <= len(computation.ops) <= hi
            assert first <= computation.start <= last
            n_groups = sum(op.kind == "groups" for op in computation.ops)
            assert len(split_steps(record.solution)) == len(computation.ops) + n_groups
            assert all(0 <= v <= CFG.max_value for v in computation.totals())


def test_gold_solutions_are_well_formed_and_pass_the_oracle(splits):
    for pairs in splits.values():
        for computation, record in pairs:
            steps = split_steps(record.solution)
            values = [v for step in steps for _, v in annotations(step)]
            assert all(annotation_holds(e, v) for step in steps for e, v in annotations(step))
            assert all(0 <= int(v) <= CFG.max_value for v in values)
            assert extract_answer(record.solution) == record.answer == str(computation.totals()[-1])
            assert step_labels(record, steps) == [True] * len(steps)
            assert solution_is_correct(record, record.solution)


def test_space_too_small_is_a_clear_error():
    tiny = ArithConfig(n_train=5, start_min=10, start_max=10, operand_min=2, operand_max=2,
                       min_steps=2, max_steps=2, operations=("add",))
    with pytest.raises(ConfigError, match="space holds 1 computations"):
        generate(tiny, "train")


@pytest.mark.parametrize("changes, field", [
    ({"n_train": -1}, "n_train"),
    ({"min_steps": 0}, "min_steps"),
    ({"max_steps": 1}, "max_steps"),
    ({"ood_start_min": 50}, "ood_min_steps"),  # neither steps nor starts differ
    ({"ood_min_steps": 4, "ood_max_steps": 3}, "ood_max_steps"),
    ({"ood_start_min": 90, "ood_start_max": 80}, "ood_start_max"),
    ({"start_min": 0}, "start_min"),
    ({"start_max": 5}, "start_max"),
    ({"operand_min": 1}, "operand_min"),
    ({"operand_max": 1}, "operand_max"),
    ({"max_value": 80}, "max_value"),
    ({"operations": ()}, "operations"),
    ({"operations": ("add", "div")}, "operations"),
    ({"operations": ("add", "add")}, "operations"),
    ({"operations": ("mul",), "operand_min": 5}, "operations"),
])
def test_config_errors_name_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"arith\.{field}:"):
        ArithConfig(**changes)


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="unknown split"):
        generate(CFG, "dev")


def test_operations_list_becomes_a_tuple():
    assert ArithConfig(operations=["add", "sub"]).operations == ("add", "sub")


# ----------------------------------------------------------------------------- oracle
@pytest.mark.parametrize("steps, labels", [
    pytest.param([PRODUCT, TOTAL, FINAL], [True, True, True], id="gold"),
    pytest.param([PRODUCT, "Mia has 23+24=<<23+24=48>>48 apples.",
                  "Mia has 48-7=<<48-7=41>>41 apples."],
                 [True, False, False], id="wrong-arithmetic-then-built-on"),
    pytest.param([PRODUCT, TOTAL, "Mia has 24-7=<<24-7=17>>17 apples."],
                 [True, True, False], id="right-arithmetic-wrong-operand"),
    pytest.param([TOTAL, FINAL], [False, False], id="skipped-step"),
    pytest.param(["Mia has 23-7=<<23-7=16>>16 apples.", PRODUCT, TOTAL, FINAL],
                 [False, True, True, True], id="correct-after-error"),
    pytest.param(["4*6 is 24 apples in the bags.", TOTAL, FINAL],
                 [False, False, False], id="no-annotation"),
    pytest.param(["Mia has 23 apples.", PRODUCT, TOTAL, FINAL],
                 [False, True, True, True], id="restatement-without-annotation"),
    pytest.param([PRODUCT, "Mia has 23+4=<<23+4=27>>27 apples.", TOTAL, FINAL],
                 [True, False, True, True], id="value-never-needed"),
    pytest.param([PRODUCT, TOTAL, TOTAL, FINAL], [True, True, True, True], id="recompute"),
    pytest.param(["Mia has 23+4*6=<<23+4*6=47>>47 apples.", FINAL], [True, True], id="merged"),
    pytest.param(["<<4*6=24>>24 and <<23+24=47>>47", FINAL], [True, True], id="two-annotations"),
    pytest.param(["<<4*6=24>>24 and <<23+24=47>>47 apples then <<47+7=54>>54", FINAL],
                 [False, False], id="last-annotation-not-needed"),
    pytest.param(["<<apples=24>>24", "<<4*6=24.0>>24", "<<4,6=46>>46"], [False, True, False],
                 id="garbage-decimal-comma"),
])
def test_step_labels(steps, labels):
    assert step_labels(RECORD, steps) == labels
    assert first_error(RECORD, steps) == (labels.index(False) if False in labels else None)


def test_solution_is_correct():
    assert solution_is_correct(RECORD, SOLUTION)
    assert not solution_is_correct(RECORD, SOLUTION.replace("is 40", "is 41"))
    assert not solution_is_correct(RECORD, f"{PRODUCT}\nThe answer is 40")  # not derived
    assert not solution_is_correct(RECORD, "The answer is 40")
    assert not solution_is_correct(RECORD, f"{TOTAL}\n{PRODUCT}\n{FINAL}\nThe answer is 40")
