"""Signals and crashes: `emotivoice ingest` stops cleanly on SIGTERM/SIGINT, leaves no process behind
after SIGKILL, and runs of dead processes do not stay 'running'.

The end-to-end tests run the command as a user does (a fresh ``python -m flows.cli ingest`` with no
``PREFECT_API_URL``, so it starts its own Prefect server) on a folder of real clips with a tiny model,
and interrupt it once the first file is stored.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
N_CLIPS = 16


def _rows(db: Path, sql: str, params=None):
    from warehouse import read_df

    return read_df(sql, params, db=str(db))


@pytest.fixture(scope="session")
def prefect_home_template(tmp_path_factory) -> Path:
    """A Prefect home whose database is already migrated (a server started and stopped once), so that
    each test's first server start costs what a user's second one does."""
    from flows.server import start_server, stop_server
    from pipeline.config import Config

    data = tmp_path_factory.mktemp("prefect-template")
    proc, _ = start_server(Config().replace(data_dir=str(data)), kind="api")
    stop_server(proc)
    return data / "prefect"


@pytest.fixture
def ingesting(request, tmp_path, tiny_hubert_dir, ravdess_dir, prefect_home_template):
    """Start `emotivoice ingest` on N_CLIPS clips (extra environment: the fixture's parameter); yields
    (process, db, its descendants once the first file is stored, its log). Whatever a test leaves
    running is SIGKILLed at the end."""
    home = tmp_path / "data" / "prefect"
    home.mkdir(parents=True)
    for f in prefect_home_template.glob("prefect.db*"):
        shutil.copy(f, home / f.name)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for clip in sorted(ravdess_dir.rglob("*.flac"))[:N_CLIPS]:
        shutil.copy(clip, corpus / f"{clip.parent.name}-{clip.name}")
    db = tmp_path / "ev.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", EMOTIVOICE_DATA_DIR=str(tmp_path / "data"),
               EMOTIVOICE_DB=str(db), EMOTIVOICE_EMOTION_MODEL=str(tiny_hubert_dir),
               EMOTIVOICE_WHISPER_MODEL="none", EMOTIVOICE_EXPLAIN="fast", DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
               EMOTIVOICE_WRITE_BATCH_FILES="1")  # each file stored as it comes: the signal lands mid-run
    env.update(getattr(request, "param", {}))
    log_path = tmp_path / "ingest.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "ingest", str(corpus)], env=env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    me = psutil.Process(proc.pid)
    descendants: list[psutil.Process] = []
    try:
        deadline = time.time() + 300
        ok = 0
        while time.time() < deadline and proc.poll() is None and ok < 1:
            time.sleep(0.3)
            if db.exists():
                try:
                    ok = int(_rows(db, "SELECT count(*) FROM files WHERE status = 'ok'").iloc[0, 0])
                except Exception:  # schema being created or the writer holds the file: ask again
                    continue
        assert proc.poll() is None and ok >= 1, "the run ended before it could be interrupted:\n" + \
            log_path.read_text()[-3000:]
        descendants = me.children(recursive=True)
        assert any("prefect" in " ".join(p.cmdline()) for p in descendants), \
            f"no Prefect server among the command's processes: {[p.cmdline() for p in descendants]}"
        yield proc, db, descendants, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for p in descendants:  # a server that wrongly outlived the command: not left to the next test
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        log.close()


def _survivors(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes of ``procs`` still alive (not zombies) after ``timeout`` seconds."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    out = []
    for p in alive:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, ingesting, forced", [
    (signal.SIGTERM, 143, {}, False),  # the default grace: the tiny model's file in hand ends in time
    (signal.SIGINT, 130, {"EMOTIVOICE_STOP_GRACE_S": "0"}, True),  # no grace: the forced stop at once
], ids=["SIGTERM-clean", "SIGINT-forced"], indirect=["ingesting"])
def test_a_signal_stops_the_ingestion_marks_its_run_interrupted_and_stops_its_prefect_server(
        ingesting, sig, code, forced):
    proc, db, descendants, log_path = ingesting
    t0 = time.monotonic()
    proc.send_signal(sig)  # to the command only, as `kill PID` or a service manager does
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 20 s after {sig.name}:\n" + log_path.read_text()[-3000:])
    took = time.monotonic() - t0
    out = log_path.read_text()
    assert proc.returncode == code, out[-3000:]
    assert f"{sig.name} received; stopping" in out
    assert ("ending without waiting for the file in hand" in out) == forced, out[-3000:]
    left = _survivors(descendants, timeout=2)
    assert not left, f"still running {took:.1f} s after {sig.name}: {[p.cmdline() for p in left]}"
    runs = _rows(db, "SELECT status, finished_at, pid FROM runs")
    assert runs.status.tolist() == ["interrupted"], runs
    assert runs.pid.tolist() == [proc.pid] and runs.finished_at.notna().all()
    ok, total = _rows(db, "SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FROM files").iloc[0]
    assert 1 <= ok == total < N_CLIPS  # stopped mid-run, and no half-written file


@pytest.mark.slow
def test_after_sigkill_no_process_of_the_run_survives_and_the_next_start_marks_it_interrupted(ingesting):
    proc, db, descendants, log_path = ingesting
    proc.kill()  # SIGKILL to the command alone: nothing in it runs, only the kernel can stop the server
    proc.wait(timeout=10)
    left = _survivors(descendants, timeout=15)
    assert not left, f"outlived the SIGKILLed command: {[p.cmdline() for p in left]}"
    assert _rows(db, "SELECT status FROM runs").status.tolist() == ["running"]  # nobody could close it

    from warehouse import Warehouse

    new = Warehouse(str(db)).start_run("{}")
    runs = _rows(db, "SELECT run_id, status, pid FROM runs ORDER BY run_id")
    assert runs.status.tolist() == ["interrupted", "running"], runs
    assert runs.pid.tolist() == [proc.pid, os.getpid()] and runs.run_id.iloc[1] == new


# ----------------------------------------------------------------------------- stale runs (no Prefect)
def _run_in_child(db: Path, then: str) -> subprocess.Popen:
    """A separate process that starts a run in ``db``, prints its run_id, then does ``then``."""
    code = ("import os, signal, sys, time\nfrom warehouse import Warehouse\n"
            f"print(Warehouse({str(db)!r}).start_run('{{}}'), flush=True)\n{then}\n")
    return subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, text=True)


def test_runs_left_running_by_dead_processes_are_marked_interrupted_at_the_next_start(tmp_path):
    from warehouse import Warehouse

    db = tmp_path / "ev.duckdb"
    alive = _run_in_child(db, "time.sleep(120)")
    alive_run = int(alive.stdout.readline())
    try:
        crashed = _run_in_child(db, "os.kill(os.getpid(), signal.SIGSEGV)")
        crashed_run = int(crashed.stdout.readline())
        crashed.wait(timeout=60)
        assert crashed.returncode == -signal.SIGSEGV
        status = dict(_rows(db, "SELECT run_id, status FROM runs").itertuples(index=False))
        assert status == {crashed_run: "running", alive_run: "running"}

        store = Warehouse(str(db))
        mine = store.start_run("{}")
        status = dict(_rows(db, "SELECT run_id, status FROM runs").itertuples(index=False))
        # the crashed process's run is closed; a live process's run and our own are left alone
        assert status == {crashed_run: "interrupted", alive_run: "running", mine: "running"}
        assert _rows(db, "SELECT finished_at FROM runs WHERE run_id = ?", [crashed_run]).iloc[0, 0] is not None
    finally:
        alive.kill()
        alive.wait(timeout=30)


def test_a_pid_given_to_a_newer_process_does_not_keep_an_old_run_running(tmp_path):
    from warehouse import Warehouse, connection

    db = tmp_path / "ev.duckdb"
    store = Warehouse(str(db))
    newer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        old = store.start_run("{}")
        # as if a process that died long ago had run it, and its pid now belonged to `newer`
        with connection.write_connection(str(db)) as con:
            con.execute("UPDATE runs SET pid = ?, started_at = started_at - INTERVAL 1 HOUR WHERE run_id = ?",
                        [newer.pid, old])
        store.start_run("{}")
        assert _rows(db, "SELECT status FROM runs WHERE run_id = ?", [old]).iloc[0, 0] == "interrupted"
    finally:
        newer.kill()
        newer.wait(timeout=30)
