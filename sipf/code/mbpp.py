"""MBPP (Austin et al., 2021): loading, splits and the prompt variants of the SIPF paper.

``mbpp.jsonl`` has 974 tasks (``text, code, task_id, test_setup_code, test_list,
challenge_test_list``), each with exactly 3 asserts. The standard split by ``task_id``:
1-10 few-shot prompts, 11-510 test (500), 511-600 validation (90), 601-974 train (374).

A prompt shows the task text and some of its asserts; a program passes only when all 3
asserts pass (``challenge_test_list`` is not used). At test time each task has 3 prompt
variants (each pair of asserts); for training, 6 (each single assert and each pair), which
gives the paper's 374 x 6 = 2,244 training prompts.

Line endings of ``code`` and ``test_setup_code`` are normalised from ``\\r\\n`` to ``\\n``
(the file was written on Windows; Python's own tokenizer reads ``\r\n`` as ``\n``, so no
program changes meaning).
"""

from __future__ import annotations

import ast
import warnings
from os import PathLike
from pathlib import Path
from typing import Any

from sipf.errors import DataError
from sipf.tasks.base import read_jsonl
from sipf.code.programs import CodePrompt, CodeRecord, prompt_variant

SPLIT_IDS: dict[str, range] = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
}
MBPP_SPLITS = (*SPLIT_IDS, "all")

# Which asserts a prompt shows (indices into the 3 asserts), in variant order.
TEST_VARIANTS: tuple[tuple[int, ...], ...] = ((0, 1), (0, 2), (1, 2))
TRAIN_VARIANTS: tuple[tuple[int, ...], ...] = ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2))


def _text(obj: dict[str, Any], field: str, *, file: str | PathLike[str], row: int,
          allow_empty: bool = False) -> str:
    if field not in obj:
        raise DataError("missing", file=file, row=row, field=field)
    value = obj[field]
    if not isinstance(value, str):
        raise DataError(f"expected text, got {type(value).__name__}", file=file, row=row,
                        field=field)
    if not allow_empty and not value.strip():
        raise DataError("empty", file=file, row=row, field=field)
    return value.replace("\r\n", "\n")


def entry_point(code: str, test: str) -> str | None:
    """The function under test: the first name the assert calls that ``code`` defines at top
    level (``assert set(f(x)) == ...`` -> ``f``; MBPP 126 defines and tests ``sum``)."""
    with warnings.catch_warnings():  # MBPP code has invalid escapes like "\\w" in plain strings
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        tree = ast.parse(code)
    defined = {node.name for node in tree.body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for node in ast.walk(ast.parse(test)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in defined:
            return node.func.id
    return None


def _record(obj: dict[str, Any], *, file: str | PathLike[str], row: int) -> CodeRecord:
    task_id = obj.get("task_id")
    if not isinstance(task_id, int) or isinstance(task_id, bool):
        raise DataError(f"expected an integer, got {task_id!r}", file=file, row=row,
                        field="task_id")
    text = _text(obj, "text", file=file, row=row)
    code = _text(obj, "code", file=file, row=row)
    setup = _text(obj, "test_setup_code", file=file, row=row, allow_empty=True)
    tests = obj.get("test_list")
    if not isinstance(tests, list) or len(tests) != 3 or not all(
            isinstance(test, str) and test.strip() for test in tests):
        raise DataError(f"expected a list of 3 asserts, got {tests!r:.80}", file=file, row=row,
                        field="test_list")
    for test in tests:
        try:
            ast.parse(test)
        except SyntaxError as err:
            raise DataError(f"test does not parse ({err.msg}): {test!r:.80}", file=file,
                            row=row, field="test_list") from None
    try:
        entry = entry_point(code, tests[0])
    except SyntaxError as err:
        raise DataError(f"does not parse ({err.msg}, line {err.lineno})", file=file, row=row,
                        field="code") from None
    if entry is None:
        raise DataError(f"the first test calls no function that the code defines: "
                        f"{tests[0]!r:.80}", file=file, row=row, field="test_list")
    tests = tuple(test.strip() for test in tests)
    return CodeRecord(id=f"mbpp-{task_id}", text=text.strip(), shown=tests, tests=tests,
                      entry_point=entry, reference=code, setup=setup,
                      source_id=str(task_id))


def load_mbpp(path: str | PathLike[str],
              splits: tuple[str, ...] = ("train", "test")) -> dict[str, list[CodeRecord]]:
    """``{split: records}`` in task-id order; ``"all"`` is every task in the file.

    ``path`` is ``mbpp.jsonl`` or the directory holding it. Ids are ``mbpp-<task_id>``.
    """
    unknown = [split for split in splits if split not in MBPP_SPLITS]
    if unknown:
        raise DataError(f"unknown MBPP split(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(MBPP_SPLITS)}")
    file = Path(path)
    if file.is_dir():
        file = file / "mbpp.jsonl"
    records: list[CodeRecord] = []
    first_row: dict[int, int] = {}
    for row, obj in read_jsonl(file):
        record = _record(obj, file=file, row=row)
        task_id = int(record.source_id)
        if task_id in first_row:
            raise DataError(f"duplicate task_id {task_id} (first in row {first_row[task_id]})",
                            file=file, row=row, field="task_id")
        first_row[task_id] = row
        records.append(record)
    records.sort(key=lambda record: int(record.source_id))
    return {split: records if split == "all"
            else [r for r in records if int(r.source_id) in SPLIT_IDS[split]]
            for split in splits}


def prompt_variants(record: CodeRecord, training: bool) -> list[CodePrompt]:
    """The record's prompts: 6 for training (each single assert, each pair), else 3 (each
    pair). Variant ids are ``<record id>/v<k>`` in :data:`TRAIN_VARIANTS`/:data:`TEST_VARIANTS`
    order."""
    variants = TRAIN_VARIANTS if training else TEST_VARIANTS
    return [prompt_variant(record, indices, number) for number, indices in enumerate(variants)]
