"""The `emotivoice` command: a thin caller of pipeline/, warehouse/ and flows/.

Every subcommand answers bad input with exit code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from flows import commands
from flows.cli_common import EXIT_BAD_INPUT, add_model_options, make_config

logger = logging.getLogger("emotivoice")


def _setup_env() -> None:
    # Nothing may reach outside the machine unless the user asks; Prefect telemetry off.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # A local:N cluster's scheduler and nannies log every connection at INFO; the workers' own lines
    # ("emotivoice worker: start/done PATH") stay on.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


# ----------------------------------------------------------------------------- analyze
def _print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from rich.markup import escape

    from flows.text import printable

    def text(value) -> str:  # user and model strings are text, never rich markup or control characters
        return escape(printable(value))

    console = Console(width=None if sys.stdout.isatty() else 160)
    m = result.models
    console.print(f"[bold]{text(result.file)}[/bold]  {result.duration_s:.2f} s  "
                  f"emotion model: {text(m.emotion)}  whisper: {text(m.whisper or 'none')}")
    if m.emotion in ("compact", "whisper-head"):
        from pipeline.compact import card_summary
        from pipeline.whisper_emotion import card_summary as head_summary

        summary = card_summary() if m.emotion == "compact" else head_summary()
        if summary:
            console.print(f"[dim]{summary}[/dim]")
    if m.absent_labels:
        console.print(f"absent classes (this model does not have them): {', '.join(m.absent_labels)}")
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {text(note)}")
    show = m.emotion_trained
    if not show:
        console.print("[red]UNTRAINED emotion model: its scores are not emotions and are not shown "
                      "(--json has the raw outputs, flagged emotion_trained=false)[/red]")
    table = Table()
    cols = ["#", "start s", "end s"] + (["dominant", "base (top 3)", "granular", "complex"] if show else [])
    for col in cols + ["transcript"]:
        table.add_column(col)
    for c in result.chunks:
        row = [str(c.idx), f"{c.start_s:.2f}", f"{c.end_s:.2f}"]
        if show:
            present = sorted(((k, v) for k, v in c.base.items() if v is not None), key=lambda kv: -kv[1])[:3]
            row += [
                c.dominant or "-",
                " ".join(f"{k} {v:.2f}" for k, v in present),
                ", ".join(g.name for g in c.granular[:3]),
                ", ".join(f"{x.name} {x.confidence:.2f}" for x in c.complex),
            ]
        table.add_row(*row, text((c.transcript or "")[:80]))
    console.print(table)


def cmd_analyze(args: argparse.Namespace) -> int:
    from pipeline import Analyzer

    analyzer = Analyzer(make_config(args))
    result = analyzer.analyze_file(args.file)
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=None if args.compact else 2))
    else:
        _print_table(result)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotivoice", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML configuration file (default: $EMOTIVOICE_CONFIG or ./emotivoice.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (errors are one line)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="analyse one audio file: chunks, emotions, transcript")
    p.add_argument("file")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--compact", action="store_true", help="one-line JSON")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("dashboard", help="run the Streamlit dashboard on 127.0.0.1")
    p.add_argument("--db")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; any but loopback needs a login or --no-login (docs/serving.md)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--no-login", action="store_true",
                   help="serve a network address without a login, on purpose: everyone who reaches it is an analyst")
    p.add_argument("--secrets", help="Streamlit secrets file with the [auth] login "
                   "(default: ~/.streamlit/secrets.toml and .streamlit/secrets.toml of the project)")
    p.set_defaults(func=commands.cmd_dashboard)

    _optional_commands(sub)
    return parser


def _optional_commands(sub) -> None:
    """Subcommands implemented in other modules; each module adds its own options."""
    from flows import sql_cli
    from flows import train_cli as train

    for name, help_text, add_arguments, run in (
        ("train", "train an emotion model (compact, HuBERT head or Whisper-encoder head) on labelled speech",
         train.add_train_arguments, train.run_train),
        ("evaluate", "evaluate an emotion model: UAR, WA, macro-F1, confusion",
         train.add_evaluate_arguments, train.run_evaluate),
        ("sql", "run read-only SQL on the warehouse", sql_cli.add_sql_arguments, sql_cli.run_sql),
        ("export", "export warehouse tables as parquet/csv/json", sql_cli.add_export_arguments, sql_cli.run_export),
    ):
        p = sub.add_parser(name, help=help_text)
        add_arguments(p)
        p.set_defaults(func=run)
    commands.add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    _setup_env()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from pipeline import AudioError, ModelUnavailableError

    from warehouse.errors import WarehouseError, one_line

    try:
        return int(args.func(args) or 0)
    except (AudioError, ModelUnavailableError, FileNotFoundError, ValueError) as exc:
        _debug_traceback(args)
        print(f"emotivoice {args.command}: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WarehouseError as exc:  # busy, not a database, limits: one line, the error's exit code
        _debug_traceback(args)
        print(f"emotivoice {args.command}: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else: still one line (the traceback with --debug)
        _debug_traceback(args)
        print(f"emotivoice {args.command}: {type(exc).__name__}: {one_line(exc)}"
              + ("" if args.debug else " (--debug shows the traceback)"), file=sys.stderr)
        return 1


def _debug_traceback(args: argparse.Namespace) -> None:
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
