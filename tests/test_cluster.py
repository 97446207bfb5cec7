"""Ingestion on a real Dask cluster from the CLI, as an operator runs it: a ``dask scheduler`` and two
``dask worker --no-nanny`` processes, each worker in its own working directory with its own data dir
(nothing shared with the flow but the corpus path), and one worker killed with SIGKILL mid-run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser_util import free_port

ROOT = Path(__file__).resolve().parents[1]
DASK = Path(sys.executable).with_name("dask")

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EMOTIVOICE_", "PREFECT_API_URL", "PREFECT_HOME"))}
    # Dask at INFO: the fixtures wait for the scheduler's and workers' own lines ("Scheduler at",
    # "Registered to"); `emotivoice` turns them down to WARNING in its process, which in-process CLI tests share.
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DO_NOT_TRACK="1", PYTHONPATH=str(ROOT),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DASK_LOGGING__DISTRIBUTED="info", **extra)
    return env


def _wait_for(predicate, timeout_s: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        for proc, log in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{what}: a process exited ({proc.returncode}): {log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def cluster(tmp_path):
    """(scheduler address, [(worker process, its log, its folder)]) of a real scheduler and two workers."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], cwd: Path, log: Path, env: dict) -> subprocess.Popen:
        cwd.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        procs.append(proc)
        return proc

    sched_log = tmp_path / "scheduler.log"
    sched = start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                  tmp_path / "scheduler", sched_log, _env())
    _wait_for(lambda: "Scheduler at" in sched_log.read_text(), 60, "the scheduler", [(sched, sched_log)])
    workers = []
    for name in ("worker-a", "worker-b"):
        home = tmp_path / name
        log = tmp_path / f"{name}.log"
        proc = start([str(DASK), "worker", address, "--no-nanny", "--nthreads", "1", "--no-dashboard",
                      "--name", name], home, log, _env(EMOTIVOICE_DATA_DIR="data"))  # relative, in its own cwd
        workers.append((proc, log, home))
    for proc, log, _ in workers:
        _wait_for(lambda log=log: "Registered to" in log.read_text(), 60, "a worker", [(proc, log)])
    try:
        yield address, workers
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def test_ingest_on_a_cluster_survives_a_killed_worker(cluster, tmp_path, ravdess_dir, tiny_hubert_dir):
    address, workers = cluster
    corpus = tmp_path / "corpus"
    clips = sorted(ravdess_dir.glob("Actor_0[1-2]/*.flac"))[:16]
    assert len(clips) >= 12
    for clip in clips:
        (corpus / clip.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, corpus / clip.parent.name / clip.name)
    flow_home = tmp_path / "flow"
    flow_home.mkdir()
    db = flow_home / "ev.duckdb"
    # The corpus is given relative to the flow's working directory: it is resolved before submission.
    cmd = [sys.executable, "-m", "flows.cli", "ingest", os.path.relpath(corpus, flow_home), "--db", str(db),
           "--cluster", address, "--emotion-model", str(tiny_hubert_dir), "--whisper-model", "none",
           "--explain", "fast", "--device", "cpu"]
    flow_log = tmp_path / "flow.log"
    with open(flow_log, "wb") as out:
        flow = subprocess.Popen(cmd, cwd=flow_home, env=_env(EMOTIVOICE_DATA_DIR="flow-data"), stdout=out,
                                stderr=subprocess.STDOUT)
    victim, victim_log, _ = workers[0]
    try:
        # Kill worker A once it has finished a file (so it holds results the flow already has, and work in
        # flight): only its in-flight files may run again, on worker B.
        _wait_for(lambda: " done " in victim_log.read_text() or flow.poll() is not None, 300,
                  "worker A to finish a file", [(victim, victim_log)])
        assert flow.poll() is None, "the run ended before a worker could be killed: " + flow_log.read_text()[-3000:]
        os.kill(victim.pid, signal.SIGKILL)
        flow.wait(600)
    finally:
        if flow.poll() is None:
            flow.kill()
    out = flow_log.read_text()
    assert flow.returncode == 0, out[-4000:]
    assert f"files: {len(clips)} ok, 0 failed" in out, out[-4000:]

    from warehouse import read_df

    files = read_df("SELECT count(*) AS n, count(DISTINCT path) AS paths, count(DISTINCT sha256) AS shas "
                    "FROM files WHERE status = 'ok'", db=str(db))
    assert files.values.tolist() == [[len(clips), len(clips), len(clips)]]
    assert set(read_df("SELECT path FROM files", db=str(db))["path"]) == {str(c.resolve()) for c in
                                                                        corpus.rglob("*.flac")}
    dup = read_df("SELECT count(*) - count(DISTINCT (file_id, idx)) AS d FROM chunks", db=str(db))
    assert int(dup["d"][0]) == 0
    assert int(read_df("SELECT count(*) AS n FROM chunks", db=str(db))["n"][0]) >= len(clips)
    # Nothing staged anywhere: not in the flow's data dir, not in any worker's folder.
    leftovers = [p for p in tmp_path.rglob("*") if "staging" in p.parts and p.is_file()]
    assert not leftovers, leftovers
    # Each worker said, on its stderr, which files it started and finished.
    survivor_log = workers[1][1].read_text()
    assert "start " in survivor_log and " done " in survivor_log and str(corpus.resolve()) in survivor_log
    # Results the flow had received were not computed again after the kill: only what worker A had in
    # flight (or had finished a moment before the flow fetched it) ran twice.
    finished = victim_log.read_text().count(" done ") + survivor_log.count(" done ")
    assert len(clips) <= finished <= len(clips) + 2, (finished, len(clips))
    # A rerun on the surviving worker finds everything unchanged.
    again = subprocess.run(cmd, cwd=flow_home, env=_env(EMOTIVOICE_DATA_DIR="flow-data"), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"0 ok, 0 failed, 0 skipped, {len(clips)} unchanged" in again.stdout, again.stdout


def test_an_unreachable_scheduler_is_one_line(tmp_path, ravdess_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(next(ravdess_dir.rglob("*.flac")), corpus)
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(corpus), "--db", str(tmp_path / "x.duckdb"),
                          "--cluster", f"tcp://127.0.0.1:{port}"], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    bad = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(corpus), "--db", str(tmp_path / "x.duckdb"),
                          "--cluster", "somewhere"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "expected 'local:N' or a scheduler address" in bad.stderr, bad.stderr[-2000:]


def test_a_worker_that_cannot_read_a_file_fails_that_file_naming_itself(tmp_path, tiny_hubert_dir, monkeypatch,
                                                                         capsys):
    """On a worker (``_dask_worker`` stands in for Dask's ``get_worker``), an unreadable file comes back as
    one failed outcome whose reason names the worker; the worker's log names the file."""
    import logging
    from types import SimpleNamespace

    import flows.worker as worker
    from pipeline.config import Config

    monkeypatch.setattr(worker, "_dask_worker", lambda: SimpleNamespace(address="tcp://10.0.0.7:40001"))
    monkeypatch.setenv("EMOTIVOICE_DATA_DIR", str(tmp_path / "worker-data"))
    config = Config().replace(emotion_model=str(tiny_hubert_dir), whisper_model="none", explain="none",
                              data_dir=str(tmp_path / "flow-data"))
    for attr, value in (("handlers", []), ("propagate", True), ("level", logging.NOTSET)):
        monkeypatch.setattr(worker.worker_log, attr, value)  # the worker's stderr handler goes with the test
    missing = str(tmp_path / "gone" / "call-17.wav")
    out = worker.analyze_file_task.fn(missing, None, config.to_json())
    assert out["status"] == "failed" and out["error_type"] == "unreadable"
    assert "on worker tcp://10.0.0.7:40001" in out["error"] and "not found" in out["error"]
    err = capsys.readouterr().err
    assert f"INFO emotivoice worker: start {missing}" in err and f"failed {missing} (unreadable)" in err
    # the worker used its own data dir, not the flow's
    assert worker.task_config(config.to_json()).data_dir == str(tmp_path / "worker-data")


def test_workers_that_would_analyse_differently_stop_the_run_before_it_starts():
    """``_settings_from_workers`` asks every worker (``Client.run``); disagreement or a worker that cannot load
    its models is one line naming the workers."""
    import flows.ingest as ingest

    def answer(worker: str, emotion: str) -> dict:
        return {"key": f"k-{emotion}", "worker": worker,
                "models": {"emotion": emotion, "emotion_trained": True, "whisper": "base"}}

    class Client:
        def __init__(self, answers):
            self.answers = answers

        def wait_for_workers(self, n, timeout):
            pass

        def run(self, fn, *args, on_error):
            assert fn is ingest.worker_settings and on_error == "return"
            return self.answers

    class DaskTaskRunner:  # what the flow looks for; a stand-in for prefect_dask's
        def __init__(self, answers):
            self.client = Client(answers)

    same = {"tcp://a:1": answer("tcp://a:1", "whisper-head"), "tcp://b:1": answer("tcp://b:1", "whisper-head")}
    assert ingest._settings_from_workers(DaskTaskRunner(same), "{}")["key"] == "k-whisper-head"
    differ = {"tcp://a:1": answer("tcp://a:1", "whisper-head"), "tcp://b:1": answer("tcp://b:1", "compact")}
    with pytest.raises(ingest.ClusterError, match=r"different models.*tcp://a:1: emotion whisper-head.*"
                                                  r"tcp://b:1: emotion compact.*same weights on every worker"):
        ingest._settings_from_workers(DaskTaskRunner(differ), "{}")
    broken = {"tcp://a:1": answer("tcp://a:1", "compact"), "tcp://b:1": RuntimeError("weights\nmissing")}
    with pytest.raises(ingest.ClusterError, match=r"^worker tcp://b:1 cannot analyse: weights missing$"):
        ingest._settings_from_workers(DaskTaskRunner(broken), "{}")


def test_a_file_that_kills_every_worker_that_takes_it_is_failed_and_the_run_completes(
        tmp_path, ravdess_dir, tiny_hubert_dir):
    """Decoding in-process (no crash isolation) on a local:2 cluster, a file that segfaults its worker: Dask
    restarts the worker and tries again until its allowed failures are spent; then the file is one failed
    row with that reason, and every other file is stored."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    clips = sorted((ravdess_dir / "Actor_04").glob("*.flac"))[:4]
    for clip in clips[:3]:
        shutil.copy(clip, corpus / clip.name)
    shutil.copy(clips[3], corpus / "boom.flac")
    db = tmp_path / "ev.duckdb"
    env = _env(EMOTIVOICE_DATA_DIR=str(tmp_path / "data"), EMOTIVOICE_DECODE_ISOLATION="false",
               EMOTIVOICE_TEST_DECODE_FAULT="segv:boom", DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1")
    out = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(corpus), "--db", str(db),
                          "--cluster", "local:2", "--emotion-model", str(tiny_hubert_dir), "--whisper-model", "none",
                          "--explain", "none"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "files: 3 ok, 1 failed" in out.stdout and "completed" in out.stdout, out.stdout
    assert (f"failed: {corpus / 'boom.flac'}: crashed the analyser: it killed every Dask worker that took it"
            in out.stdout), out.stdout

    from warehouse import read_df

    rows = read_df("SELECT status, coalesce(error_type, '') AS kind, count(*) AS n FROM files GROUP BY ALL "
                   "ORDER BY 1", db=str(db))
    assert rows.values.tolist() == [["failed", "crashed", 1], ["ok", "", 3]]
