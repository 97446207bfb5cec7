"""Prefect on PostgreSQL, as the README sets it up: ``PREFECT_API_DATABASE_CONNECTION_URL`` for the server
that ``emotivoice schedule`` starts, an ingestion run against it, its records in PostgreSQL, not SQLite.

A throwaway cluster from Debian's ``postgresql`` binaries (tests/postgres_util.py).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.config import Config
from tests.postgres_util import throwaway_postgres

pytestmark = pytest.mark.slow

CLIPS = 3


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


async def _prefect_records(url: str) -> tuple[list[str], int]:
    """The flow runs' state types and the number of completed task runs in Prefect's PostgreSQL database."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        flows = [r[0] for r in await conn.fetch("SELECT state_type::text FROM flow_run")]
        tasks = await conn.fetchval("SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'")
        return flows, tasks
    finally:
        await conn.close()


def _wait_for_task_runs(url: str, at_least: int, timeout_s: float = 30) -> tuple[list[str], int]:
    """Task runs reach the database through the server's event pipeline, a moment after the flow ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        flows, tasks = asyncio.run(_prefect_records(url))
        if tasks >= at_least or time.monotonic() > deadline:
            return flows, tasks
        time.sleep(0.5)


def test_an_ingestion_against_a_prefect_server_on_postgresql_is_recorded_there_and_not_in_sqlite(
        postgres_url, tmp_path, monkeypatch, tiny_hubert_dir, ravdess_dir):
    import os
    import subprocess
    import sys

    from flows.server import start_server, stop_server
    from warehouse import read_df

    root = tmp_path / "corpus"
    root.mkdir()
    for clip in sorted((ravdess_dir / "Actor_11").glob("*.flac"))[:CLIPS]:
        shutil.copy(clip, root / clip.name)
    db = tmp_path / "ev.duckdb"
    config = Config().replace(data_dir=str(tmp_path / "server-data"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", postgres_url)

    # The long-lived server of the README (`prefect server start --host 127.0.0.1`, UI and scheduler on),
    # then a client in a fresh process that only has PREFECT_API_URL.
    proc, api_url = start_server(config, kind="full")
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("EMOTIVOICE_", "PREFECT_API_DATABASE", "PREFECT_HOME"))}
        env.update(PREFECT_API_URL=api_url, EMOTIVOICE_DATA_DIR=str(tmp_path / "client-data"),
                   PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        out = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(root), "--db", str(db),
                              "--emotion-model", str(tiny_hubert_dir), "--whisper-model", "none",
                              "--explain", "fast"], env=env, capture_output=True, text=True, timeout=300)
        flows, tasks = _wait_for_task_runs(postgres_url, at_least=CLIPS)
    finally:
        stop_server(proc)

    assert api_url.startswith("http://127.0.0.1:")
    assert out.returncode == 0 and f"files: {CLIPS} ok, 0 failed" in out.stdout, out.stdout + out.stderr[-3000:]
    assert not (tmp_path / "client-data" / "prefect" / "server.log").exists()  # the client started no server
    ok = read_df("SELECT count(DISTINCT path) FROM files WHERE status = 'ok'", db=str(db))
    assert ok.iloc[0, 0] == CLIPS
    assert flows == ["COMPLETED"]
    assert tasks >= CLIPS
    home = Path(config.data_path).resolve() / "prefect"
    assert (home / "server.log").exists()  # the server ran with this home ...
    assert not list(home.glob("*.db")), sorted(p.name for p in home.iterdir())  # ... and kept no SQLite there
