"""Opening the DuckDB file: who may hold it when, and how long others wait.

DuckDB lets one process hold a database file read-write, or any number of processes hold it
read-only, never both; a conflicting open fails at once ("Could not set lock on file ..."). Within
one process a file cannot be open read-only and read-write at the same time either. The warehouse
therefore never keeps a connection open: every operation opens, does its work and closes.

* Writes (``write_connection``) are short transactions: one file's rows, prepared in memory before
  the lock is taken, land in one transaction (tens of milliseconds).
* Reads (``read_connection``) open read-only with external access disabled and close as soon as the
  result is materialised.
* A readers-writer gate made of three ``flock``-ed sidecar files (``<db>.rwlock``,
  ``<db>.turnstile``, ``<db>.waiting``) orders our own processes and threads so that DuckDB's lock
  is almost never contested: readers share, a writer is exclusive, a waiting writer closes the
  turnstile so a stream of readers cannot starve it, and a writer lets readers already queued go
  first so a burst of writes cannot starve them.
* Programs outside the gate (the ``duckdb`` CLI, another tool) still hold DuckDB's own lock; both
  sides then retry the open with jittered exponential backoff until a wait budget runs out
  (``WRITE_WAIT_S`` for writers, ``READ_WAIT_S`` for readers), and only then raise
  ``WarehouseBusyError`` naming the holder DuckDB reports.
* A writer that must not give up (the ingestion flow, whose results are staged on disk) writes inside
  ``patient_writes()``: its writes wait for readers as long as it takes and report that they wait
  (every ``WAIT_NOTICE_S`` seconds) instead of failing. Every reader has a bounded time limit by
  default, so the wait ends; a reader without one was asked for explicitly.

See docs/schema.md ("Concurrency") for the reasoning.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from warehouse.errors import NotADatabaseError, WarehouseBusyError, WarehouseError, one_line

try:  # POSIX; elsewhere only DuckDB's own lock + retry applies
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Storage format written into new files, so DuckDB 1.4/1.5 clients (e.g. the ``duckdb`` CLI from
#: ``duckdb-cli`` 1.5.x) can open them. Existing files keep the format they were created with.
STORAGE_COMPATIBILITY = "v1.4.0"
#: Seconds a writer waits for readers and other programs before giving up. Must exceed the longest
#: read a dashboard may run (``sql.QUERY_TIMEOUT_S``) so the flow never fails because of a reader.
WRITE_WAIT_S = 180.0
#: Seconds a reader waits for a writer (writes hold the file for tens of milliseconds).
READ_WAIT_S = 60.0
#: A writer that has waited this long says so (log, and the ``patient_writes`` callback), then again
#: every ``WAIT_NOTICE_S`` seconds.
WAIT_NOTICE_S = 10.0

_WRITE_CONFIG = {"storage_compatibility_version": STORAGE_COMPATIBILITY}
#: Read-only connections: no file/URL access, no extension install/load, settings locked so user SQL
#: cannot undo any of it. Every read connection in a process uses this same config (DuckDB refuses
#: two connections to one file with different configs in one process).
_READ_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}
_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock", "different configuration than existing")


@dataclass(frozen=True)
class LockHold:
    """One use of the database file by this process."""

    mode: str
    """'write' or 'read'."""
    db: str
    wait_s: float
    """Seconds spent waiting for the gate and DuckDB's lock."""
    hold_s: float
    """Seconds from getting the lock to releasing it (what others had to wait)."""


_HOLDS: deque[LockHold] = deque(maxlen=2000)


def recent_lock_holds(mode: str | None = None) -> list[LockHold]:
    """The last (up to 2000) lock holds of this process, oldest first; ``mode`` filters."""
    return [h for h in _HOLDS if mode is None or h.mode == mode]


def resolve_db(db: str | os.PathLike | None = None) -> Path:
    """The database path: ``db`` if given, else the configuration's ``db`` (``EMOTIVOICE_DB``,
    ``emotivoice.toml``, default ``./emotivoice.duckdb``), made absolute."""
    if db is None or str(db) == "":
        from pipeline.config import load_config

        db = load_config().db
    if str(db) == ":memory:":
        raise ValueError("the warehouse needs a database file, not ':memory:'")
    return Path(os.path.abspath(Path(db).expanduser()))


# ----------------------------------------------------------------------------- waiting writers
_PATIENCE = threading.local()


@contextlib.contextmanager
def patient_writes(notify: Callable[[str], None] | None = None, *,
                   every_s: float | None = None) -> Iterator[None]:
    """Writes of this thread inside the block never give up on readers.

    ``write_connection`` calls without an explicit ``wait_s`` wait for the readers' lock as long as
    it takes instead of ``WRITE_WAIT_S``; while one waits, ``notify`` gets a one-line message (who
    holds the database, how long it has waited) after ``every_s`` seconds (default
    ``WAIT_NOTICE_S``) and again every ``every_s`` seconds. Used by the ingestion flow, whose
    results are staged on disk while it waits.
    """
    previous = getattr(_PATIENCE, "value", None)
    _PATIENCE.value = (notify, WAIT_NOTICE_S if every_s is None else every_s)
    try:
        yield
    finally:
        _PATIENCE.value = previous


class _WaitNotice:
    """Called on every poll of a waiting writer; says every ``every_s`` seconds that it still waits."""

    def __init__(self, path: Path, notify: Callable[[str], None] | None, every_s: float, limit_s: float):
        self.path, self.notify, self.every_s, self.limit_s = path, notify, every_s, limit_s
        self.t0 = time.monotonic()
        self.next_at = self.t0 + every_s
        self.notices = 0

    def __call__(self, holder: str = "readers") -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.every_s
        self.notices += 1
        until = "as long as it takes" if math.isinf(self.limit_s) else f"gives up after {self.limit_s:g} s"
        message = (f"waiting for {holder} to let go of database {self.path} "
                   f"({now - self.t0:.0f} s so far; {until})")
        if self.notify is None:
            logger.warning("%s", message)
            return
        try:
            self.notify(message)
        except Exception:  # noqa: BLE001 - a reporting callback must not break the write
            logger.warning("%s", message)


# ----------------------------------------------------------------------------- the gate
#: Longest sleep between two tries of a sidecar lock (a flock attempt is one cheap system call).
_GATE_POLL_MAX_S = 0.005
#: Longest sleep between two tries of DuckDB's own lock (held by another program).
_OPEN_POLL_MAX_S = 0.05
#: How long a writer lets readers that are already waiting go first (they queue behind each write).
_WRITER_YIELD_S = 0.05


def _sleep_backoff(delay: float, deadline: float, cap: float) -> float:
    time.sleep(max(0.0, min(delay * random.uniform(0.5, 1.0), deadline - time.monotonic())))
    return min(delay * 2.0, cap)


class _Gate:
    """A readers-writer lock over sidecar files, across processes and threads.

    * ``<db>.rwlock``: readers hold it shared while they read, a writer exclusive while it writes.
    * ``<db>.turnstile``: a writer closes it before waiting for the readers to finish, so readers
      arriving later queue behind the writer (a stream of readers cannot starve it).
    * ``<db>.waiting``: readers hold it shared while they queue; a writer that finds readers queued
      lets them in first (up to ``_WRITER_YIELD_S``), so back-to-back writes cannot starve readers.

    ``flock`` locks belong to an open file description, so every acquisition opens its own
    descriptors: two threads of one process exclude each other exactly like two processes.
    """

    def __init__(self, db: Path):
        self.db = db
        self._rw = db.with_name(db.name + ".rwlock")
        self._turnstile = db.with_name(db.name + ".turnstile")
        self._waiting = db.with_name(db.name + ".waiting")

    @staticmethod
    def _open(path: Path) -> int | None:
        if fcntl is None:
            return None
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
            try:
                return os.open(path, flags, 0o666)
            except OSError:
                continue
        logger.debug("cannot open lock file %s; relying on DuckDB's lock and retries", path)
        return None

    def _acquire(self, fd: int | None, op: int, deadline: float, what: str,
                 tick: Callable[..., None] | None = None) -> None:
        if fd is None:
            return
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if tick is not None:
                tick("readers (another EmotiVoice process or thread)")
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"database {self.db} is busy: another EmotiVoice process kept it {what} "
                    f"longer than the wait budget")
            delay = _sleep_backoff(delay, deadline, _GATE_POLL_MAX_S)

    def _yield_to_waiting_readers(self) -> None:
        fd = self._open(self._waiting)
        if fd is None:
            return
        try:
            until = time.monotonic() + _WRITER_YIELD_S
            while time.monotonic() < until:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody queued: go
                    return
                except BlockingIOError:
                    time.sleep(0.001)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def exclusive(self, deadline: float, tick: Callable[..., None] | None = None) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        self._yield_to_waiting_readers()
        turn, rw = self._open(self._turnstile), self._open(self._rw)
        try:
            # Close the turnstile first: readers arriving from now on wait behind this writer.
            self._acquire(turn, fcntl.LOCK_EX, deadline, "locked", tick)
            self._acquire(rw, fcntl.LOCK_EX, deadline, "open for reading", tick)
            yield
        finally:
            for fd in (rw, turn):
                if fd is not None:
                    os.close(fd)  # releases the flock

    @contextlib.contextmanager
    def shared(self, deadline: float) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        wait, turn, rw = self._open(self._waiting), self._open(self._turnstile), self._open(self._rw)
        try:
            self._acquire(wait, fcntl.LOCK_SH, deadline, "locked")
            self._acquire(turn, fcntl.LOCK_SH, deadline, "open for writing")
            self._acquire(rw, fcntl.LOCK_SH, deadline, "open for writing")
            for fd in (turn, wait):  # in: no longer queued
                if fd is not None:
                    os.close(fd)
            turn = wait = None
            yield
        finally:
            for fd in (rw, turn, wait):
                if fd is not None:
                    os.close(fd)


# ----------------------------------------------------------------------------- DuckDB opens
def _is_lock_conflict(exc: BaseException) -> bool:
    msg = str(exc)
    return any(m in msg for m in _LOCK_MESSAGES)


def _connect(path: Path, *, read_only: bool, deadline: float,
             tick: Callable[..., None] | None = None) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying DuckDB lock conflicts (other programs) until ``deadline``."""
    delay = 0.005
    while True:
        try:
            config = dict(_READ_CONFIG if read_only else _WRITE_CONFIG)
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.Error as exc:
            if not _is_lock_conflict(exc):
                raise NotADatabaseError(f"cannot open database {path}: {one_line(exc)}") from exc
            if tick is not None:
                tick("another program (it holds DuckDB's lock)")
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"database {path} is busy: {exc}. Another program holds it; note that the duckdb "
                    f"CLI holds a file read-write unless started with -readonly") from exc
            delay = max(_sleep_backoff(delay, deadline, _OPEN_POLL_MAX_S), 0.005)


def _record(mode: str, path: Path, t_ask: float, t_got: float) -> None:
    hold = LockHold(mode, str(path), t_got - t_ask, time.monotonic() - t_got)
    _HOLDS.append(hold)
    if hold.wait_s > 1.0:
        logger.info("%s of %s waited %.1f s for the lock", mode, path, hold.wait_s)


@contextlib.contextmanager
def write_connection(db: str | os.PathLike | None = None, *,
                     wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to an up-to-date database, held exclusively; closed on exit.

    Creates the file (and its folder) when missing and applies pending schema migrations.
    Keep the body short: every reader waits while it runs. A writer that waits says so every
    ``WAIT_NOTICE_S`` seconds (log warning); inside ``patient_writes()`` it waits without limit.

    Raises:
        WarehouseBusyError: still locked after ``wait_s`` (default ``WRITE_WAIT_S``; unlimited inside
            ``patient_writes()``) seconds.
        SchemaVersionError: the file is newer than this code or not an EmotiVoice database.
    """
    from warehouse import schema

    path = resolve_db(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    t_ask = time.monotonic()
    patience = getattr(_PATIENCE, "value", None)
    notify, every_s = patience if patience is not None else (None, WAIT_NOTICE_S)
    if wait_s is None:
        wait_s = math.inf if patience is not None else WRITE_WAIT_S
    deadline = t_ask + wait_s
    tick = _WaitNotice(path, notify, every_s, wait_s)
    with _Gate(path).exclusive(deadline, tick):
        con = _connect(path, read_only=False, deadline=deadline, tick=tick)
        t_got = time.monotonic()
        try:
            schema.migrate(con, str(path))
            yield con
        finally:
            con.close()
            _record("write", path, t_ask, t_got)


#: path -> (file identity, version) of files whose version was read since they last changed.
_VERSION_SEEN: dict[str, tuple[tuple[int, int, int], int]] = {}


def _checked_version(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """The schema version, re-read only when the file changed since the last check (saves a catalog
    query per read; migrations always change the file)."""
    from warehouse import schema

    try:
        st = os.stat(path)
        ident = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        ident = None
    seen = _VERSION_SEEN.get(str(path))
    if ident is not None and seen is not None and seen[0] == ident:
        return seen[1]
    version = schema.read_version(con, str(path))
    if ident is not None:
        _VERSION_SEEN[str(path)] = (ident, version)
    return version


@contextlib.contextmanager
def read_connection(db: str | os.PathLike | None = None, *,
                    wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A sandboxed read-only connection (no file/URL access, settings locked); closed on exit.

    A missing file is created empty and an older schema is upgraded first (briefly as a writer).

    Raises:
        WarehouseBusyError: a writer or another program kept the file past ``wait_s`` seconds.
        SchemaVersionError: the file is newer than this code or not an EmotiVoice database.
    """
    from warehouse import schema

    path = resolve_db(db)
    budget = READ_WAIT_S if wait_s is None else wait_s
    if not path.exists():
        with write_connection(path, wait_s=budget):
            pass
    for _ in range(3):
        t_ask = time.monotonic()
        deadline = t_ask + budget
        with _Gate(path).shared(deadline):
            con = _connect(path, read_only=True, deadline=deadline)
            t_got = time.monotonic()
            try:
                version = _checked_version(con, path)
                if version == schema.SCHEMA_VERSION:
                    yield con
                    return
            finally:
                con.close()
                _record("read", path, t_ask, t_got)
        # An older file: upgrade it in place (as a writer, outside the shared gate), then read.
        with write_connection(path, wait_s=budget):
            pass
    raise WarehouseError(f"database {path}: schema upgrade did not take effect")  # pragma: no cover


def ensure_database(db: str | os.PathLike | None = None) -> Path:
    """Create the database (or upgrade its schema) now; returns its absolute path."""
    path = resolve_db(db)
    with write_connection(path):
        pass
    return path
