"""The code track through the loop's own functions: sampling, simulation and evaluation judge
programs in the sandbox, deduplicate them by edit distance, and prepare writes MBPP and
HumanEval as prompt variants."""

from dataclasses import replace
from pathlib import Path

import pytest

from sipf.config import PrepareConfig, SampleConfig, SimulateConfig
from sipf.errors import ConfigError
from sipf.pipeline.evaluation import evaluate_split
from sipf.generation import Completion, SamplingParams
from sipf.pipeline.sampling import grow_pool, sample_paths
from sipf.pipeline.simulation import simulate
from sipf.code.programs import CodeRecord, STOP_SEQUENCES
from sipf.code.kind import CodeKind
from sipf.tasks.kinds import CodeQuestion, MathKind
from sipf.tasks.prompts import format_prompt
from sipf.tasks.registry import task_named

TESTS = ("assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 5) == 4")
RECORD = CodeRecord(id="mbpp-1", text="Write a function to add two numbers.", shown=TESTS,
                    tests=TESTS, entry_point="add", reference="def add(a, b):\n    return a + b")
QUESTION = CodeQuestion("mbpp-1/v0", "'''\nWrite a function to add two numbers.\n'''\n", "",
                        RECORD.reference, RECORD)
RIGHT = "def add(a, b):\n    return a + b\n"
RIGHT_SPACED = "def add(a,  b):\n    return a+b\n"  # the same program, other whitespace
WRONG = "def add(a, b):\n    return a - b\n"
CHEAT = "import sys\ndef add(a, b):\n    sys.exit(0)\n"  # exits before the asserts
FAR_WRONG = "import operator\ndef add(x, y):\n    return operator.sub(x, y)\n"


class ScriptedGenerator:
    """Returns the scripted completions for every prompt; records the calls."""

    def __init__(self, texts):
        self.texts, self.calls = list(texts), []

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        return [[Completion(self.texts[(p * params.n + i) % len(self.texts)], 10)
                 for i in range(params.n)] for p in range(len(prompts))]


def test_code_question_survives_a_parquet_row():
    row = {**QUESTION.to_dict(), "prompt": QUESTION.question}
    assert CodeQuestion.from_row(row) == QUESTION


def test_code_kind_judges_in_the_sandbox_and_a_cheat_fails():
    verdicts = CodeKind().judge([QUESTION] * 4, [RIGHT, WRONG, CHEAT, "```python\n" + RIGHT +
                                                 "```\nassert add(1, 2) == 3"])
    assert [ok for ok, _ in verdicts] == [True, False, False, True]
    assert verdicts[0][1] == "passed"
    assert verdicts[1][1].startswith("failed: AssertionError at test 1")
    assert verdicts[2][1] == "exited early"


def test_code_steps_are_the_program_lines_before_the_stop_words():
    text = "def add(a, b):\n\n    return a + b\nassert add(1, 2) == 3\nprint(add(1, 2))"
    assert CodeKind().steps(text) == ["def add(a, b):", "    return a + b"]
    assert task_named("mbpp").stop("code") == STOP_SEQUENCES
    assert format_prompt("'''\nx\n'''\n", "code") == "'''\nx\n'''\n"


def test_sampling_code_labels_by_tests_and_drops_near_duplicates():
    # RIGHT_SPACED differs in whitespace only and WRONG in one character: both are within
    # the edit-distance threshold of RIGHT, so both are dropped as duplicates.
    generator = ScriptedGenerator([RIGHT, RIGHT_SPACED, WRONG, FAR_WRONG, CHEAT])
    cfg = SampleConfig(n_correct=4, n_wrong=4, per_round=5, max_rounds=1, question_limit=0)
    rows, report = sample_paths(generator, [QUESTION], ["P"], cfg, 1, "m", kind=CodeKind())
    assert [(r["text"], r["outcome"]) for r in rows] == [(RIGHT, True), (FAR_WRONG, False),
                                                          (CHEAT, False)]
    assert rows[2]["answer"] == "exited early"
    stats = report.questions[0]
    assert (stats.duplicates, stats.correct, stats.wrong) == (2, 1, 2)
    # Across iterations: the same program in other whitespace is not new.
    fresh = [{**rows[0], "steps": ["def add(a,b):", "  return a+b"], "path_id": "x"}]
    assert grow_pool(rows, fresh, CodeKind()) == rows


def test_simulating_code_judges_prefix_plus_continuation():
    path = {"question_id": QUESTION.id, "path_id": "p0", "outcome": False,
            "steps": ["def add(a, b):", "    return a - b"]}
    # A rollout continues the prefix: after line 1 it can still be right; after line 2
    # the function has already returned a - b.
    generator = ScriptedGenerator(["    return a + b\n", "    return a * b\n"])
    rollouts, labels = simulate(generator, [path], {QUESTION.id: QUESTION}, {QUESTION.id: "P"},
                                SimulateConfig(k=2, max_paths=0, early_stop=False, search="all"),
                                kind=CodeKind())  # the naive labeller: K rollouts a prefix
    assert [(row["step_index"], row["n_correct"], row["hard"]) for row in labels] == \
        [(0, 1, True), (1, 0, False)]
    assert [row["correct"] for row in rollouts] == [True, False, False, False]
    prompts = generator.calls[0][0]
    assert prompts == ["Pdef add(a, b):\n", "Pdef add(a, b):\n    return a - b\n"]


def test_evaluating_code_is_greedy_pass_at_1():
    generator = ScriptedGenerator([RIGHT, WRONG])
    other = replace(QUESTION, id="mbpp-1/v1")
    result, rows = evaluate_split(generator, [QUESTION, other], ["A", "B"], "test",
                                  SamplingParams(max_new_tokens=8), CodeKind())
    assert (result.correct, result.total) == (1, 2)
    assert [r["predicted_answer"] for r in rows][0] == "passed"


def test_task_kind_and_style_go_together():
    assert isinstance(task_named("mbpp").kind, CodeKind)
    assert isinstance(task_named("arith").kind, MathKind)
    with pytest.raises(ConfigError, match="prompt_style: 'compact' does not go with task 'mbpp'"):
        task_named("mbpp").check_style("compact")
    with pytest.raises(ConfigError, match="prompt_style: 'code' does not go with task 'arith'"):
        task_named("arith").check_style("code")


def test_prepare_mbpp_writes_prompt_variants(shared_data: Path, tmp_path: Path):
    from sipf.tasks.registry import load_task

    cfg = PrepareConfig(task="mbpp", prompt_style="code", train_limit=2, test_limit=3)
    cfg = replace(cfg, mbpp=replace(cfg.mbpp, path=str(shared_data / "mbpp" / "mbpp.jsonl"),
                                    humaneval=str(shared_data / "humaneval" /
                                                  "HumanEval.jsonl.gz")))
    splits = load_task(cfg)
    assert {k: len(v) for k, v in splits.items()} == {"train": 12, "test": 9, "ood": 3}
    assert splits["train"][0].id == "mbpp-601/v0" and splits["test"][0].id == "mbpp-11/v0"
    # Every variant is judged by all three asserts; the reference solution passes them.
    first = splits["test"][0]
    assert len(first.code.tests) == 3 and first.question.count("assert") == 2
    verdicts = CodeKind().judge([first, splits["ood"][0]],
                                [first.solution, splits["ood"][0].solution])
    assert [ok for ok, _ in verdicts] == [True, True]


def test_pass_at_k_counts_passing_samples_per_question():
    from sipf.pipeline.evaluation import pass_at_k_split

    # 4 samples per question: the first question gets 1 right program of 4, the second none.
    generator = ScriptedGenerator([RIGHT, WRONG, WRONG, WRONG, WRONG, WRONG, WRONG, WRONG])
    other = replace(QUESTION, id="mbpp-1/v1")
    result = pass_at_k_split(generator, [QUESTION, other], ["A", "B"],
                             SamplingParams(max_new_tokens=8, temperature=0.8, n=4), [1, 2],
                             CodeKind())
    # pass@1 = (1/4 + 0) / 2; pass@2 = (1 - C(3,2)/C(4,2) + 0) / 2 = (1 - 3/6) / 2
    assert result == pytest.approx({"pass@1": 0.125, "pass@2": 0.25})
