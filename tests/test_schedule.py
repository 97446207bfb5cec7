"""`emotivoice schedule`: a served Prefect deployment whose cron runs ingest the folder; bad options say why."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", EMOTIVOICE_DATA_DIR=str(tmp_path / "data"),
               PREFECT_HOME=str(tmp_path / "prefect"), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    return env


def _cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


def test_a_missing_folder_or_a_bad_cron_expression_is_refused_with_the_reason(tmp_path):
    out = _cli(tmp_path, "schedule", str(tmp_path / "nowhere"), "--cron", "*/30 * * * *")
    assert out.returncode == 2
    assert "nowhere" in out.stderr and "no such folder" in out.stderr

    out = _cli(tmp_path, "schedule", str(tmp_path), "--cron", "every day at noon")
    assert out.returncode == 2
    assert "--cron 'every day at noon' is not a valid cron expression" in out.stderr


@pytest.mark.slow
def test_the_served_deployment_ingests_the_folder_on_its_schedule(tmp_path, tiny_hubert_dir, ravdess_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for clip in sorted((ravdess_dir / "Actor_05").glob("*.flac"))[:2]:
        shutil.copy(clip, corpus / clip.name)
    db = tmp_path / "ev.duckdb"
    log = open(tmp_path / "schedule.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "schedule", str(corpus), "--cron", "* * * * *", "--db", str(db),
         "--emotion-model", str(tiny_hubert_dir), "--whisper-model", "none"],
        env=_env(tmp_path), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    from warehouse import read_df

    ok = 0
    deployments = None
    try:
        deadline = time.time() + 300  # the first run is due at the next minute boundary
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "schedule.log").read_text()[-3000:]
            if db.exists():
                try:
                    ok = int(read_df("SELECT count(*) FROM files WHERE status = 'ok'", db=str(db)).iloc[0, 0])
                    done = int(read_df("SELECT count(*) FROM runs WHERE status = 'completed' AND n_failed = 0",
                                       db=str(db)).iloc[0, 0])
                except Exception:  # the writer holds the file or the schema is being created: ask again
                    ok = done = 0
                if ok == 2 and done >= 1:
                    break
            time.sleep(3)
        ui = re.search(r"UI at (http://127\.0\.0\.1:\d+)", (tmp_path / "schedule.log").read_text())
        assert ui, "the command did not say where its Prefect server is"
        req = urllib.request.Request(ui.group(1) + "/api/deployments/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            deployments = json.loads(resp.read())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the harshest end: no handler runs in the command
        proc.wait(timeout=30)
        log.close()
    # ... and its Prefect server still goes with it (the kernel's parent-death signal)
    gone = False
    for _ in range(60):
        try:
            with urllib.request.urlopen(ui.group(1) + "/api/health", timeout=2):
                time.sleep(0.5)
        except OSError:
            gone = True
            break
    assert gone, "the schedule's Prefect server outlived the command"
    assert ok == 2, (tmp_path / "schedule.log").read_text()[-3000:]
    # one deployment, on the cron given, never two runs at once (a run due during another is cancelled)
    assert len(deployments) == 1, deployments
    dep = deployments[0]
    assert [sc["schedule"]["cron"] for sc in dep["schedules"]] == ["* * * * *"]
    assert dep["global_concurrency_limit"]["limit"] == 1, dep
    assert dep["concurrency_options"]["collision_strategy"] == "CANCEL_NEW", dep


def test_a_scheduled_runs_process_dies_with_the_schedule_command(tmp_path):
    """A flow-run process of `emotivoice schedule` (its child, told so by the environment) asks for the
    parent-death signal; SIGKILL of the command then ends it too, without its cooperation."""
    import psutil

    child = ("import sys, time\nfrom flows.schedule import die_with_scheduler\n"
             "print('armed', die_with_scheduler(), flush=True)\ntime.sleep(120)\n")
    command = ("import os, subprocess, sys, time\n"
               "env = dict(os.environ, EMOTIVOICE_DIE_WITH=str(os.getpid()))\n"
               f"p = subprocess.Popen([sys.executable, '-c', {child!r}], env=env)\n"
               "print('child', p.pid, flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", command], env=_env(tmp_path), stdout=subprocess.PIPE, text=True)
    run_pid = None
    try:
        first, second = proc.stdout.readline().split(), proc.stdout.readline().split()
        lines = dict((first, second))
        run_pid = int(lines["child"])
        assert lines["armed"] == "True", lines
        run = psutil.Process(run_pid)
        proc.kill()
        proc.wait(timeout=10)
        try:
            run.wait(timeout=10)
        except psutil.TimeoutExpired:
            pytest.fail("the scheduled run's process outlived the SIGKILLed command")
    finally:
        if proc.poll() is None:
            proc.kill()
        if run_pid and psutil.pid_exists(run_pid):
            os.kill(run_pid, signal.SIGKILL)


def test_a_run_started_outside_a_schedule_asks_for_no_parent_death_signal(monkeypatch):
    from flows.schedule import DIE_WITH_ENV, die_with_scheduler

    monkeypatch.delenv(DIE_WITH_ENV, raising=False)
    assert die_with_scheduler() is False
    monkeypatch.setenv(DIE_WITH_ENV, str(os.getppid() + 1))  # some other process, not our parent
    assert die_with_scheduler() is False
