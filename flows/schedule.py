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
import threading
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
    from prefect.settings import PREFECT_API_URL

    configured = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()  # env, profile or prefect.toml
    if configured:
        yield str(configured)
        return
    timeout_s = timeout_s or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    home = config.data_path.resolve() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    port = _port()
    log_path = home / "server.log"
    env = dict(os.environ, PREFECT_HOME=str(home))
    # The server runs in its own session (Ctrl-C reaches only us), so every way out of here must stop
    # it: SIGTERM and SIGHUP become SystemExit while it runs.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _exit_on_signal)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
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
        time.sleep(1.0)  # a server that lost the port to another one answers that one's health check, then exits
        if proc.poll() is not None:
            raise RuntimeError(f"the local Prefect server exited with status {proc.returncode} (port {port} "
                               f"taken?); see {log_path}")
        print(f"Prefect server for the schedule: UI at http://127.0.0.1:{port} (log {log_path})", flush=True)
        yield url
    finally:
        _stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent() -> None:
    """In the server's process, before exec: the kernel sends it SIGTERM when we die, even by SIGKILL
    (Linux ``PR_SET_PDEATHSIG``), so no server outlives the command."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except Exception:  # not glibc: the finally clause and the signal handlers still stop it
        pass


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it after 20 s; quiet if it is already gone."""
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


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
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.ingest import ingest_flow

    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url  # the flow-run processes the runner starts inherit it
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            _serve_flow(ingest_flow, root_p, config, cron)
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def _serve_flow(ingest_flow, root_p: Path, config: Config, cron: str) -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    ingest_flow.serve(
        name=deployment_name(root_p, config.db),
        cron=cron,
        parameters={"root": str(root_p.resolve()), "config_json": config.to_json(), "progress": False},
        global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"EmotiVoice ingestion of {root_p.resolve()} into {config.db}",
    )
