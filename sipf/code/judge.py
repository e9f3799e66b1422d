"""Judging code completions in the sandbox (pass@k over the verdicts: sipf.pipeline.evaluation).

``judge_completions(records, completions)`` turns each (record, completion) pair into the
program :meth:`~sipf.code.programs.CodeRecord.program` makes of it and judges it against the
record's tests with :func:`sipf.code.sandbox.judge_many`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipf.code.sandbox import Job, Verdict, judge_many
from sipf.code.programs import CodeRecord


def completion_job(record: CodeRecord, completion: str) -> Job:
    """The sandbox job for one completion: the record's program, setup, tests, entry point,
    and its prefix as trusted code: HumanEval's ``check`` runs in the parent with the prompt's
    own helpers (``poly``, ``encode_cyclic``), whatever the completion redefines."""
    return Job(record.program(completion), record.tests, record.setup, record.entry_point,
               trusted=record.prefix)


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
