"""MMLU math questions with numeric answers, the SIPF authors' out-of-domain test set.

``load_mmlu_math`` reads the authors' 354-item file. ``build_mmlu_math`` rebuilds a
comparable set from the MMLU test CSVs (college, high-school and elementary mathematics)
by keeping the questions whose correct choice is a plain number.

Measured on hendrycks/test@785eba5: the builder finds 387 items, 353 of whose
(question, answer) pairs are rows of the authors' 354 (every row but '2,2,4', a list of
triangle sides). Its 34 extra items are 13 negatives written with a Unicode minus or
dash and 21 dollar amounts, which the authors' filter left out.
"""

from __future__ import annotations

import csv
import re
from os import PathLike
from pathlib import Path

from sipf.errors import DataError
from sipf.tasks.base import MathRecord, normalize_number
from sipf.tasks.jsonl import FieldMap, load_jsonl

MMLU_MATH_SUBJECTS = ("college_mathematics", "high_school_mathematics",
                      "elementary_mathematics")

# A plain number as MMLU writes it: "$" and thousands commas allowed, and the minus may be
# ASCII, U+2212 or an en dash. Commas must group thousands, so "2,2,4" (a list) is rejected.
_CHOICE_NUMBER = re.compile(
    r"\$?\s*(?P<minus>[-\u2212\u2013])?\s*\$?\s*"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")


def load_mmlu_math(path: str | PathLike[str]) -> list[MathRecord]:
    """The authors' JSONL (``idx, question, answer``); no solutions, so ``solution`` is "".

    Ids are ``mmlu_math-<index>``, equal to the file's ``idx``. The answer is normalised like
    any other; the one non-number in the file, '2,2,4', becomes '224', which is still
    scored consistently because :func:`~sipf.tasks.base.extract_answer` normalises the
    model's '2,2,4' the same way.
    """
    return load_jsonl(path, FieldMap(solution=None), prefix="mmlu_math")


def choice_number(choice: str) -> str | None:
    """The normalised number when an answer choice is a plain number, else None."""
    match = _CHOICE_NUMBER.fullmatch(choice.strip())
    if match is None:
        return None
    sign = "-" if match["minus"] else ""
    return normalize_number(sign + match["digits"])


def _subject_records(path: Path, subject: str) -> list[MathRecord]:
    records = []
    with open(path, newline="", encoding="utf-8") as handle:
        for index, cells in enumerate(csv.reader(handle)):
            if len(cells) != 6:
                raise DataError(f"expected 6 columns (question, A-D, answer), got {len(cells)}",
                                file=path, row=index + 1)
            question, *choices, letter = cells
            if letter not in ("A", "B", "C", "D"):
                raise DataError(f"expected A, B, C or D, got {letter!r}", file=path,
                                row=index + 1, field="answer")
            answer = choice_number(choices["ABCD".index(letter)])
            if answer is not None:
                records.append(MathRecord(id=f"mmlu-{subject}-{index:03d}",
                                          question=question, answer=answer, solution=""))
    return records


def build_mmlu_math(csv_dir: str | PathLike[str]) -> list[MathRecord]:
    """Numeric-answer items of the three MMLU math test CSVs, in subject then file order.

    Duplicated questions in MMLU are kept, as the authors' file keeps them.
    """
    directory = Path(csv_dir)
    records = []
    for subject in MMLU_MATH_SUBJECTS:
        path = directory / f"{subject}_test.csv"
        if not path.is_file():
            raise DataError("no such file", file=path)
        records.extend(_subject_records(path, subject))
    return records
