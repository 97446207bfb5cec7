"""CLI subcommands backed by flows and servers: ingest, schedule, demo, dashboard."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flows.cli_common import EXIT_BAD_INPUT, ROOT, add_model_options, make_config, prefect_local_env

EXAMPLES = ROOT / "examples" / "audio"


def _add_ingest_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="folder of recordings (searched recursively)")
    p.add_argument("--db", help="DuckDB file (default ./emotivoice.duckdb or $EMOTIVOICE_DB)")
    p.add_argument("--workers", type=int, help="concurrent files in this process (default 1; without --cluster)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the files on Dask: 'local:N' (N worker processes started for the run) or a "
                        "scheduler address such as tcp://host:8786 (default: $EMOTIVOICE_CLUSTER, else threads)")
    add_model_options(p)


def cmd_ingest(args) -> int:
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


def cmd_schedule(args) -> int:
    config = make_config(args)
    prefect_local_env(config)
    from flows.schedule import serve_schedule

    serve_schedule(args.dir, config, cron=args.cron)
    return 0


def cmd_demo(args) -> int:
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
    args.host, args.port = "127.0.0.1", args.port
    return cmd_dashboard(args)


def cmd_dashboard(args: argparse.Namespace) -> int:
    import subprocess

    from dashboard import auth

    cfg = make_config(args, no_login=True if getattr(args, "no_login", False) else None)
    # Login: refuse a network address without one (or without --no-login), before anything starts.
    secrets = auth.secrets_paths(getattr(args, "secrets", None), ROOT)
    plan = auth.plan_serving(args.host, args.port, cfg, secrets)
    if plan.problem:
        print(f"emotivoice dashboard: {plan.problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for note in plan.notes:
        print(note, file=sys.stderr)
    env = dict(os.environ, EMOTIVOICE_DB=str(Path(cfg.db).resolve()),
               EMOTIVOICE_VIEWERS=",".join(cfg.viewers), EMOTIVOICE_ANALYSTS=",".join(cfg.analysts),
               EMOTIVOICE_NO_LOGIN="true" if cfg.no_login else "false")
    toml = getattr(args, "config", None) or os.environ.get("EMOTIVOICE_CONFIG") or (
        "emotivoice.toml" if Path("emotivoice.toml").is_file() else None)
    if toml:  # the app runs in ROOT: hand it the same file
        env["EMOTIVOICE_CONFIG"] = str(Path(toml).resolve())
    cmd = [sys.executable, "-m", "dashboard.serve", "run", str(ROOT / "dashboard" / "app.py"),  # = streamlit run
           "--server.address", args.host, "--server.port", str(args.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           *(arg for path in secrets for arg in ("--secrets.files", str(path)))]
    login = "login: " + ", ".join(plan.login.providers) if plan.login else "no login"
    print(f"EmotiVoice dashboard on http://{args.host}:{args.port}  (database: {cfg.db}; {login}; Ctrl-C to stop)")
    return subprocess.call(cmd, env=env, cwd=str(ROOT))


def add_commands(sub) -> None:
    p = sub.add_parser("ingest", help="ingest a folder of recordings into the warehouse (Prefect flow)")
    _add_ingest_options(p)
    p.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    p.add_argument("--retry-failed", action="store_true",
                   help="also retry files that failed in an earlier run and are unchanged (by default a file "
                        "that failed because of its content, e.g. one that crashed the decoder, is retried "
                        "only once it changes)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("schedule", help="serve a Prefect deployment that ingests a folder on a cron schedule")
    _add_ingest_options(p)
    p.add_argument("--cron", required=True, help='cron expression, e.g. "*/30 * * * *"')
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("demo", help="ingest the example clips, print a summary, open the dashboard")
    p.add_argument("--db")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--no-dashboard", action="store_true")
    add_model_options(p)
    p.set_defaults(func=cmd_demo)
