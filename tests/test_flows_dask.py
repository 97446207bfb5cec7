"""Scale-out: the same ingestion flow with its per-file tasks on a Dask LocalCluster of 2 workers.

Runs against a real `prefect server start --host 127.0.0.1`, started and stopped by PID (prefect-dask
with Prefect's ephemeral server left orphan servers behind).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import Config

pytestmark = pytest.mark.slow


@pytest.fixture
def prefect_server(tmp_path, monkeypatch):
    """A real Prefect server on 127.0.0.1, the one ``emotivoice schedule`` starts, stopped afterwards."""
    from flows.schedule import scheduling_server

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    config = Config().replace(data_dir=str(tmp_path / "server-data"))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(config.data_path.resolve() / "prefect")
    with scheduling_server(config) as url:
        yield url, env


def test_the_flow_runs_its_file_tasks_on_a_dask_cluster_and_one_writer_stores_them(
        prefect_server, tmp_path, tiny_hubert_dir, ravdess_dir):
    url, env = prefect_server
    root = tmp_path / "corpus"
    root.mkdir()
    for clip in sorted((ravdess_dir / "Actor_11").glob("*.flac"))[:4]:
        shutil.copy(clip, root / clip.name)
    db = tmp_path / "ev.duckdb"
    script = f"""
import os
from dask.distributed import LocalCluster
from prefect_dask import DaskTaskRunner
from pipeline.config import Config
from flows.ingest import ingest_folder
if __name__ == "__main__":
    cfg = Config().replace(emotion_model={str(tiny_hubert_dir)!r}, whisper_model="none", explain="fast",
                           db={str(db)!r}, data_dir={str(tmp_path / 'data')!r})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        s = ingest_folder({str(root)!r}, options=cfg, task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    print("SUMMARY", s.status, s.files_ok, s.files_failed)
"""
    run_env = dict(env, PREFECT_API_URL=url, PYTHONPATH=str(Path(__file__).resolve().parents[1]),
                   HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], env=run_env, capture_output=True, text=True, timeout=500,
                         cwd=tmp_path)
    assert "SUMMARY completed 4 0" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
    from warehouse import read_df

    files = read_df("SELECT count(*) AS n, count(DISTINCT path) AS paths FROM files WHERE status = 'ok'", db=str(db))
    assert files.values.tolist() == [[4, 4]]
    chunks = read_df("SELECT count(*) FROM chunks", db=str(db))
    assert chunks.iloc[0, 0] >= 4
