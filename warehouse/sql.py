"""Read-only SQL for analysts (the dashboard's SQL tab, ``emotivoice sql``), internal reads, export.

Analyst SQL runs on a read-only connection whose external access is disabled and whose settings are
locked, so it cannot read or write other files, fetch URLs, ATTACH, COPY, INSTALL/LOAD extensions or
change the database. On top of that only one SELECT-like statement (SELECT/WITH/FROM/VALUES/
DESCRIBE/SHOW/SUMMARIZE/PIVOT, EXPLAIN) is accepted, and the query runs in a child process with a
memory cap, a wall-clock limit that covers execution, fetching and serialisation, and a row and byte
cap checked while the result is fetched (``warehouse.sandbox``). Exports run in the same child.
Every failure raises ``QueryError`` carrying DuckDB's own message (``QueryLimitError`` for a limit).

Internal reads (``read_df``: trusted SQL of the dashboard and flows) run in-process with a time limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import duckdb
import pandas as pd

from warehouse.connection import read_connection, resolve_db
from warehouse.errors import EXIT_BAD_INPUT, ExportError, QueryError, QueryLimitError
from warehouse.sandbox import Limits, run_child
from warehouse.schema import CHUNK_TABLES, SCHEMA_VERSION, TABLES, utc_now

logger = logging.getLogger(__name__)

#: Default row limit of analyst queries (``Config.sql_max_rows``).
QUERY_LIMIT = 10_000
#: Default time limit of analyst queries, seconds (``Config.sql_timeout_s``).
QUERY_TIMEOUT_S = 30.0
#: Default time limit of internal dashboard reads, seconds.
READ_TIMEOUT_S = 60.0
#: Default time limit of an export, seconds (``Config.export_timeout_s``).
EXPORT_TIMEOUT_S = 600.0
_DEFAULT: Any = object()
EXPORT_FORMATS = ("parquet", "csv", "json")

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}

Params = Sequence[Any] | Mapping[str, Any] | None


class QueryResult(pd.DataFrame):
    """A DataFrame of query results with how it was obtained.

    Attributes:
        sql: the query text.
        truncated: True when the result was cut (more rows than ``limit``, or more bytes than ``max_bytes``).
        truncated_by: 'rows', 'bytes' or None.
        limit: the row limit applied (None: none).
        max_bytes: the byte cap applied (None: none).
        elapsed_s: seconds the query took (child process start, execution, fetch, transfer), lock wait excluded.
    """

    _metadata = ["sql", "truncated", "truncated_by", "limit", "max_bytes", "elapsed_s"]

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
                raise QueryLimitError(f"query stopped: it ran longer than its {timeout_s:g} s time limit", sql) from None
            raise QueryError("query interrupted", sql) from None
        except duckdb.Error as exc:
            raise QueryError(str(exc), sql) from None


def _to_pandas(data: bytes) -> pd.DataFrame:
    """The child's Arrow IPC stream as a DataFrame: maps as dicts, decimals as floats (as DuckDB's own
    ``.df()`` gives them)."""
    import pyarrow as pa

    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    casts = {i: pa.float64() for i, f in enumerate(table.schema) if pa.types.is_decimal(f.type)}
    for i, typ in casts.items():
        table = table.set_column(i, table.schema.field(i).name, table.column(i).cast(typ))
    return table.to_pandas(maps_as_pydicts="lossy", split_blocks=True, self_destruct=True)


def query(sql: str, params: Params = None, *, db: str | os.PathLike | None = None,
          limit: int | None = _DEFAULT, timeout_s: float | None = _DEFAULT, max_bytes: int | None = _DEFAULT,
          memory_mb: int | None = None) -> QueryResult:
    """Run one analyst query, read-only, sandboxed and bounded.

    Args:
        sql: one SELECT-like statement; ``?`` or ``$name`` placeholders take ``params``.
        params: positional (sequence) or named (mapping) parameters.
        db: database file (default: the configuration's).
        limit: keep at most this many rows (``truncated`` tells whether more existed); None = no row
            cap. Default ``Config.sql_max_rows``.
        timeout_s: stop the query (its child process) after this many seconds; None or 0 = no limit.
            Default ``Config.sql_timeout_s``.
        max_bytes: keep at most this many bytes of result (Arrow size); None = no byte cap.
            Default ``Config.sql_max_mb`` MiB.
        memory_mb: address-space cap of the query's process, MiB (default ``Config.sql_memory_mb``).

    Raises:
        QueryError: bad SQL, a forbidden statement or a sandbox refusal (message from DuckDB, no stack).
        QueryLimitError: the time limit or the memory cap stopped it.
        WarehouseBusyError: the database stayed locked by a writer.
    """
    if not sql or not sql.strip():
        raise QueryError("empty query", sql)
    if limit is not _DEFAULT and limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    limits = _limits(memory_mb=memory_mb, max_rows=limit, timeout_s=timeout_s, max_bytes=max_bytes)
    with read_connection(db) as con:
        _statement_check(con, sql)
        path = resolve_db(db)
        done = run_child({"mode": "query", "db": str(path), "sql": sql,
                          "params": _plain_params(params)}, limits, what="query")
    df = pd.DataFrame() if done.status.get("empty") else _to_pandas(done.data)
    result = QueryResult(df)
    result.sql, result.limit, result.max_bytes, result.elapsed_s = sql, limits.max_rows, limits.max_bytes, done.wall_s
    result.truncated_by = done.status.get("truncated_by")
    result.truncated = result.truncated_by is not None
    return result


def _limits(**given: Any) -> Limits:
    """The configuration's limits, with every argument that was given (None included) instead."""
    return dataclasses.replace(Limits.from_config(memory_mb=given.pop("memory_mb", None)),
                               **{k: v for k, v in given.items() if v is not _DEFAULT})


def _plain_params(params: Params) -> Any:
    if params is None:
        return None
    if isinstance(params, Mapping):
        return dict(params)
    return list(params)


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


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".emotivoice-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        code = 1 if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) else EXIT_BAD_INPUT
        raise ExportError(f"cannot write to --out {out}: {reason}", exit_code=code) from None


def export(out_dir: str | os.PathLike, *, fmt: str = "parquet", where: str | None = None,
           db: str | os.PathLike | None = None, tables: Sequence[str] = TABLES,
           timeout_s: float | None = _DEFAULT, memory_mb: int | None = None) -> ExportResult:
    """Write the tables (or the part of them that belongs to files matching ``where``) to ``out_dir``.

    One file per table: ``<table>.parquet``, ``<table>.csv`` (lists and maps as text) or
    ``<table>.json`` (newline-delimited JSON), plus ``manifest.json`` (row counts, filter, schema
    version). ``where`` is a SQL condition on ``files`` columns (e.g. ``folder LIKE '%/calls'``);
    chunks and the per-chunk tables follow by file_id, runs by the files' run_id.

    The work runs in the sandbox's child process (``warehouse.sandbox``): memory cap and a time limit
    (``timeout_s``, default ``Config.export_timeout_s``; None or 0 = none), so a hostile ``where``
    cannot exhaust the machine and the writer it holds up waits a bounded time. Each file appears
    whole (written under a temporary name, then renamed) or not at all.

    Raises:
        QueryError: ``where`` is not a valid condition on files.
        QueryLimitError: the time limit or the memory cap stopped it.
        ExportError: ``out_dir`` or a file in it cannot be written (the message names it and why).
        ValueError: an unknown format or table.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown table(s): {', '.join(sorted(unknown))}; tables are {', '.join(TABLES)}")
    if timeout_s is _DEFAULT:
        from pipeline.config import load_config

        timeout_s = load_config().export_timeout_s
    limits = dataclasses.replace(_limits(memory_mb=memory_mb), timeout_s=timeout_s, max_rows=None, max_bytes=None)
    out = Path(out_dir)
    ext = {"parquet": "parquet", "csv": "csv", "json": "json"}[fmt]
    with read_connection(db) as con:
        selector = "SELECT file_id FROM files" + (f" WHERE ({where})" if where else "")
        if where:
            try:  # one expression, nothing else (no closing parenthesis, UNION, second statement)
                duckdb.SQLExpression(where)
            except duckdb.Error as exc:
                raise QueryError(f"--where {where!r} is not one SQL condition: {exc}", where) from None
            _statement_check(con, selector)  # parsing only: planning may fold constants, so it happens in the child
        _prepare_out(out)
        plan = []
        for table in tables:
            cols = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()
            select = ", ".join(
                f'CAST("{c}" AS VARCHAR) AS "{c}"' if fmt == "csv" and (t.endswith("]") or t.startswith("MAP"))
                else f'"{c}"' for c, t in cols)
            order = _ORDER.get(table, "chunk_id")
            plan.append((table, f"SELECT {select} FROM {table} WHERE {_table_filter(table)} ORDER BY {order}",
                         str(out / f"{table}.{ext}"), str(out / f".{table}.{ext}.partial")))
        try:
            done = run_child({"mode": "export", "db": str(resolve_db(db)), "selector": selector, "tables": plan,
                              "fmt": fmt, "sql": where}, limits, what="export")
        except QueryError as exc:
            if isinstance(exc, QueryLimitError):
                raise
            raise QueryError(f"--where {where!r}: {exc}" if where else str(exc), selector) from None
    rows = {t: int(n) for t, n in done.status["rows"].items()}
    files = {t: out / f"{t}.{ext}" for t in tables}
    manifest = {"database": str(resolve_db(db)), "schema_version": SCHEMA_VERSION, "format": fmt,
                "where": where, "exported_at_utc": utc_now().isoformat(),
                "tables": {t: {"file": files[t].name, "rows": rows[t]} for t in tables}}
    try:
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot write {out / 'manifest.json'}: {exc.strerror or exc}",
                          exit_code=1 if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) else EXIT_BAD_INPUT
                          ) from None
    logger.info("exported %d tables (%d rows) to %s", len(files), sum(rows.values()), out)
    return ExportResult(out, fmt, files, rows, where)


__all__ = ["EXPORT_FORMATS", "EXPORT_TIMEOUT_S", "ExportResult", "QUERY_LIMIT", "QUERY_TIMEOUT_S", "QueryError",
           "QueryLimitError", "QueryResult", "export", "query", "read_df"]
