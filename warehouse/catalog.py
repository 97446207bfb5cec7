"""The warehouse's tables and columns with their types (from the database) and their meaning and unit
(from docs/schema.md): what the SQL page's schema browser shows."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pandas as pd

from warehouse.sql import read_df

SCHEMA_DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"

_TABLE_HEADING = re.compile(r"^###\s+`([A-Za-z_][A-Za-z0-9_]*)`\s*$")
_ROW = re.compile(r"^\|\s*`([A-Za-z_][A-Za-z0-9_]*)`\s*\|\s*([^|]*)\|\s*(.*)\|\s*$")
#: (pattern on the meaning or name, unit shown), first match wins.
_UNITS = (
    (re.compile(r"\bUTC\b"), "UTC"),
    (re.compile(r"\bHz\b"), "Hz"),
    (re.compile(r"\bdB\b"), "dB"),
    (re.compile(r"\bseconds?\b|_s$"), "s"),
    (re.compile(r"probabilit"), "probability"),
    (re.compile(r"confidence|\b0\.\.1\b|\[0, 1\]"), "0–1"),
)


@functools.lru_cache(maxsize=4)
def _doc_rows(path: str, mtime_ns: int) -> dict[tuple[str, str], str]:
    rows: dict[tuple[str, str], str] = {}
    table = None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        heading = _TABLE_HEADING.match(line)
        if heading:
            table = heading.group(1)
            continue
        if line.startswith("## "):
            table = None
        row = _ROW.match(line)
        if table and row:
            rows[(table, row.group(1))] = row.group(3).strip().replace("\\|", "|")
    return rows


def documented_columns(path: str | os.PathLike = SCHEMA_DOC) -> dict[tuple[str, str], str]:
    """(table, column) -> meaning, from the column tables of docs/schema.md ({} when it is missing)."""
    try:
        return _doc_rows(str(path), os.stat(path).st_mtime_ns)
    except OSError:
        return {}


def unit_of(column: str, meaning: str, data_type: str) -> str:
    """The unit a column is in, as far as its name, meaning and type say ('' when none applies)."""
    if data_type.upper().startswith("TIMESTAMP"):
        return "UTC"
    if data_type.upper() in ("VARCHAR", "BOOLEAN") or data_type.endswith("]"):
        return ""
    for pattern, unit in _UNITS:
        if pattern.search(meaning) or pattern.search(column):
            return unit
    return ""


def schema_browser(db: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per column of the warehouse's tables: table, column, type, unit, meaning.

    Types come from the database itself; meaning and unit from docs/schema.md (a column it does not
    describe has an empty meaning)."""
    cols = read_df("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                   "WHERE database_name = current_database() AND schema_name = 'main' "
                   "AND NOT internal ORDER BY table_name, column_index", db=db)
    docs = documented_columns()
    rows = []
    for table, column, data_type in cols.itertuples(index=False):
        meaning = docs.get((table, column), "")
        rows.append({"table": table, "column": column, "type": data_type,
                     "unit": unit_of(column, meaning, data_type), "meaning": meaning.replace("`", "").replace("**", "")})
    return pd.DataFrame(rows, columns=["table", "column", "type", "unit", "meaning"])


__all__ = ["SCHEMA_DOC", "documented_columns", "schema_browser", "unit_of"]
