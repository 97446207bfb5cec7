"""``emotivoice sql`` and ``emotivoice export``: argument definitions and handlers the main CLI delegates to.

The command-line side of ``warehouse.sql`` (argparse lives in flows/; the warehouse exports no CLI helpers).

Both run in the bounded sandbox (``warehouse.sandbox``): a memory cap, a time limit by default (no
limit only with ``--timeout 0``), and for ``sql`` a row and byte cap on the result. Every error is
one line on stderr (``error: <what>: <why>``) with a stable exit code (``warehouse.errors``): 1 a
failure of the machine (disk full), 2 bad input (bad SQL, a refused statement, a bad ``--where``,
a ``--db`` that is not an EmotiVoice database, an ``--out`` that cannot be written), 3 the database
stayed busy, 4 a time or memory limit stopped it. ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import TextIO

from warehouse.errors import EXIT_BAD_INPUT, EXIT_FAILED, WarehouseError, one_line

SQL_FORMATS = ("table", "csv", "json")


def _add_db(parser: argparse.ArgumentParser) -> None:
    try:
        parser.add_argument("--db", help="DuckDB file (default: $EMOTIVOICE_DB or ./emotivoice.duckdb)")
    except argparse.ArgumentError:  # the caller's parser already has --db
        pass


def _add_limits(parser: argparse.ArgumentParser, *, what: str, default_timeout: str) -> None:
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help=f"stop the {what} after this many seconds (default {default_timeout}; "
                             f"0 = no limit, which holds up ingestion writes while it runs)")
    parser.add_argument("--memory-mb", type=int, default=None, metavar="MIB",
                        help="memory (address-space) cap of the process running it (default: config sql_memory_mb, "
                             "2048)")


def add_sql_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``emotivoice sql "SELECT ..." [--db PATH] [--format table|csv|json] [limits]``."""
    parser.add_argument("sql", help="one read-only statement (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)")
    _add_db(parser)
    parser.add_argument("--format", choices=SQL_FORMATS, default="table",
                        help="output format (default: table; cells over 200 characters are cut there, "
                             "csv and json keep whole values)")
    parser.add_argument("--limit", type=int, default=None,
                        help="keep at most this many rows (default: config sql_max_rows, 10000; 0 = no row cap)")
    parser.add_argument("--max-mb", type=float, default=None, metavar="MIB",
                        help="keep at most this many MiB of result (default: config sql_max_mb, 32)")
    _add_limits(parser, what="query", default_timeout="30, config sql_timeout_s")


def _db_path(args: argparse.Namespace):
    """--db, else the database of --config (when the main CLI has that option), else the default."""
    from warehouse.connection import resolve_db

    db = getattr(args, "db", None)
    config_file = getattr(args, "config", None)
    if not db and config_file:
        from pipeline import load_config

        db = load_config(config_file).db
    return resolve_db(db)


def _fail(exc: BaseException, err: TextIO, args: argparse.Namespace, code: int | None = None) -> int:
    """One line on ``err`` (the traceback too with --debug); the exit code."""
    if getattr(args, "debug", False):
        traceback.print_exception(exc, file=err)
    print(f"error: {one_line(exc) or type(exc).__name__}", file=err)
    return code if code is not None else getattr(exc, "exit_code", EXIT_FAILED)


def _existing_db(args: argparse.Namespace, err: TextIO):
    try:
        path = _db_path(args)
    except (ValueError, OSError) as exc:  # a bad --config, ':memory:'
        _fail(exc, err, args)
        return None
    if not path.exists():
        print(f"error: no database at {path} (ingest something first, or pass --db)", file=err)
        return None
    if path.is_dir():
        print(f"error: --db {path} is a folder, not a DuckDB file", file=err)
        return None
    return path


def _render(result, fmt: str) -> str:
    from warehouse.render import format_table

    if fmt == "csv":
        return result.to_csv(index=False)
    if fmt == "json":
        return result.to_json(orient="records", date_format="iso", force_ascii=False, default_handler=str) + "\n"
    return format_table(result) + "\n"


def run_sql(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``args.sql``; prints the rows (or ``error: <reason>`` in one line); returns the exit code.

    Exit codes: 0 ok, 2 bad input (bad SQL, a refused statement, no or not a database), 3 busy,
    4 a time or memory limit stopped the query, 1 anything else.
    """
    from warehouse.sql import query

    out, err = stdout or sys.stdout, stderr or sys.stderr
    path = _existing_db(args, err)
    if path is None:
        return EXIT_BAD_INPUT
    limit = None if args.limit == 0 else args.limit
    if limit is not None and limit < 0:
        print(f"error: --limit must be 0 (no row cap) or more, not {args.limit}", file=err)
        return EXIT_BAD_INPUT
    kwargs = {"db": path, "memory_mb": getattr(args, "memory_mb", None)}
    if args.limit is not None:
        kwargs["limit"] = limit
    if args.timeout is not None:
        kwargs["timeout_s"] = args.timeout if args.timeout > 0 else None
    if getattr(args, "max_mb", None) is not None:
        kwargs["max_bytes"] = int(args.max_mb * (1 << 20)) if args.max_mb > 0 else None
    try:
        result = query(args.sql, **kwargs)
        text = _render(result, args.format)
    except WarehouseError as exc:
        return _fail(exc, err, args)
    except (ValueError, TypeError, OverflowError) as exc:  # a value the output format cannot write
        return _fail(exc, err, args, EXIT_FAILED)
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        return 0
    note = f"({len(result)} row{'s' if len(result) != 1 else ''}"
    if result.truncated_by == "rows":
        note += f"; more rows exist, cut at --limit {result.limit})"
    elif result.truncated_by == "bytes":
        note += f"; cut at the {result.max_bytes / (1 << 20):g} MiB result cap (--max-mb); add a LIMIT or aggregate)"
    else:
        note += ")"
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
    _add_limits(parser, what="export", default_timeout="600, config export_timeout_s")


def run_export(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Export the tables; prints one line per file written; returns the exit code.

    Exit codes: 0 ok, 1 a failure of the machine (disk full), 2 bad input (bad --where, an --out that
    cannot be written, no or not a database), 3 busy, 4 a time or memory limit stopped it.
    """
    from warehouse.sql import export

    out, err = stdout or sys.stdout, stderr or sys.stderr
    path = _existing_db(args, err)
    if path is None:
        return EXIT_BAD_INPUT
    kwargs = {"memory_mb": getattr(args, "memory_mb", None)}
    if getattr(args, "timeout", None) is not None:
        kwargs["timeout_s"] = args.timeout if args.timeout > 0 else None
    try:
        result = export(args.out, fmt=args.format, where=args.where, db=path, **kwargs)
    except WarehouseError as exc:
        return _fail(exc, err, args)
    except ValueError as exc:
        return _fail(exc, err, args, EXIT_BAD_INPUT)
    for table, file in result.files.items():
        print(f"{file}\t{result.rows[table]} rows", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.sql_cli sql ...`` / ``export ...`` (the same as the emotivoice subcommands)."""
    parser = argparse.ArgumentParser(prog="python -m flows.sql_cli")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sql_arguments(sub.add_parser("sql", help="read-only SQL"))
    add_export_arguments(sub.add_parser("export", help="export tables"))
    args = parser.parse_args(argv)
    return run_sql(args) if args.command == "sql" else run_export(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

__all__ = ["add_export_arguments", "add_sql_arguments", "main", "run_export", "run_sql"]
