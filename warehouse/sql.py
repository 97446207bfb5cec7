"""Read-only SQL for analysts (the dashboard's SQL tab, ``emotivoice sql``), internal reads, export.

Analyst SQL runs on a read-only connection whose external access is disabled and whose settings are
locked, so it cannot read or write other files, fetch URLs, ATTACH, COPY, INSTALL/LOAD extensions or
change the database. On top of that only one SELECT-like statement (SELECT/WITH/FROM/VALUES/
DESCRIBE/SHOW/SUMMARIZE/PIVOT, EXPLAIN) is accepted, results are cut at a row limit and a timer thread
interrupts a query that runs past its time limit. Every failure raises ``QueryError`` carrying
DuckDB's own message.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import duckdb
import pandas as pd

from warehouse.connection import read_connection, resolve_db
from warehouse.errors import QueryError
from warehouse.schema import CHUNK_TABLES, SCHEMA_VERSION, TABLES, utc_now

logger = logging.getLogger(__name__)

#: Default row limit of analyst queries.
QUERY_LIMIT = 10_000
#: Default time limit of analyst queries, seconds (a writer waits at most this long for a reader).
QUERY_TIMEOUT_S = 30.0
#: Default time limit of internal dashboard reads, seconds.
READ_TIMEOUT_S = 60.0
EXPORT_FORMATS = ("parquet", "csv", "json")

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}

Params = Sequence[Any] | Mapping[str, Any] | None


class QueryResult(pd.DataFrame):
    """A DataFrame of query results with how it was obtained.

    Attributes:
        sql: the query text.
        truncated: True when the query had more rows than ``limit`` (only ``limit`` are kept).
        limit: the row limit applied (None: none).
        elapsed_s: seconds the query took, lock wait excluded.
    """

    _metadata = ["sql", "truncated", "limit", "elapsed_s"]

    @property
    def _constructor(self):
        return QueryResult


def _statement_check(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc), sql) from None
    if len(statements) != 1:
        raise QueryError(f"one statement per query, please (got {len(statements)})", sql)
    kind = statements[0].type
    if kind not in _ALLOWED:
        name = getattr(kind, "name", str(kind))
        raise QueryError(
            f"only read queries are allowed (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN); "
            f"this is a {name} statement and the warehouse is read-only here", sql)


@contextlib.contextmanager
def _time_limit(con: duckdb.DuckDBPyConnection, timeout_s: float | None) -> Iterator[threading.Event]:
    """Interrupt ``con`` from a timer thread after ``timeout_s`` seconds; the event says it fired."""
    fired = threading.Event()
    if not timeout_s or timeout_s <= 0:
        yield fired
        return

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(timeout_s, stop)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: Params, limit: int | None,
         timeout_s: float | None) -> pd.DataFrame:
    with _time_limit(con, timeout_s) as fired:
        try:
            rel = con.sql(sql, params=params if params else None)
            if rel is None:  # statement without a result (only reachable from trusted reads)
                return pd.DataFrame()
            if limit is not None:
                rel = rel.limit(limit + 1)
            return rel.df()
        except duckdb.InterruptException:
            if fired.is_set():
                raise QueryError(f"query stopped: it ran longer than its {timeout_s:g} s time limit", sql) from None
            raise QueryError("query interrupted", sql) from None
        except duckdb.Error as exc:
            raise QueryError(str(exc), sql) from None


def query(sql: str, params: Params = None, *, db: str | os.PathLike | None = None,
          limit: int | None = QUERY_LIMIT, timeout_s: float | None = QUERY_TIMEOUT_S) -> QueryResult:
    """Run one analyst query, read-only and sandboxed.

    Args:
        sql: one SELECT-like statement; ``?`` or ``$name`` placeholders take ``params``.
        params: positional (sequence) or named (mapping) parameters.
        db: database file (default: the configuration's).
        limit: keep at most this many rows (``truncated`` tells whether more existed); None = all.
        timeout_s: interrupt the query after this many seconds; None = no limit.

    Raises:
        QueryError: bad SQL, a forbidden statement, a sandbox refusal or the time limit (message
            from DuckDB, no stack).
        WarehouseBusyError: the database stayed locked by a writer.
    """
    if not sql or not sql.strip():
        raise QueryError("empty query", sql)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    with read_connection(db) as con:
        _statement_check(con, sql)
        t0 = time.perf_counter()
        df = _run(con, sql, params, limit, timeout_s)
        elapsed = time.perf_counter() - t0
    truncated = limit is not None and len(df) > limit
    if truncated:
        df = df.iloc[:limit]
    result = QueryResult(df)
    result.sql, result.truncated, result.limit, result.elapsed_s = sql, truncated, limit, elapsed
    return result


def read_df(sql: str, params: Params = None, *, db: str | os.PathLike | None = None,
            timeout_s: float | None = READ_TIMEOUT_S) -> pd.DataFrame:
    """Internal read for the dashboard and flows (trusted SQL): all rows as a DataFrame.

    Same sandboxed read-only connection and lock handling as ``query``, no statement check and no
    row limit. Raises ``QueryError`` on failure.
    """
    with read_connection(db) as con:
        return _run(con, sql, params, None, timeout_s)


# ----------------------------------------------------------------------------- export
@dataclass(frozen=True)
class ExportResult:
    """What ``export`` wrote."""

    out_dir: Path
    format: str
    files: dict[str, Path] = field(default_factory=dict)
    """Table name -> file written."""
    rows: dict[str, int] = field(default_factory=dict)
    """Table name -> rows written."""
    where: str | None = None


def _table_filter(table: str) -> str:
    sel = "SELECT file_id FROM _export_files"
    if table == "runs":
        return f"run_id IN (SELECT run_id FROM files WHERE file_id IN ({sel}))"
    if table in ("files", "chunks"):
        return f"file_id IN ({sel})"
    if table in CHUNK_TABLES:
        return f"chunk_id IN (SELECT chunk_id FROM chunks WHERE file_id IN ({sel}))"
    return "true"


_ORDER = {"schema_version": "version", "runs": "run_id", "files": "file_id", "chunks": "chunk_id"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _write_table(reader: Any, path: Path, fmt: str) -> int:
    import pyarrow as pa

    n = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(path, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                n += batch.num_rows
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        with pcsv.CSVWriter(path, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                n += batch.num_rows
    else:
        maps = [f.name for f in reader.schema if pa.types.is_map(f.type)]
        with open(path, "w", encoding="utf-8") as fh:
            for batch in reader:
                for row in batch.to_pylist():
                    for m in maps:
                        if row[m] is not None:
                            row[m] = dict(row[m])
                    fh.write(json.dumps(_jsonable(row), ensure_ascii=False, allow_nan=False) + "\n")
                n += batch.num_rows
    return n


def export(out_dir: str | os.PathLike, *, fmt: str = "parquet", where: str | None = None,
           db: str | os.PathLike | None = None, tables: Sequence[str] = TABLES) -> ExportResult:
    """Write the tables (or the part of them that belongs to files matching ``where``) to ``out_dir``.

    One file per table: ``<table>.parquet``, ``<table>.csv`` (lists and maps as text) or
    ``<table>.json`` (newline-delimited JSON), plus ``manifest.json`` (row counts, filter, schema
    version). ``where`` is a SQL condition on ``files`` columns (e.g. ``folder LIKE '%/calls'``);
    chunks and the per-chunk tables follow by file_id, runs by the files' run_id.

    Raises:
        QueryError: ``where`` is not a valid condition on files.
        ValueError: an unknown format or table.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown table(s): {', '.join(sorted(unknown))}; tables are {', '.join(TABLES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    rows: dict[str, int] = {}
    ext = {"parquet": "parquet", "csv": "csv", "json": "json"}[fmt]
    with read_connection(db) as con:
        selector = "SELECT file_id FROM files" + (f" WHERE ({where})" if where else "")
        if where:
            try:  # one expression, nothing else (no closing parenthesis, UNION, second statement)
                duckdb.SQLExpression(where)
            except duckdb.Error as exc:
                raise QueryError(f"--where {where!r} is not one SQL condition: {exc}", where) from None
            _statement_check(con, selector)
        try:
            con.execute(f"CREATE TEMP TABLE _export_files AS {selector}")
        except duckdb.Error as exc:
            raise QueryError(f"--where {where!r}: {exc}", selector) from None
        for table in tables:
            cols = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()
            select = ", ".join(
                f'CAST("{c}" AS VARCHAR) AS "{c}"' if fmt == "csv" and (t.endswith("]") or t.startswith("MAP"))
                else f'"{c}"' for c, t in cols)
            order = _ORDER.get(table, "chunk_id")
            rel = con.sql(f"SELECT {select} FROM {table} WHERE {_table_filter(table)} ORDER BY {order}")
            reader = (getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader)(100_000)
            target = out / f"{table}.{ext}"
            tmp = out / f".{table}.{ext}.partial"
            rows[table] = _write_table(reader, tmp, fmt)
            os.replace(tmp, target)
            files[table] = target
    manifest = {"database": str(resolve_db(db)), "schema_version": SCHEMA_VERSION, "format": fmt,
                "where": where, "exported_at_utc": utc_now().isoformat(),
                "tables": {t: {"file": files[t].name, "rows": rows[t]} for t in tables}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    logger.info("exported %d tables (%d rows) to %s", len(files), sum(rows.values()), out)
    return ExportResult(out, fmt, files, rows, where)


__all__ = ["EXPORT_FORMATS", "ExportResult", "QUERY_LIMIT", "QUERY_TIMEOUT_S", "QueryError", "QueryResult",
           "export", "query", "read_df"]
