"""A loader for a user's own math data: one JSON object per line, field names configurable.

Everything is checked at load time, so a typo in row 5,000 fails before any training
starts, with the file, 1-based row and field in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Any

from sipf.errors import DataError
from sipf.tasks.base import ANSWER_PREFIX, MathRecord, answers_match, extract_answer, read_jsonl
from sipf.tasks.gsm8k import gold_solution, parse_answer, require_text


@dataclass(frozen=True)
class FieldMap:
    """Which JSON keys hold each part of a record; ``None`` means the data has no such key.

    Without an id field, ids are the 0-based record index.
    """

    question: str = "question"
    answer: str = "answer"
    solution: str | None = "solution"
    id: str | None = None


def _checked_solution(text: str, answer: str) -> str:
    """``text`` closed by "The answer is N" (a GSM8K "#### N" line is rewritten to it)."""
    last = text.rstrip().split("\n")[-1].strip()
    if last.startswith("####"):
        text, closing = gold_solution(text)
    else:
        closing = extract_answer(last) if last.startswith(ANSWER_PREFIX) else None
        if closing is None:
            raise DataError(f"must end with a line '{ANSWER_PREFIX} N' or '#### N', "
                            f"got {last[-60:]!r}")
    if not answers_match(closing, answer):
        raise DataError(f"ends with answer {closing} but the answer field is {answer}")
    return text


def _record(obj: dict[str, Any], fields: FieldMap, record_id: str, *,
            file: str | PathLike[str], row: int) -> MathRecord:
    question = require_text(obj, fields.question, file=file, row=row)
    raw_answer = require_text(obj, fields.answer, file=file, row=row)
    try:
        answer = parse_answer(raw_answer)
    except DataError as err:
        raise DataError(err.message, file=file, row=row, field=fields.answer) from None
    solution = ""
    if fields.solution is not None and obj.get(fields.solution) is not None:
        text = require_text(obj, fields.solution, file=file, row=row)
        try:
            solution = _checked_solution(text, answer)
        except DataError as err:
            raise DataError(err.message, file=file, row=row, field=fields.solution) from None
    return MathRecord(id=record_id, question=question, answer=answer, solution=solution)


def load_jsonl(path: str | PathLike[str], fields: FieldMap, prefix: str,
               require_solution: bool = False) -> list[MathRecord]:
    """Records of a JSONL file, ids ``<prefix>-<id field>`` or ``<prefix>-<index>``;
    ``require_solution`` (training data) refuses a record without a gold solution."""
    records: list[MathRecord] = []
    first_row: dict[str, int] = {}  # id -> row that used it, for duplicate messages
    for index, (row, obj) in enumerate(read_jsonl(path)):
        if fields.id is None:
            key = f"{index:05d}"
        else:
            key = require_text(obj, fields.id, file=path, row=row)
            if key in first_row:
                raise DataError(f"duplicate id {key!r} (first used in row {first_row[key]})",
                                file=path, row=row, field=fields.id)
            first_row[key] = row
        record = _record(obj, fields, f"{prefix}-{key}", file=path, row=row)
        if require_solution and not record.solution:
            raise DataError("missing or empty: training records need a gold solution (SFT "
                            "trains on them)", file=path, row=row,
                            field=fields.solution or "solution")
        records.append(record)
    return records
