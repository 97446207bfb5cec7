"""``emotivoice sql`` and ``emotivoice export``: argument definitions and handlers the main CLI delegates to."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from warehouse.errors import WarehouseError

SQL_FORMATS = ("table", "csv", "json")


def _add_db(parser: argparse.ArgumentParser) -> None:
    try:
        parser.add_argument("--db", help="DuckDB file (default: $EMOTIVOICE_DB or ./emotivoice.duckdb)")
    except argparse.ArgumentError:  # the caller's parser already has --db
        pass


def add_sql_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``emotivoice sql "SELECT ..." [--db PATH] [--format table|csv|json]``."""
    parser.add_argument("sql", help="one read-only statement (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)")
    _add_db(parser)
    parser.add_argument("--format", choices=SQL_FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--limit", type=int, default=None,
                        help="keep at most this many rows (default 10000; 0 = no limit)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop the query after this many seconds (default 30)")


def _db_path(args: argparse.Namespace):
    """--db, else the database of --config (when the main CLI has that option), else the default."""
    from warehouse.connection import resolve_db

    db = getattr(args, "db", None)
    config_file = getattr(args, "config", None)
    if not db and config_file:
        from pipeline.config import load_config

        db = load_config(config_file).db
    return resolve_db(db)


def run_sql(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``args.sql``; prints the rows (or ``error: <DuckDB's message>``); returns the exit code.

    Exit codes: 0 ok, 1 the query failed, 2 no such database.
    """
    from warehouse.sql import QUERY_LIMIT, QUERY_TIMEOUT_S, query

    out, err = stdout or sys.stdout, stderr or sys.stderr
    path = _db_path(args)
    if not path.exists():
        print(f"error: no database at {path} (ingest something first, or pass --db)", file=err)
        return 2
    limit = QUERY_LIMIT if args.limit is None else (None if args.limit == 0 else args.limit)
    timeout = QUERY_TIMEOUT_S if args.timeout is None else args.timeout
    try:
        result = query(args.sql, db=path, limit=limit, timeout_s=timeout)
    except WarehouseError as exc:
        print(f"error: {exc}", file=err)
        return 1
    df = result
    if args.format == "csv":
        out.write(df.to_csv(index=False))
    elif args.format == "json":
        out.write(df.to_json(orient="records", date_format="iso", force_ascii=False) + "\n")
    else:
        out.write((df.to_string(index=False) if len(df.columns) else "(no columns)") + "\n")
    note = f"({len(df)} row{'s' if len(df) != 1 else ''}"
    note += f"; more rows exist, cut at --limit {result.limit})" if result.truncated else ")"
    print(note, file=err)
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``emotivoice export --format parquet|csv|json --out DIR [--where "..."] [--db PATH]``."""
    from warehouse.sql import EXPORT_FORMATS

    parser.add_argument("--format", choices=EXPORT_FORMATS, default="parquet", help="file format (default: parquet)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--where", default=None,
                        help="SQL condition on files columns, e.g. \"folder LIKE '%%/calls'\"; "
                             "chunks and per-chunk tables follow by file_id")
    _add_db(parser)


def run_export(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Export the tables; prints one line per file written; returns the exit code (0 ok, 1 failed, 2 no db)."""
    from warehouse.sql import export

    out, err = stdout or sys.stdout, stderr or sys.stderr
    path = _db_path(args)
    if not path.exists():
        print(f"error: no database at {path} (ingest something first, or pass --db)", file=err)
        return 2
    try:
        result = export(args.out, fmt=args.format, where=args.where, db=path)
    except WarehouseError as exc:
        print(f"error: {exc}", file=err)
        return 1
    for table, file in result.files.items():
        print(f"{file}\t{result.rows[table]} rows", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m warehouse.cli sql ...`` / ``export ...`` (the same as the emotivoice subcommands)."""
    parser = argparse.ArgumentParser(prog="python -m warehouse.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sql_arguments(sub.add_parser("sql", help="read-only SQL"))
    add_export_arguments(sub.add_parser("export", help="export tables"))
    args = parser.parse_args(argv)
    return run_sql(args) if args.command == "sql" else run_export(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

__all__ = ["add_export_arguments", "add_sql_arguments", "main", "run_export", "run_sql"]
