"""What every ``emotivoice`` subcommand shares: the project root, the bad-input exit code, the model
options, the configuration built from them, and Prefect's local-mode environment.

``flows.cli`` (the parser and ``main``) and ``flows.commands`` (the flow-backed subcommands) both import
this module and not each other, so neither depends on the other's import order.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXIT_BAD_INPUT = 2


def make_config(args: argparse.Namespace, **extra):
    """The configuration for one command: ``--config`` (or the default file), the environment, then the
    flags the command has (unset flags are None and change nothing) and ``extra``."""
    from pipeline import load_config

    overrides = {
        "emotion_model": getattr(args, "emotion_model", None),
        "whisper_model": getattr(args, "whisper_model", None),
        "language": getattr(args, "language", None),
        "explain": getattr(args, "explain", None),
        "device": getattr(args, "device", None),
        "db": getattr(args, "db", None),
        "workers": getattr(args, "workers", None),
        "cluster": getattr(args, "cluster", None),
    }
    overrides.update(extra)
    return load_config(getattr(args, "config", None), **overrides)


def add_model_options(p: argparse.ArgumentParser, *, explain_default: str | None = None) -> None:
    p.add_argument("--emotion-model", help="'auto' (default), 'compact', a hub id or a local path")
    p.add_argument("--whisper-model", help="'auto' (default), 'none', a Whisper size or a checkpoint path")
    p.add_argument("--language", help="force the transcription language (ISO code); default: auto-detect")
    p.add_argument("--explain", choices=["none", "fast", "full"], default=explain_default,
                   help="explanation tier (default from config: fast)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])


def prefect_local_env(config) -> None:
    """Prefect's local mode: home under our data dir, no telemetry (the server: ``flows.server``)."""
    home = config.data_path.resolve() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
