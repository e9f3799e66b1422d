"""Atomic writes and checked reads for every pipeline output.

A crash mid-write must never leave a half-written file that DVC would cache, so
everything is written to a temporary sibling and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sipf.errors import DataError


@contextlib.contextmanager
def atomic_path(final: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it into place only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp if directory else tmp / final.name
    try:
        yield target
        if directory:
            _replace_dir(tmp, final)
        else:
            os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(new: Path, final: Path) -> None:
    # A directory cannot be os.replace'd over a non-empty one: park the old one first,
    # so at every instant `final` is either the complete old or the complete new tree.
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def write_parquet(rows: Sequence[dict[str, Any]], path: str | Path,
                  schema: pa.Schema | None = None) -> None:
    table = pa.Table.from_pylist(list(rows), schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | Path, required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows of a Parquet file; a missing file or column is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file (run the stage that writes it first)", file=path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"not a readable Parquet file: {err}", file=path) from err
    for column in required:
        if column not in table.column_names:
            raise DataError("missing column", file=path, field=column)
    return table.to_pylist()


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON: {err}", file=path) from err
