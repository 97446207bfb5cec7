"""Which process runs a run, and runs left 'running' by processes that no longer exist.

Every run records the host name and process id that started it (``runs.host``, ``runs.pid``). A run
whose process was killed (SIGKILL, a crash, a power cut) never reaches its ``finally`` clause and would
stay 'running' for ever; the next run started on the same host marks it ``interrupted``
(``Warehouse.start_run`` calls :func:`mark_stale_runs`). A pid that the system has since given to a
newer process does not keep a run alive: the process must have been created before the run started.
Runs of other hosts, and rows from before version 3 (no pid), are left as they are: nothing here can
tell whether their process is alive.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket

import duckdb

from warehouse.schema import utc_now

log = logging.getLogger(__name__)

#: A process created up to this many seconds after its run's start still counts as the run's own
#: (psutil derives creation times from the boot time, which /proc gives to the second).
CREATE_TIME_SLACK_S = 2.0


def this_process() -> tuple[str, int]:
    """(host name, pid) of the calling process, as ``runs.host``/``runs.pid`` store them."""
    return socket.gethostname(), os.getpid()


def process_alive(pid: int, started_at: _dt.datetime | None = None) -> bool:
    """True while process ``pid`` exists on this host, is not a zombie and (with ``started_at``, naive
    UTC) was created before that moment — i.e. it is plausibly the process that started the run."""
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists; another user's process
        return True
    if started_at is None:
        return True
    started = started_at.replace(tzinfo=_dt.timezone.utc).timestamp()
    return created <= started + CREATE_TIME_SLACK_S


def mark_stale_runs(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Mark this host's 'running' runs whose process is gone as ``interrupted``; returns their ids.

    Runs on a read-write connection inside the caller's transaction.
    """
    host, me = this_process()
    rows = con.execute("SELECT run_id, pid, started_at FROM runs WHERE status = 'running' AND host = ? "
                       "AND pid IS NOT NULL", [host]).fetchall()
    stale = [int(run_id) for run_id, pid, started in rows if pid != me and not process_alive(pid, started)]
    if stale:
        con.execute("UPDATE runs SET status = 'interrupted', finished_at = ? "
                    f"WHERE run_id IN ({', '.join('?' * len(stale))})", [utc_now(), *stale])
        for run_id, pid, _ in rows:
            if int(run_id) in stale:
                log.warning("run %d was left 'running' by process %d on %s, which no longer exists; "
                            "marked interrupted", run_id, pid, host)
    return stale


def mark_process_runs(con: duckdb.DuckDBPyConnection, status: str = "interrupted", *,
                      pid: int | None = None) -> list[int]:
    """Close every 'running' run of process ``pid`` (default: this one) on this host with ``status``."""
    host, me = this_process()
    rows = con.execute("UPDATE runs SET status = ?, finished_at = ? WHERE status = 'running' AND host = ? "
                       "AND pid = ? RETURNING run_id", [status, utc_now(), host, me if pid is None else pid]
                       ).fetchall()
    return [int(r[0]) for r in rows]
