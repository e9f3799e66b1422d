"""What the loop needs to know about a task's completions: steps, verdicts and duplicates.

Sampling, simulation and evaluation are the same for math and code except for four things,
which a :class:`TaskKind` supplies (:class:`MathKind` here; the code track's is
:class:`sipf.code.kind.CodeKind`):

- ``steps(text)``: a math solution's lines before "The answer is"; a program's non-empty
  lines (docs/method.md, Notation);
- ``judge(records, texts)``: a math answer is compared with the gold number; a program is
  run against its tests in the sandbox (never in this process), all at once so the
  sandbox's worker pool stays busy;
- ``deduper(...)``: math paths are one path when their equations are; programs when their
  edit distance is small (:mod:`sipf.code.dedup`);
- ``rollout_text(steps, completion)``: what a simulator's continuation of a step prefix is
  judged as (math: the continuation, which holds the answer; code: the whole program).

A code question reaches the stages as a :class:`CodeQuestion`: the ``MathRecord`` fields the
stages read (``question`` is the prompt variant, ``solution`` the reference program) plus
the :class:`~sipf.code.programs.CodeRecord` that judges it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Union

from sipf.tasks.base import MathRecord, annotations, answers_match, extract_answer, split_steps
from sipf.code.programs import CodeRecord


@dataclass(frozen=True)
class CodeQuestion:
    """One prompt variant of a code task, seen through the fields every stage reads."""

    id: str
    question: str  # the prompt variant: task text, shown tests, header
    answer: str  # unused for code (no gold number); "" keeps the Parquet schema
    solution: str  # the reference completion
    code: CodeRecord

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "answer": self.answer,
                "solution": self.solution, "code": json.dumps(asdict(self.code))}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CodeQuestion:
        fields = json.loads(row["code"])
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        return cls(row["id"], row["question"], row["answer"], row["solution"],
                   CodeRecord(**fields))


Question = Union[MathRecord, CodeQuestion]


class Deduper(Protocol):
    def add(self, steps: Sequence[str]) -> bool:
        """Remember ``steps``; False when they duplicate a path already remembered."""
        ...


class TaskKind(Protocol):
    name: str

    def steps(self, text: str) -> list[str]: ...

    def judge(self, records: Sequence[Question], texts: Sequence[str]
              ) -> list[tuple[bool, str | None]]:
        """``(correct, answer)`` per text: the extracted number, or the sandbox's reason."""
        ...

    def deduper(self, previous: Iterable[Sequence[str]] = ()) -> Deduper: ...

    def rollout_text(self, prefix_steps: Sequence[str], completion: str) -> str: ...


# ----------------------------------------------------------------------------- math
def equation_key(steps: Sequence[str]) -> tuple[str, ...]:
    """The path's equations in order, whitespace removed: two paths that compute the same
    things the same way are one path, however the prose around them differs.

    A path without a single ``<<expr=value>>`` annotation (what most pretrained SLMs write)
    is keyed by its whitespace-normalised steps instead: otherwise every such path of a
    question would share the empty key and all but one would be dropped.
    """
    equations = tuple("".join(f"{expr}={value}".split())
                      for step in steps for expr, value in annotations(step))
    return equations or ("<no annotations>", *(" ".join(step.split()) for step in steps))


class EquationDeduper:
    def __init__(self, previous: Iterable[Sequence[str]] = ()) -> None:
        self.seen = {equation_key(steps) for steps in previous}

    def add(self, steps: Sequence[str]) -> bool:
        key = equation_key(steps)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


class MathKind:
    name = "math"

    def steps(self, text: str) -> list[str]:
        return split_steps(text)

    def judge(self, records: Sequence[Question], texts: Sequence[str]
              ) -> list[tuple[bool, str | None]]:
        answers = [extract_answer(text) for text in texts]
        return [(answers_match(a, r.answer), a) for r, a in zip(records, answers)]

    def deduper(self, previous: Iterable[Sequence[str]] = ()) -> EquationDeduper:
        return EquationDeduper(previous)

    def rollout_text(self, prefix_steps: Sequence[str], completion: str) -> str:
        return completion  # the prefix holds steps only: the answer is in the continuation
