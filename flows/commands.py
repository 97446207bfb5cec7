"""CLI subcommands backed by flows: ingest, schedule, demo."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "audio"


def prefect_local_env(config) -> None:
    """Prefect's local mode: home under our data dir, no telemetry (the server: ``flows.server``)."""
    home = config.data_path.resolve() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _add_ingest_options(p: argparse.ArgumentParser, add_model_options) -> None:
    p.add_argument("dir", help="folder of recordings (searched recursively)")
    p.add_argument("--db", help="DuckDB file (default ./emotivoice.duckdb or $EMOTIVOICE_DB)")
    p.add_argument("--workers", type=int, help="concurrent files (default 1)")
    add_model_options(p)


def cmd_ingest(args, make_config) -> int:
    config = make_config(args)
    if getattr(args, "retry_failed", False):
        config = config.replace(retry_failed=True)
    prefect_local_env(config)
    from flows.ingest import ingest_folder

    from flows.lifecycle import stop_on_signals

    with stop_on_signals(config):  # SIGTERM/SIGINT/SIGHUP: run 'interrupted', server stopped, bounded time
        summary = ingest_folder(args.dir, options=config, progress=sys.stderr.isatty() or args.progress)
    for line in summary.lines():
        print(line)
    return 0 if summary.status in ("completed", "skipped") else 1


def cmd_schedule(args, make_config) -> int:
    config = make_config(args)
    prefect_local_env(config)
    from flows.schedule import serve_schedule

    serve_schedule(args.dir, config, cron=args.cron)
    return 0


def cmd_demo(args, make_config) -> int:
    """Ingest the example clips into the default database, print the summary, open the dashboard."""
    config = make_config(args)
    prefect_local_env(config)
    from flows.ingest import ingest_folder

    print(f"EmotiVoice demo: ingesting {EXAMPLES.relative_to(ROOT)} into {config.db}")
    from flows.lifecycle import stop_on_signals

    with stop_on_signals(config):
        summary = ingest_folder(EXAMPLES, options=config, progress=True)
    for line in summary.lines():
        print(line)
    from warehouse import query

    print("\nemotion mix (dominant emotion per chunk):")
    print(query(
        "SELECT c.dominant, count(*) AS chunks FROM chunks c GROUP BY 1 ORDER BY 2 DESC", db=config.db,
    ).to_string(index=False))
    if args.no_dashboard:
        return 0
    from flows.cli import cmd_dashboard

    args.host, args.port = "127.0.0.1", args.port
    return cmd_dashboard(args)


def add_commands(sub, add_model_options, make_config) -> None:
    p = sub.add_parser("ingest", help="ingest a folder of recordings into the warehouse (Prefect flow)")
    _add_ingest_options(p, add_model_options)
    p.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    p.add_argument("--retry-failed", action="store_true",
                   help="also retry files that failed in an earlier run and are unchanged (by default a file "
                        "that failed because of its content, e.g. one that crashed the decoder, is retried "
                        "only once it changes)")
    p.set_defaults(func=lambda a: cmd_ingest(a, make_config))

    p = sub.add_parser("schedule", help="serve a Prefect deployment that ingests a folder on a cron schedule")
    _add_ingest_options(p, add_model_options)
    p.add_argument("--cron", required=True, help='cron expression, e.g. "*/30 * * * *"')
    p.set_defaults(func=lambda a: cmd_schedule(a, make_config))

    p = sub.add_parser("demo", help="ingest the example clips, print a summary, open the dashboard")
    p.add_argument("--db")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--no-dashboard", action="store_true")
    add_model_options(p)
    p.set_defaults(func=lambda a: cmd_demo(a, make_config))
