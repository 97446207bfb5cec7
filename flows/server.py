"""Local Prefect servers that never outlive the command that started them.

Prefect needs an API server. When none is configured (``PREFECT_API_URL`` in the environment, a profile
or ``prefect.toml``), Prefect 3 starts an "ephemeral" one: a ``uvicorn`` child process that it stops
at a normal exit, but that a SIGKILLed or crashed parent leaves running for ever (~230 MB each). So
``emotivoice ingest``/``demo``/``schedule`` start their own server instead, one way for all of them:

* a child process on a free ``127.0.0.1`` port (nothing listens beyond the machine), its Prefect home
  (SQLite database, ``server.log``) under the data directory's ``prefect/``;
* in its own session and process group, so a terminal's Ctrl-C reaches only the command, which stops
  the server last, after the flow has reported its final state to it (``killpg``: the whole group goes);
* with Linux's parent-death signal (``PR_SET_PDEATHSIG``): the kernel sends it SIGTERM when the command
  dies in any way, SIGKILL and segfaults included.

Two kinds: ``"api"`` is the same ASGI app, services and UI setting Prefect's ephemeral server runs
(``uvicorn --factory prefect.server.api.server:create_app``, UI off) — enough to record flow and task
runs; ``"full"`` is ``prefect server start`` (UI and every service, the scheduler included) — what a
served deployment needs.
"""

from __future__ import annotations

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

from pipeline import Config

log = logging.getLogger(__name__)

#: Servers started by this process and not yet stopped (the forced exit of ``flows.lifecycle`` stops them).
RUNNING: dict[int, subprocess.Popen] = {}

_PR_SET_PDEATHSIG = 1
try:  # loaded here, not in the forked child: the child only makes one foreign call before exec
    import ctypes

    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # not glibc: the signal handlers and the finally clauses still stop the server
    _LIBC = None


def configured_api_url() -> str | None:
    """The Prefect API the user configured (environment, profile or prefect.toml), or None."""
    from prefect.settings import PREFECT_API_URL

    return os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() or None


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens on 127.0.0.1 there, else a free port the OS picks."""
    with socket.socket() as s:
        if preferred:
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_parent_death_signal(sig: int = signal.SIGTERM, *, parent: int | None = None) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only).

    Returns False where that is not available. With ``parent`` given and already gone (the parent died
    before the request), exits at once, as the signal would have made it.
    """
    if _LIBC is None:
        return False
    if _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if parent is not None and os.getppid() != parent:
        os._exit(128 + int(sig))
    return True


def _command(kind: str, port: int) -> list[str]:
    if kind == "full":
        return [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    if kind == "api":
        import prefect

        return [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).resolve().parents[1]),
                "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "error", "--lifespan", "on"]
    raise ValueError(f"Prefect server kind must be 'api' or 'full', not {kind!r}")


def start_server(config: Config, *, kind: str = "api", port: int | None = None,
                 timeout_s: float | None = None) -> tuple[subprocess.Popen, str]:
    """Start a Prefect server child (see the module's docstring); returns it and its API URL once healthy.

    Raises:
        RuntimeError: it exited or did not answer within ``timeout_s`` (default
            ``$PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` or 180 s); the message names its log.
    """
    timeout_s = timeout_s or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    home = config.data_path.resolve() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = home / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if kind == "api":  # what Prefect's ephemeral server sets
        env.update(PREFECT_UI_ENABLED="0", PREFECT_SERVER_UI_ENABLED="false", PREFECT__SERVER_EPHEMERAL="1",
                   PREFECT__SERVER_FINAL="1")
    parent = os.getpid()
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            _command(kind, port), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=(lambda: set_parent_death_signal(parent=parent)) if _LIBC else None)
    RUNNING[proc.pid] = proc
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(proc, url, timeout_s, log_path)
    except BaseException:
        stop_server(proc)
        raise
    log.info("Prefect server (%s) pid %d on %s, log %s", kind, proc.pid, url, log_path)
    return proc, url


def _wait_healthy(proc: subprocess.Popen, url: str, timeout_s: float, log_path: Path) -> None:
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
            time.sleep(0.1)
    # A server that lost the port to another one may have answered that one's health check, then exit.
    time.sleep(0.3)
    if proc.poll() is not None:
        raise RuntimeError(f"the local Prefect server exited with status {proc.returncode} (port taken?); "
                           f"see {log_path}")


def stop_server(proc: subprocess.Popen, *, wait_s: float = 5.0) -> None:
    """SIGTERM the server's process group, SIGKILL it after ``wait_s``; quiet if it is already gone."""
    try:
        for sig, wait in ((signal.SIGTERM, wait_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                proc.poll()
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                log.warning("Prefect server pid %d did not stop within %.0f s of SIGTERM; killing it", proc.pid, wait)
    finally:
        RUNNING.pop(proc.pid, None)


def stop_all(*, wait_s: float = 3.0) -> None:
    """Stop every server this process started and has not stopped yet."""
    for proc in list(RUNNING.values()):
        stop_server(proc, wait_s=wait_s)


@contextmanager
def prefect_api(config: Config, *, kind: str = "api", preferred_port: int | None = None,
                announce: str | None = None, timeout_s: float | None = None) -> Iterator[str]:
    """The Prefect API URL to run against: the configured one, else a server started here and stopped on
    exit (see the module's docstring). While it runs, Prefect's settings and ``$PREFECT_API_URL`` (which
    child processes inherit) point at it.

    Args:
        kind: 'api' (flow and task run records) or 'full' (UI, scheduler: for served deployments).
        preferred_port: try this port first (e.g. 4200 for a UI the user may bookmark).
        announce: print this text followed by the UI's address and the log's path once it is up.
        timeout_s: how long the server may take to answer (default: see ``start_server``).
    """
    configured = configured_api_url()
    if configured:
        yield str(configured)
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    t0 = time.perf_counter()
    proc, url = start_server(config, kind=kind, port=free_port(preferred_port), timeout_s=timeout_s)
    log.info("Prefect server started in %.1f s", time.perf_counter() - t0)
    if announce:
        print(f"{announce}: UI at {url.removesuffix('/api')} (log {config.data_path.resolve() / 'prefect' / 'server.log'})",
              flush=True)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _send_queued_logs()  # while our server still answers
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        stop_server(proc)


def _send_queued_logs(timeout_s: float = 10.0) -> None:
    """Send Prefect's queued run logs before our server goes: left queued, Prefect retries them at
    interpreter exit against the stopped server for about a minute."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout_s)
