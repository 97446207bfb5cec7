"""`emotivoice schedule`: serve a deployment that ingests new and changed files on a cron schedule.

Never two runs of one corpus at once, twice over: the deployment's concurrency limit is 1 with the
CANCEL_NEW strategy (a run that comes due while one is going is cancelled, not queued), and
``ingest_flow`` itself holds an exclusive lock per (corpus, database) so a manual
``emotivoice ingest`` of the same folder cannot overlap a scheduled run either.

Prefect's ephemeral (in-process) server cannot schedule runs, so without ``PREFECT_API_URL`` the command
starts a Prefect server of its own on 127.0.0.1 (port 4200 when free, else any free port; its database and
log under the data directory's ``prefect/``), prints the UI's address, and stops it on exit. With
``PREFECT_API_URL`` set it uses that server instead (e.g. one started by ``prefect server start``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline.config import Config

log = logging.getLogger(__name__)


def deployment_name(root: str | Path, db: str) -> str:
    key = hashlib.sha256(f"{Path(root).resolve()}|{Path(db).resolve()}".encode()).hexdigest()[:8]
    return f"ingest-{Path(root).resolve().name}-{key}"


def _port(preferred: int = 4200) -> int:
    """``preferred`` when nothing listens on 127.0.0.1 there, else a free port the OS picks."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


@contextmanager
def scheduling_server(config: Config, *, timeout_s: float | None = None) -> Iterator[str]:
    """The Prefect API URL to serve against: ``$PREFECT_API_URL``, else a server started here and stopped
    on exit (``prefect server start --host 127.0.0.1``, its home under ``config.data_path / 'prefect'``)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    timeout_s = timeout_s or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    home = config.data_path.resolve() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    port = _port()
    log_path = home / "server.log"
    env = dict(os.environ, PREFECT_HOME=str(home))
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the local Prefect server exited with status {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the local Prefect server did not answer within {timeout_s:.0f} s; "
                                       f"see {log_path}") from None
                time.sleep(1)
        print(f"Prefect server for the schedule: UI at http://127.0.0.1:{port} (log {log_path})", flush=True)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def serve_schedule(root: str | Path, config: Config, *, cron: str) -> None:
    """Block, serving the scheduled ingestion of ``root`` until interrupted (Ctrl-C)."""
    root_p = Path(root)
    if not root_p.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except Exception as exc:  # pydantic validation error: say which option is wrong
        raise ValueError(f"--cron {cron!r} is not a valid cron expression") from exc
    with scheduling_server(config) as url:
        _serve(root_p, config, cron=cron, api_url=url)


def _serve(root_p: Path, config: Config, *, cron: str, api_url: str) -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.ingest import ingest_flow

    os.environ["PREFECT_API_URL"] = api_url
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        ingest_flow.serve(
            name=deployment_name(root_p, config.db),
            cron=cron,
            parameters={"root": str(root_p.resolve()), "config_json": config.to_json(), "progress": False},
            global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            description=f"EmotiVoice ingestion of {root_p.resolve()} into {config.db}",
        )
