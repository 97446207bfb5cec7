"""Stopping a command cleanly on SIGTERM, SIGINT (Ctrl-C) or SIGHUP, in bounded time.

Inside :func:`stop_on_signals` the first of those signals raises in the main thread (KeyboardInterrupt
for SIGINT, ``SystemExit(128 + signal)`` otherwise), so every ``finally`` clause runs: the ingestion
flow closes its run as ``interrupted`` and reports to Prefect, then the Prefect server the command
started is stopped. A file being analysed in a worker thread cannot be interrupted, though, and Python
waits for it before it exits; so the signal also arms a watchdog: ``config.stop_grace_s`` seconds later,
if the process is still there, it marks this process's runs ``interrupted``, stops its Prefect servers
and ends the process (``os._exit``) without waiting for the file (its staged result, if any, is reused
by the next run; otherwise the file is analysed again). A second signal ends it at once the same way.

Against SIGKILL and crashes nothing in the process can run; there the kernel's parent-death signal
stops the server (``flows.server``) and the next run marks the dead run ``interrupted``
(``warehouse.runs``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from pipeline import Config

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: The forced stop's own steps give up after these many seconds each (DuckDB lock, server stop).
FORCE_STEP_S = 3.0


def _say(text: str) -> None:
    """One line on stderr, safe inside a signal handler (no buffered stream that may be mid-write)."""
    try:
        os.write(2, (text.rstrip("\n") + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


class _Stopper:
    def __init__(self, config: Config, grace_s: float):
        self.config = config
        self.grace_s = grace_s
        self.signum: int | None = None
        self.now = threading.Event()
        self.watchdog: threading.Thread | None = None

    def handle(self, signum: int, _frame) -> None:
        if self.signum is not None:  # a second signal: do not wait any longer
            self.now.set()
            return
        self.signum = signum
        name = signal.Signals(signum).name
        _say(f"emotivoice: {name} received; stopping (at most {self.grace_s:.0f} s, then forced)")
        log.warning("%s received; stopping the run", name)
        self.watchdog = threading.Thread(target=self._watch, name="emotivoice-stop-watchdog", daemon=True)
        self.watchdog.start()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def _watch(self) -> None:
        self.now.wait(self.grace_s)
        self.force()

    def force(self) -> None:
        """Mark this process's runs interrupted, stop its servers, end the process."""
        from flows import server

        _say(f"emotivoice: still not stopped after {self.grace_s:.0f} s; ending without waiting for the "
             "file in hand")
        marker = threading.Thread(target=self.mark_runs, daemon=True)
        marker.start()
        marker.join(FORCE_STEP_S)
        server.stop_all(wait_s=FORCE_STEP_S)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(128 + int(self.signum or signal.SIGTERM))

    def mark_runs(self) -> None:
        """Close this process's 'running' runs as interrupted (the flow does it itself when it can)."""
        from pathlib import Path

        from warehouse import Warehouse, connection

        try:
            if not Path(connection.resolve_db(self.config.db)).exists():
                return
            ids = Warehouse(self.config.db).interrupt_process_runs(wait_s=FORCE_STEP_S)
            if ids:
                log.warning("run(s) %s marked interrupted", ", ".join(map(str, ids)))
        except Exception as exc:  # the next run marks it (its pid is gone by then)
            log.warning("could not mark this process's runs interrupted: %s", exc)


@contextmanager
def stop_on_signals(config: Config, *, grace_s: float | None = None) -> Iterator[None]:
    """Turn SIGTERM/SIGINT/SIGHUP into a clean, bounded stop (see the module's docstring).

    Only in the main thread (elsewhere signal handlers cannot be set and this does nothing). After a
    signal the watchdog stays armed when the block is left: it also bounds Python's wait for worker
    threads at exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopper = _Stopper(config, config.stop_grace_s if grace_s is None else grace_s)
    previous = {sig: signal.signal(sig, stopper.handle) for sig in SIGNALS}
    try:
        yield
    finally:
        if stopper.signum is not None:
            stopper.mark_runs()  # a signal before the flow recorded or closed its run
        else:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
