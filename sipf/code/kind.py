"""The code track's task kind: a completion's steps are its program's lines, and a program is
judged against its tests in the sandbox (never in this process); two programs are one when
their edit distance is small (the paper's rule, :mod:`sipf.code.dedup`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sipf.code.dedup import CodeDeduper
from sipf.code.judge import judge_completions
from sipf.code.programs import CodeRecord, extract_program, join_code_steps, split_code_steps
from sipf.tasks.kinds import CodeQuestion, Question


class ProgramDeduper:
    def __init__(self, previous: Iterable[Sequence[str]] = ()) -> None:
        self.inner = CodeDeduper.of(join_code_steps(steps) for steps in previous)

    def add(self, steps: Sequence[str]) -> bool:
        return self.inner.add(join_code_steps(steps))


@dataclass(frozen=True)
class CodeKind:
    """Programs judged in the sandbox; ``workers`` sandbox processes, ``timeout_s`` each."""

    workers: int = 2
    timeout_s: float = 3.0
    name: str = "code"

    def steps(self, text: str) -> list[str]:
        return split_code_steps(extract_program(text))

    def judge(self, records: Sequence[Question], texts: Sequence[str]
              ) -> list[tuple[bool, str | None]]:
        if not texts:
            return []
        code = [_code_record(record) for record in records]
        verdicts = judge_completions(code, list(texts), workers=self.workers,
                                     timeout_s=self.timeout_s)
        return [(v.passed, v.reason) for v in verdicts]

    def deduper(self, previous: Iterable[Sequence[str]] = ()) -> ProgramDeduper:
        return ProgramDeduper(previous)

    def rollout_text(self, prefix_steps: Sequence[str], completion: str) -> str:
        return join_code_steps(prefix_steps) + completion


def _code_record(record: Question) -> CodeRecord:
    if not isinstance(record, CodeQuestion):
        raise TypeError(f"{record.id}: a code task needs CodeQuestion records, got "
                        f"{type(record).__name__}")
    return record.code

