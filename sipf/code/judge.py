"""Judging code completions in the sandbox, and the unbiased pass@k estimator.

``judge_completions(records, completions)`` turns each (record, completion) pair into the
program :meth:`~sipf.code.programs.CodeRecord.program` makes of it and judges it against the
record's tests with :func:`sipf.code.sandbox.judge_many`. ``pass_at_k`` is Chen et al.'s (2021)
estimator ``1 - C(n-c, k) / C(n, k)`` in its numerically stable product form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from sipf.code.sandbox import Job, Verdict, judge_many
from sipf.code.programs import CodeRecord


def pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of ``k`` samples drawn without replacement from ``n``
    (``c`` of them correct) is correct: ``1 - prod_{i=n-c+1..n} (1 - k / i)``."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over problems given as ``(n, c)`` pairs."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("no problems")
    return sum(values) / len(values)


def completion_job(record: CodeRecord, completion: str) -> Job:
    """The sandbox job for one completion: the record's program, setup, tests, entry point."""
    return Job(record.program(completion), record.tests, record.setup, record.entry_point)


def judge_completions(records: Sequence[CodeRecord], completions: Sequence[str],
                      workers: int = 2, timeout_s: float = 3.0, **limits) -> list[Verdict]:
    """The verdict for ``completions[i]`` as a solution of ``records[i]``, in order.

    A completion is raw model text: :func:`~sipf.code.programs.extract_program` is applied (and,
    for HumanEval, the original prompt put in front) by ``record.program``. ``limits`` are
    :func:`sipf.code.sandbox.judge`'s other keyword arguments (``memory_mb``, ...).
    """
    if len(records) != len(completions):
        raise ValueError(f"{len(records)} records but {len(completions)} completions")
    jobs = [completion_job(record, completion)
            for record, completion in zip(records, completions)]
    return judge_many(jobs, workers=workers, timeout_s=timeout_s, **limits)
