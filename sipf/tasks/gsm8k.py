"""GSM8K (Cobbe et al., 2021): loading, and rewriting gold answers into the project's format.

A GSM8K ``answer`` field is the reasoning, one step per line with ``<<expr=value>>``
annotations, then a final ``#### N`` line. The project closes a solution with
``The answer is N`` instead (what the model learns to write and what
:func:`~sipf.tasks.base.extract_answer` reads), so the last line is rewritten.
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path
from typing import Any

from sipf.errors import DataError
from sipf.tasks.base import MathRecord, answer_line, normalize_number, read_jsonl

# A whole answer: optional "$", optional ASCII minus, digits with commas, optional decimals.
# Stricter than float(): "nan", "1e5" or "5 apples" would not round-trip through extract_answer.
_PLAIN_NUMBER = re.compile(r"\$?\s*-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")


def parse_answer(text: str) -> str:
    """The normalised number in ``text`` ('1,000' -> '1000'); DataError when it is not one."""
    if not _PLAIN_NUMBER.fullmatch(text.strip()):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise DataError(f"expected a number, got {shown!r}")
    return normalize_number(text)


def require_text(obj: dict[str, Any], field: str, *, file: str | PathLike[str] | None,
                 row: int | None) -> str:
    """``obj[field]`` as a non-empty string; a number is accepted and turned into text."""
    if field not in obj:
        raise DataError("missing", file=file, row=row, field=field)
    value = obj[field]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(f"expected text, got {type(value).__name__}", file=file, row=row,
                        field=field)
    if not value.strip():
        raise DataError("empty", file=file, row=row, field=field)
    return value


def gold_solution(raw_answer: str) -> tuple[str, str]:
    """``(solution, answer)`` from a GSM8K answer field: "#### N" becomes "The answer is N"."""
    lines = raw_answer.rstrip().split("\n")
    final = lines[-1].strip()
    if not final.startswith("####"):
        raise DataError("no final '#### N' line")
    answer = parse_answer(final.removeprefix("####"))
    reasoning = "\n".join(lines[:-1]).rstrip()
    closing = answer_line(answer)
    return (f"{reasoning}\n{closing}" if reasoning else closing), answer


def _record(obj: dict[str, Any], split: str, index: int, *, file: str | PathLike[str],
            row: int) -> MathRecord:
    question = require_text(obj, "question", file=file, row=row)
    raw = require_text(obj, "answer", file=file, row=row)
    try:
        solution, answer = gold_solution(raw)
    except DataError as err:
        raise DataError(err.message, file=file, row=row, field="answer") from None
    return MathRecord(id=f"gsm8k-{split}-{index:05d}", question=question, answer=answer,
                      solution=solution)


def _load_file(path: Path, split: str) -> list[MathRecord]:
    return [_record(obj, split, index, file=path, row=row)
            for index, (row, obj) in enumerate(read_jsonl(path))]


def load_gsm8k(source: str = "openai/gsm8k", config: str = "main",
               splits: tuple[str, ...] = ("train", "test")) -> dict[str, list[MathRecord]]:
    """GSM8K splits from a local directory of ``<split>.jsonl``, one .jsonl file, or the hub.

    A single .jsonl file is one split named by its stem (``test.jsonl`` -> ``test``); the
    ``splits`` argument then does not apply. Ids are ``gsm8k-<split>-<index>``, 0-based.
    """
    path = Path(source)
    if path.is_dir():
        return {split: _load_file(path / f"{split}.jsonl", split) for split in splits}
    if path.is_file() and path.suffix == ".jsonl":
        return {path.stem: _load_file(path, path.stem)}
    import datasets  # only on this path: importing it is slow and the tests never need it

    hub = datasets.load_dataset(source, config)
    return {split: [_record(obj, split, index, file=f"{source}[{split}]", row=index + 1)
                    for index, obj in enumerate(hub[split])]
            for split in splits}
