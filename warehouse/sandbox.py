"""Bounded execution of analyst SQL and exports in a child process (one path for the CLI, export and
the SQL page).

DuckDB's own ``memory_limit`` does not cover everything a query allocates (a 2 GB ``repeat()``
string, a billion-element list), and a timer that interrupts DuckDB does not cover fetching the
result and turning it into text. So analyst work runs in a child process (``sandbox_child.py``):

* the child caps its own address space (``RLIMIT_AS``, ``memory_mb``) before it opens anything, and
  runs DuckDB with ``memory_limit`` (a quarter of that), few threads and no spilling to disk;
* the parent kills the child when the wall-clock limit passes — execution, fetching and
  serialisation all count;
* the child fetches in batches and stops at ``max_rows`` rows or ``max_bytes`` bytes, whichever
  comes first; the result comes back as an Arrow IPC stream, which the parent reads with a ceiling of
  its own (a child that sends more is killed);
* the parent holds the readers' side of the warehouse gate (``connection.read_connection``) while the
  child runs, so writers queue exactly as for any other read.

Every failure becomes one of ``QueryError`` (DuckDB refused the SQL), ``QueryLimitError`` (time or
memory cap), ``ExportError`` (a file could not be written) or ``WarehouseError``.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warehouse.errors import (
    EXIT_BAD_INPUT,
    ExportError,
    QueryError,
    QueryLimitError,
    WarehouseError,
    one_line,
)

logger = logging.getLogger(__name__)

CHILD = Path(__file__).with_name("sandbox_child.py")
STATUS_PREFIX = "EMOTIVOICE-SANDBOX "
_MIB = 1 << 20
#: Rows per batch fetched from DuckDB in the child (the byte cap is checked after each batch).
BATCH_ROWS = 256
#: The smallest address-space cap that lets the child import DuckDB and open a file (measured:
#: about 1.1 GB of address space with 2 threads, most of it reserved, not resident).
MIN_MEMORY_MB = 1536
_STDERR_KEEP = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """Caps of one analyst query or export.

    Attributes:
        timeout_s: wall-clock seconds for the child's whole work (start, execute, fetch, serialise,
            transfer); None or 0 = no time limit.
        max_rows: rows kept at most (None = no row cap; the byte cap still holds).
        max_bytes: bytes of result kept at most (Arrow buffer size; None = no byte cap).
        memory_mb: address-space cap of the child process, MiB.
        threads: DuckDB threads in the child.
    """

    timeout_s: float | None = 30.0
    max_rows: int | None = 10_000
    max_bytes: int | None = 32 * _MIB
    memory_mb: int = 2048
    threads: int = 2

    @property
    def duckdb_memory_mb(self) -> int:
        return max(64, self.memory_mb // 4)

    @classmethod
    def from_config(cls, config: Any = None, **overrides: Any) -> "Limits":
        """Limits from ``pipeline.config.Config`` (``sql_*`` fields); ``overrides`` that are not None win."""
        if config is None:
            from pipeline.config import load_config

            config = load_config()
        values = {"timeout_s": config.sql_timeout_s, "max_rows": config.sql_max_rows or None,
                  "max_bytes": (config.sql_max_mb * _MIB) if config.sql_max_mb else None,
                  "memory_mb": config.sql_memory_mb}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class ChildResult:
    status: dict
    data: bytes
    wall_s: float


class _Drain(threading.Thread):
    """Reads a pipe to the end; keeps at most ``cap`` bytes (``overflow`` tells it went past)."""

    def __init__(self, pipe, cap: int | None, keep_tail: bool = False):
        super().__init__(daemon=True)
        self.pipe, self.cap, self.keep_tail = pipe, cap, keep_tail
        self.buf = bytearray()
        self.overflow = threading.Event()

    def run(self) -> None:
        try:
            while True:
                chunk = self.pipe.read1(1 << 16) if hasattr(self.pipe, "read1") else self.pipe.read(1 << 16)
                if not chunk:
                    return
                self.buf += chunk
                if self.cap is not None and len(self.buf) > self.cap:
                    if self.keep_tail:
                        del self.buf[:len(self.buf) - self.cap]
                    else:
                        self.overflow.set()
                        return
        except (OSError, ValueError):
            return


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        logger.warning("sandbox child %d did not exit after SIGKILL", proc.pid)


def run_child(request: dict, limits: Limits, *, what: str) -> ChildResult:
    """Start the child with ``request``, enforce ``limits``, return its status and stdout bytes.

    ``what`` names the work in messages ("query", "export").

    Raises:
        QueryLimitError: the time limit passed or the memory cap was hit.
        WarehouseError: the child died or sent more than the byte cap allows.
    """
    from warehouse.connection import _READ_CONFIG

    memory_mb = max(int(limits.memory_mb), MIN_MEMORY_MB)
    req = dict(request, memory_mb=memory_mb, duckdb_memory_mb=max(64, memory_mb // 4), threads=limits.threads,
               batch_rows=BATCH_ROWS, read_config=_READ_CONFIG, parent_pid=os.getpid(),
               max_rows=limits.max_rows, max_bytes=limits.max_bytes)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LD_PRELOAD"))}
    env.update({"MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"})
    # What the parent accepts: the byte cap plus IPC framing; without a byte cap, the child's memory cap.
    cap = limits.max_bytes if limits.max_bytes is not None else memory_mb * _MIB
    ceiling = cap + cap // 4 + _MIB
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-I", str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, close_fds=True)
    out, err = _Drain(proc.stdout, ceiling), _Drain(proc.stderr, _STDERR_KEEP, keep_tail=True)
    out.start()
    err.start()
    try:
        try:
            proc.stdin.write(pickle.dumps(req, protocol=pickle.HIGHEST_PROTOCOL))
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        timeout = limits.timeout_s if limits.timeout_s and limits.timeout_s > 0 else None
        deadline = None if timeout is None else t0 + timeout
        while proc.poll() is None:
            if out.overflow.is_set():
                _kill(proc)
                raise QueryLimitError(f"{what} stopped: its result grew past {cap / _MIB:g} MiB", request.get("sql"))
            if deadline is not None and time.monotonic() >= deadline:
                _kill(proc)
                raise QueryLimitError(f"{what} stopped: it ran longer than its {timeout:g} s time limit",
                                      request.get("sql"))
            try:
                proc.wait(timeout=0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        out.join(timeout=10)
        err.join(timeout=10)
    except BaseException:
        _kill(proc)  # Ctrl-C, a limit: the child never outlives the call
        raise
    finally:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
    wall = time.monotonic() - t0
    if out.overflow.is_set():
        raise QueryLimitError(f"{what} stopped: its result grew past {cap / _MIB:g} MiB", request.get("sql"))
    status = _parse_status(bytes(err.buf))
    if status is None:
        rc = proc.returncode
        if rc is not None and rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
            if -rc in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
                raise QueryLimitError(f"{what} stopped: its process died ({name}), most likely at its "
                                      f"{memory_mb} MB memory cap", request.get("sql"))
            raise WarehouseError(f"{what} stopped: its process died ({name})")
        tail = one_line(bytes(err.buf).decode("utf-8", "replace").strip().splitlines()[-1:] or "no message")
        raise WarehouseError(f"{what} failed in its child process (exit code {rc}): {tail}")
    if not status.get("ok"):
        kind, message = status.get("kind"), str(status.get("error", "unknown error"))
        if kind == "memory":
            raise QueryLimitError(f"{what} stopped: it needed more memory than its {memory_mb} MB cap "
                                  f"({one_line(message)})", request.get("sql"))
        if kind == "sql":
            raise QueryError(message, request.get("sql"))
        if kind == "io":
            raise ExportError(one_line(message), exit_code=_io_exit_code(message))
        raise WarehouseError(f"{what} failed: {one_line(message)}")
    return ChildResult(status, bytes(out.buf), wall)


def _io_exit_code(message: str) -> int:
    """Disk full and I/O errors are failures of the machine (1); a path the user gave that cannot be
    written (permissions, not a folder) is bad input (2)."""
    lowered = message.lower()
    if "permission denied" in lowered or "not a directory" in lowered or "read-only file system" in lowered:
        return EXIT_BAD_INPUT
    return 1


def _parse_status(stderr: bytes) -> dict | None:
    import json

    for line in reversed(stderr.decode("utf-8", "replace").splitlines()):
        if line.startswith(STATUS_PREFIX):
            try:
                return json.loads(line[len(STATUS_PREFIX):])
            except ValueError:
                return None
    return None


__all__ = ["BATCH_ROWS", "CHILD", "ChildResult", "Limits", "MIN_MEMORY_MB", "run_child"]
