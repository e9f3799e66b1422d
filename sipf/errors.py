"""Errors that carry enough context for a user to fix their input without a traceback."""

from __future__ import annotations

from os import PathLike


class DataError(ValueError):
    """Bad input data, located as precisely as known.

    ``str()`` reads ``data/x.jsonl: row 7: field 'answer': expected a number, got 'abc'``;
    parts that are None are left out. Rows are 1-based line numbers, as an editor shows them.
    """

    def __init__(self, message: str, *, file: str | PathLike[str] | None = None,
                 row: int | None = None, field: str | None = None) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        self.field = field
        parts = []
        if self.file is not None:
            parts.append(self.file)
        if row is not None:
            parts.append(f"row {row}")
        if field is not None:
            parts.append(f"field {field!r}")
        parts.append(message)
        super().__init__(": ".join(parts))


class ConfigError(ValueError):
    """An invalid setting (unknown option value, inconsistent parameters)."""


class OutputError(OSError):
    """An output cannot be written (a read-only or missing directory, a full disk)."""
