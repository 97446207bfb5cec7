"""A throwaway PostgreSQL for tests: Debian's ``postgresql`` binaries, a fresh cluster, gone afterwards.

The cluster listens on a free 127.0.0.1 port (password login, as a long-lived server would) and on a unix
socket in its own directory (trusted, for setting it up). PostgreSQL refuses to run as root, so under
root (CI) every server command runs as the ``postgres`` system user, in a directory that user owns.
"""

from __future__ import annotations

import glob
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

log = logging.getLogger(__name__)

#: What the cluster holds for the caller: a role owning a database of the same name.
DATABASE = "prefect"


def postgres_bindir() -> Path:
    """The directory of ``pg_ctl``, ``initdb``, ``postgres`` and ``psql``: PATH first, then the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH). Fails the test when there is none."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        pytest.fail("PostgreSQL's server binaries (pg_ctl, initdb) are missing (apt-get install postgresql)")
    return Path(candidates[-1]).parent


def _as_owner() -> list[str]:
    """The prefix that runs a command as the cluster's owner: ``postgres`` under root, else nobody."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(cmd: list[str], cwd: Path, timeout: float = 60) -> None:
    out = subprocess.run(_as_owner() + cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        log_tail = (cwd / "postgres.log").read_text()[-3000:] if (cwd / "postgres.log").exists() else ""
        pytest.fail(f"{' '.join(cmd)} exited with {out.returncode}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
                    f"\n{log_tail}")


def _cluster_dir() -> Path:
    """A fresh directory for the cluster, owned by the user it runs as. Not a pytest ``tmp_path``: under
    root that lies in a root-only directory, and a unix socket path must stay under 108 bytes."""
    base = Path(tempfile.mkdtemp(prefix="emotivoice-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    return base


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster with a database ``prefect`` owned by a password role ``prefect``.

    Yields its SQLAlchemy/asyncpg URL ``postgresql+asyncpg://prefect:<password>@127.0.0.1:<port>/prefect``;
    stops the cluster (``pg_ctl stop -m immediate``) and removes it on exit.
    """
    from flows.server import free_port

    bindir = postgres_bindir()
    base = _cluster_dir()
    data, port, password = base / "data", free_port(), secrets.token_hex(12)
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync",
              "--auth-local=trust", "--auth-host=scram-sha-256"], cwd=base)
        options = f"-p {port} -h 127.0.0.1 -k {base} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run([str(bindir / "pg_ctl"), "start", "-D", str(data), "-l", str(base / "postgres.log"), "-w", "-t", "60",
              "-o", options], cwd=base, timeout=90)
        _run([str(bindir / "psql"), "-h", str(base), "-p", str(port), "-U", "postgres", "-d", "postgres",
              "-v", "ON_ERROR_STOP=1", "-c", f"CREATE ROLE {DATABASE} LOGIN PASSWORD '{password}'",
              "-c", f"CREATE DATABASE {DATABASE} OWNER {DATABASE}"], cwd=base)
        log.info("throwaway PostgreSQL on 127.0.0.1:%d (%s)", port, data)
        yield f"postgresql+asyncpg://{DATABASE}:{password}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if (data / "postmaster.pid").exists():  # started, even if it never answered
            subprocess.run(_as_owner() + [str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate"],
                           cwd=base, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
