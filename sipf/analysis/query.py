"""SQL over the Parquet outputs of every iteration (DuckDB, nothing loaded up front).

One view per output name, each with an ``iteration`` column taken from the folder:
``data/it<k>/<name>.parquet`` for the per-iteration outputs, and
``data/predictions/<model>.parquet`` for evaluations, where the view adds ``model`` (the
file stem) and ``iteration`` = k for a model named ``...it<k>``, 0 for ``sft`` (M0) and
NULL otherwise (``base``, baselines). A file's own ``iteration`` column (samples and
prefs carry one) is kept as ``file_iteration``: with a growing sample pool the two differ.
A view whose files do not exist yet is left out; :func:`run_query` then says which stage
output is missing.

Useful queries::

    -- sample accuracy per iteration
    SELECT iteration, count(*) AS paths, round(avg(outcome::INT), 3) AS accuracy
    FROM samples GROUP BY iteration ORDER BY iteration;

    -- steps whose Monte-Carlo label disagrees with the exact (arith) oracle
    SELECT iteration, path_id, step_index, step, n_correct, k, hard, oracle
    FROM step_labels WHERE oracle IS NOT NULL AND hard <> oracle
    ORDER BY iteration, path_id, step_index;

    -- reward-gap distribution of the preference pairs, in bins of 0.1
    SELECT iteration, floor((chosen_reward - rejected_reward) * 10) / 10 AS gap_from,
           count(*) AS pairs
    FROM prefs GROUP BY ALL ORDER BY iteration, gap_from;
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sipf import layout
from sipf.errors import ConfigError, DataError

VIEWS = (*layout.ITERATION_TABLES, "predictions")
FORMATS = ("table", "csv", "json")
_MODEL_ITERATION = re.compile(r"it(\d+)$")
_TABLE_CELL_CHARS = 60  # long texts (paths, completions) are cut in tables, never in csv/json


# ----------------------------------------------------------------------------- views
def view_pattern(name: str) -> str:
    """Where view ``name`` reads its files, relative to the project root."""
    if name == "predictions":
        return (layout.PREDICTIONS / "*.parquet").as_posix()
    return layout.iteration_tables(name)


def view_files(root: Path, name: str) -> list[tuple[Path, int | None]]:
    """The files behind view ``name`` under ``root``, each with its iteration."""
    if name == "predictions":
        return [(path, _model_iteration(path.stem))
                for path in sorted((Path(root) / layout.PREDICTIONS).glob("*.parquet"))]
    found = []
    for path in Path(root).glob(view_pattern(name)):
        match = layout.ITERATION_DIR.fullmatch(path.parent.name)
        if match and path.is_file():
            found.append((path, int(match.group(1))))
    return sorted(found, key=lambda item: item[1])


def _model_iteration(model: str) -> int | None:
    match = _MODEL_ITERATION.search(model)
    if match:
        return int(match.group(1))
    return 0 if model == "sft" else None


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _file_select(path: Path, iteration: int | None, with_model: bool) -> str:
    """One file's rows plus its ``iteration`` (and ``model``) as SQL."""
    try:
        columns = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"not a readable Parquet file: {err}", file=path) from err
    star = "* RENAME (iteration AS file_iteration)" if "iteration" in columns else "*"
    model = f", {_literal(path.stem)} AS model" if with_model else ""
    return (f"SELECT {star}{model}, CAST({_literal(iteration)} AS INTEGER) AS iteration "
            f"FROM read_parquet({_literal(str(path.resolve()))})")


def connect(root: Path = Path(".")) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per name in ``VIEWS`` that has files.

    Files are read when a query runs, not here; files written later need a new connection.
    """
    con = duckdb.connect()
    for name in VIEWS:
        files = view_files(root, name)
        if files:
            # BY NAME: a later iteration may add or reorder columns.
            union = " UNION ALL BY NAME ".join(
                _file_select(path, iteration, name == "predictions") for path, iteration in files)
            con.execute(f"CREATE VIEW {name} AS {union}")
    return con


# ----------------------------------------------------------------------------- queries
def run_query(sql: str, root: Path = Path("."), fmt: str = "table") -> str:
    """The result of ``sql`` over the views of ``root`` as text: an aligned table, CSV or
    a JSON array of objects. SQL errors and missing outputs raise DataError."""
    if fmt not in FORMATS:
        raise ConfigError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    con = connect(root)
    try:
        cursor = con.execute(sql)
        if cursor.description is None:  # a statement without a result
            return ""
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    except duckdb.CatalogException as err:
        raise _missing_view_error(err, root) from err
    except duckdb.Error as err:
        raise DataError(f"query failed: {err}") from err
    finally:
        con.close()
    return {"table": format_table, "csv": format_csv, "json": format_json}[fmt](names, rows)


def _missing_view_error(err: duckdb.Error, root: Path) -> DataError:
    for name in VIEWS:
        if f"name {name} does not exist" in str(err):
            return DataError(f"view {name!r} has no data yet: no file matches "
                             f"{view_pattern(name)} under {Path(root).resolve()} (run the "
                             f"stage that writes it first)")
    return DataError(f"query failed: {err}")


# ----------------------------------------------------------------------------- formats
def _plain(value: Any) -> Any:
    """A JSON-ready value: NaN and infinities become null, dates ISO strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def format_json(names: Sequence[str], rows: Sequence[tuple]) -> str:
    records = [{name: _plain(value) for name, value in zip(names, row)} for row in rows]
    return json.dumps(records, ensure_ascii=False, indent=2, default=str)


def format_csv(names: Sequence[str], rows: Sequence[tuple]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if v is None else json.dumps(_plain(v), ensure_ascii=False)
                         if isinstance(v, (list, tuple, dict)) else v for v in row])
    return out.getvalue()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _table_cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, ".6g")
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= _TABLE_CELL_CHARS else text[:_TABLE_CELL_CHARS - 1] + "…"


def format_table(names: Sequence[str], rows: Sequence[tuple]) -> str:
    """Columns padded to their widest cell, numbers right-aligned, then a row count."""
    cells = [[_table_cell(v) for v in row] for row in rows]
    numeric = [all(_is_number(row[i]) or row[i] is None for row in rows) for i in range(len(names))]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(names)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if right else v.ljust(w)
                         for v, w, right in zip(values, widths, numeric)).rstrip()

    lines = [line(names), line(["-" * w for w in widths]), *map(line, cells)]
    lines.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(lines) + "\n"
