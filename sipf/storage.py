"""Atomic writes and checked reads for every pipeline output.

A crash mid-write must never leave a half-written file that DVC would cache, so
everything is written to a temporary sibling and renamed into place.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sipf.distributed import is_main, rank
from sipf.errors import DataError, OutputError


@dataclass
class _Outputs:
    """The outputs of one :func:`outputs_together` block: temporary directories made so far,
    and the renames that put finished outputs into place."""

    temporaries: list[Path] = field(default_factory=list)
    moves: list[tuple[Path, Path, Path, bool]] = field(default_factory=list)

    def holds(self, path: Path) -> bool:
        """Whether ``path`` lies inside one of this block's temporary directories (it then
        moves with that directory and is written at once)."""
        return any(path.is_relative_to(tmp) for tmp in self.temporaries)


_BLOCK: contextvars.ContextVar[_Outputs | None] = contextvars.ContextVar("outputs", default=None)


@contextlib.contextmanager
def outputs_together(*paths: str | Path) -> Iterator[None]:
    """A stage's outputs appear together or not at all: inside this block each
    :func:`atomic_path` is complete in its temporary sibling before anything moves, and all
    are renamed into place only when the block ends without an error (on an error all are
    discarded and the old outputs stay). ``paths`` are checked for writability first, so a
    read-only directory fails in a second, not after the training it would have saved.

    Under torchrun only global rank 0 writes: on every other rank the block checks and moves
    nothing (its probes and stale-temporary sweep would race rank 0's temporaries)."""
    if not is_main():
        yield
        return
    for path in paths:
        check_writable(path)
    block = _Outputs()
    token = _BLOCK.set(block)
    try:
        yield
    except BaseException:
        for tmp in block.temporaries:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _BLOCK.reset(token)
    for tmp, target, final, directory in block.moves:
        _move_into_place(tmp, target, final, directory)


def check_writable(final: str | Path) -> None:
    """An OutputError naming ``final`` unless a file can be created beside it. Temporaries
    that a killed run of the same stage left beside it go (nothing else writes that name)."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        os.rmdir(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".probe", dir=final.parent))
    except OSError as err:
        raise _unwritable(final, err) from None


def _unwritable(final: Path, err: OSError) -> OutputError:
    return OutputError(f"{final}: cannot write the output here ({err.strerror or err})")


@contextlib.contextmanager
def atomic_path(final: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it into place only on success (inside
    :func:`outputs_together`: when the whole block succeeds). Under torchrun, a rank other
    than 0 gets a scratch path outside the outputs instead, deleted afterwards: it computes
    what rank 0 computes and writes none of it."""
    final = Path(final)
    if not is_main():
        with _scratch(final, directory) as target:
            yield target
        return
    block = _BLOCK.get()
    deferred = block is not None and not block.holds(final.absolute())
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as err:
        raise _unwritable(final, err) from None
    if block is not None:
        block.temporaries.append(tmp.absolute())
    target = tmp if directory else tmp / final.name
    try:
        yield target
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if deferred:
        block.moves.append((tmp, target, final, directory))  # type: ignore[union-attr]
    else:
        _move_into_place(tmp, target, final, directory)


@contextlib.contextmanager
def _scratch(final: Path, directory: bool) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f"sipf-rank{rank()}-{final.name}."))
    try:
        yield tmp if directory else tmp / final.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, target: Path, final: Path, directory: bool) -> None:
    try:
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
    table = _read_table(Path(path))
    for column in required:
        if column not in table.column_names:
            raise DataError("missing column", file=path, field=column)
    return table.to_pylist()


def read_table(path: str | Path, schema: Mapping[str, str],
               optional: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Rows of a Parquet file whose columns have the kinds ``schema`` names (see
    ``sipf.layout.SCHEMAS``; ``optional`` columns are checked when present). A missing column,
    a column of another type or a null where none is allowed is one DataError naming the
    file, the first bad row (1-based) and the field."""
    path = Path(path)
    table = _read_table(path)
    if table.num_rows == 0:
        return []  # a placeholder (a stage the method skips) has no columns to check
    columns = dict(schema)
    columns.update({c: k for c, k in (optional or {}).items() if c in table.column_names})
    for column, kind in columns.items():
        if column not in table.column_names:
            raise DataError("missing column", file=path, field=column)
        _check_column(table.column(column), kind, path, column)
    return table.to_pylist()


def _read_table(path: Path) -> pa.Table:
    if not path.is_file():
        raise DataError("no such file (run the stage that writes it first)", file=path)
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"not a readable Parquet file: {err}", file=path) from err


_KINDS = {"str": (pa.types.is_string, pa.types.is_large_string),
          "int": (pa.types.is_integer,),
          "float": (pa.types.is_floating, pa.types.is_integer),
          "bool": (pa.types.is_boolean,)}
_KIND_NAMES = {"str": "text", "int": "an integer", "float": "a number", "bool": "true/false"}


def _check_column(column: pa.ChunkedArray, kind: str, path: Path, name: str) -> None:
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    inner = kind[len("list["):-1] if kind.startswith("list[") else None
    type_ = column.type
    if pa.types.is_null(type_):  # every value null: arrow could not tell a type
        if not nullable:
            raise DataError("null (empty) value", file=path, row=1, field=name)
        return
    if inner is not None:
        ok = ((pa.types.is_list(type_) or pa.types.is_large_list(type_))
              and (pa.types.is_null(type_.value_type)
                   or any(test(type_.value_type) for test in _KINDS[inner])))
    else:
        ok = any(test(type_) for test in _KINDS[kind])
    if not ok:
        first = next((i for i, v in enumerate(column.to_pylist()) if v is not None), 0)
        shown = repr(column[first].as_py())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        wanted = f"a list of {_KIND_NAMES[inner]}" if inner else _KIND_NAMES[kind]
        raise DataError(f"expected {wanted}, got {type_} {shown}", file=path, row=first + 1,
                        field=name)
    if not nullable and column.null_count:
        first = next(i for i, v in enumerate(column.to_pylist()) if v is None)
        raise DataError("null (empty) value", file=path, row=first + 1, field=name)
    # Counted by arrow; the rows are walked in Python only to name the bad one.
    if inner is not None and pc.list_flatten(column).null_count:
        first = next(i for i, v in enumerate(column.to_pylist()) if v and None in v)
        raise DataError("a null inside the list", file=path, row=first + 1, field=name)


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
