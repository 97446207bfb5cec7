"""Prefect ingestion: good, bad and nested files; incremental re-runs; kill-and-resume; the CLI summary."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect backend for the whole session (~10 s to start)."""
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def flow_config(tmp_path, tiny_hubert_dir) -> Config:
    return Config().replace(
        emotion_model=str(tiny_hubert_dir), whisper_model="none", explain="fast",
        db=str(tmp_path / "ev.duckdb"), data_dir=str(tmp_path / "data"),
    )


@pytest.fixture
def corpus(tmp_path, ravdess_dir, bad_inputs, no_speech_inputs) -> Path:
    """Three real clips (one nested twice), bad files, a silence-only file and hidden entries."""
    root = tmp_path / "corpus"
    (root / "a" / "b").mkdir(parents=True)
    clips = sorted((ravdess_dir / "Actor_05").glob("*.flac"))
    shutil.copy(clips[0], root / "one.flac")
    shutil.copy(clips[10], root / "a" / "two.flac")
    shutil.copy(clips[20], root / "a" / "b" / "three.flac")
    shutil.copy(bad_inputs["truncated_mp3"], root / "a" / "cut.mp3")
    shutil.copy(bad_inputs["random_bytes"], root / "noise.wav")
    shutil.copy(bad_inputs["empty"], root / "empty.wav")
    shutil.copy(bad_inputs["text_as_mp3"], root / "notes.mp3")
    shutil.copy(no_speech_inputs["silence_only"], root / "quiet.wav")
    (root / ".DS_Store").write_bytes(b"\0\1\2")
    (root / ".cache").mkdir()
    shutil.copy(clips[0], root / ".cache" / "hidden.flac")
    return root


def _rows(db: str, sql: str):
    from warehouse import read_df

    return read_df(sql, db=db)


def test_ingest_records_good_bad_and_skipped_files_and_goes_on(prefect_harness, flow_config, corpus):
    from flows.ingest import ingest_folder

    s = ingest_folder(corpus, options=flow_config)
    assert s.status == "completed"
    # three clips + the silence-only file decode; the audio-named files that do not decode fail with a reason
    assert (s.files_ok, s.files_failed) == (4, 4)  # cut.mp3, noise.wav, empty.wav, notes.mp3
    assert s.files_skipped == 2  # .DS_Store, .cache/
    files = _rows(flow_config.db, "SELECT path, status, error, error_type FROM files ORDER BY path")
    by_name = {Path(p).name: (st, None if pd.isna(err) else err, None if pd.isna(et) else et)
               for p, st, err, et in files.itertuples(index=False)}
    assert by_name["cut.mp3"][0::2] == ("failed", "truncated") and "truncated" in by_name["cut.mp3"][1]
    assert by_name["notes.mp3"][0::2] == ("failed", "unsupported") and "text file" in by_name["notes.mp3"][1]
    assert by_name["empty.wav"] == ("failed", "file is empty", "unreadable")
    assert by_name["noise.wav"][0] == "failed" and by_name["noise.wav"][2] in ("unsupported", "decode")
    assert by_name[".cache"][0] == "skipped" and "hidden" in by_name[".cache"][1]
    assert by_name["three.flac"] == ("ok", None, None)
    assert {(Path(p).name, why) for p, why in s.skipped} == {(".DS_Store", "hidden file"),
                                                            (".cache", "hidden folder (not searched)")}
    assert s.models["emotion"] and s.models["whisper"] is None
    chunks = _rows(flow_config.db, "SELECT f.path, count(c.chunk_id) AS n FROM files f "
                                   "LEFT JOIN chunks c USING (file_id) WHERE f.status = 'ok' GROUP BY 1")
    n = {Path(p).name: k for p, k in chunks.itertuples(index=False)}
    assert n["quiet.wav"] == 0 and n["one.flac"] == 1 and n["two.flac"] == 1
    runs = _rows(flow_config.db, "SELECT status, n_files, n_failed FROM runs")
    assert runs.values.tolist() == [["completed", 4, 4]]
    shap = _rows(flow_config.db, "SELECT count(*) FROM shap")
    assert shap.iloc[0, 0] > 0  # fast-tier explanations were stored


def test_second_run_is_a_no_op_and_a_changed_file_is_reanalysed(prefect_harness, flow_config, corpus, ravdess_dir):
    from flows.ingest import ingest_folder

    ingest_folder(corpus, options=flow_config)
    before = _rows(flow_config.db, "SELECT count(*) FROM chunks").iloc[0, 0]
    ids = _rows(flow_config.db, "SELECT path, file_id FROM files ORDER BY path")
    again = ingest_folder(corpus, options=flow_config)
    assert (again.files_ok, again.files_unchanged) == (0, 4)
    # broken content is not retried while unchanged; the empty file is (it may be a recording in progress)
    assert again.files_failed_before == 3 and [Path(p).name for p, _ in again.failures] == ["empty.wav"]
    assert _rows(flow_config.db, "SELECT count(*) FROM chunks").iloc[0, 0] == before
    assert _rows(flow_config.db, "SELECT path, file_id FROM files ORDER BY path").equals(ids)  # stable ids

    replacement = sorted((ravdess_dir / "Actor_07").glob("*.flac"))[3]
    shutil.copy(replacement, corpus / "one.flac")
    third = ingest_folder(corpus, options=flow_config)
    assert (third.files_ok, third.files_unchanged) == (1, 3)
    dup = _rows(flow_config.db, "SELECT path, count(*) FROM files GROUP BY 1 HAVING count(*) > 1")
    assert dup.empty


def test_same_content_at_two_paths_is_copied_without_running_the_models(prefect_harness, flow_config, corpus):
    from flows.ingest import ingest_folder

    ingest_folder(corpus, options=flow_config)
    shutil.copy(corpus / "one.flac", corpus / "a" / "one-again.flac")
    s = ingest_folder(corpus, options=flow_config)
    assert (s.files_ok, s.files_copied) == (0, 1)
    rows = _rows(flow_config.db, "SELECT f.path, c.dominant, c.start_s FROM files f JOIN chunks c USING (file_id) "
                                 "WHERE f.sha256 = (SELECT sha256 FROM files WHERE path LIKE '%one-again.flac')")
    assert len(rows) == 2 and rows["dominant"].nunique() == 1


def test_missing_folder_is_reported_by_name(flow_config, tmp_path):
    from flows.ingest import ingest_folder

    with pytest.raises(FileNotFoundError, match="nowhere"):
        ingest_folder(tmp_path / "nowhere", options=flow_config)


def _cli_env(tmp_path: Path, cfg: Config) -> dict:
    env = dict(os.environ)
    env.update({
        "EMOTIVOICE_EMOTION_MODEL": cfg.emotion_model, "EMOTIVOICE_WHISPER_MODEL": "none",
        "EMOTIVOICE_DB": cfg.db, "EMOTIVOICE_DATA_DIR": cfg.data_dir, "EMOTIVOICE_EXPLAIN": "fast",
        "PREFECT_HOME": str(tmp_path / "prefect-cli"), "PREFECT_API_URL": "",
        "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
    })
    env.pop("PREFECT_API_URL")
    return env


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_finishes_without_duplicates_or_partial_rows(tmp_path, flow_config, ravdess_dir):
    root = tmp_path / "many"
    root.mkdir()
    clips = sorted((ravdess_dir / "Actor_09").glob("*.flac"))[:12]
    for c in clips:
        shutil.copy(c, root / c.name)
    env = _cli_env(tmp_path, flow_config)
    env["EMOTIVOICE_WRITE_BATCH_S"] = "0.3"  # several batches (transactions) before the kill, not one
    cmd = [sys.executable, "-m", "flows.cli", "ingest", str(root)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if Path(flow_config.db).exists():
            try:
                done = _rows(flow_config.db, "SELECT count(*) FROM files WHERE status = 'ok'").iloc[0, 0]
            except Exception:
                continue
            if done >= 2:
                break
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _rows(flow_config.db, "SELECT count(*) FROM files WHERE status = 'ok'").iloc[0, 0]
    assert 2 <= partial < len(clips)

    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "completed" in out.stdout
    files = _rows(flow_config.db, "SELECT path, count(*) AS n FROM files GROUP BY 1")
    assert len(files) == len(clips) and files["n"].max() == 1
    # every ok file has its chunks and its emotions: nothing half-written
    orphan = _rows(flow_config.db, """
        SELECT f.path FROM files f LEFT JOIN chunks c USING (file_id)
        WHERE f.status = 'ok' GROUP BY 1 HAVING count(c.chunk_id) = 0""")
    assert orphan.empty
    no_emotions = _rows(flow_config.db, """
        SELECT c.chunk_id FROM chunks c LEFT JOIN emotions e USING (chunk_id)
        GROUP BY 1 HAVING count(e.label) = 0""")
    assert no_emotions.empty


@pytest.mark.slow
def test_cli_ingest_prints_a_summary_and_exits_zero_with_failed_files(tmp_path, flow_config, corpus):
    env = _cli_env(tmp_path, flow_config)
    out = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(corpus)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4 ok, 4 failed, 2 skipped" in out.stdout
    assert "models: emotion " in out.stdout and "whisper none" in out.stdout
    assert "skipped: " in out.stdout and ".DS_Store: hidden file" in out.stdout
    assert "real time" in out.stdout
    assert "cut.mp3" in out.stdout and "truncated" in out.stdout


def test_a_folder_with_crashing_8_channel_and_truncated_files_is_ingested_twice_and_every_good_file_stored(
        prefect_harness, flow_config, tmp_path, ravdess_dir, monkeypatch):
    """8 channels used to segfault the run (every run, as the folder is re-read); a decoder crash now
    fails one file ('crashed the analyser: SIGSEGV'), is not retried while unchanged, and the run completes."""
    from flows.ingest import ingest_folder
    from tests.test_crash_isolation import FAULT, _surround, _truncated

    root = tmp_path / "mixed"
    root.mkdir()
    clips = sorted((ravdess_dir / "Actor_08").glob("*.flac"))
    for c in clips[:3]:
        shutil.copy(c, root / c.name)
    _surround(clips[4], root / "surround8.wav")
    _truncated(clips[5], root / "cut.wav")
    shutil.copy(clips[6], root / "boom.flac")
    monkeypatch.setenv(FAULT, "segv:boom")  # decoding boom.flac really segfaults (in the decoding child)

    first = ingest_folder(root, options=flow_config)
    assert (first.status, first.files_ok, first.files_failed) == ("completed", 4, 2)
    reasons = {Path(p).name: why for p, why in first.failures}
    assert reasons["boom.flac"] == "crashed the analyser: SIGSEGV"
    assert reasons["cut.wav"].startswith("truncated: the header says ")
    sql = "SELECT path, file_id, status, error_type, channels FROM files ORDER BY path"
    stored = _rows(flow_config.db, sql)
    by = {Path(p).name: (st, None if pd.isna(et) else et, None if pd.isna(ch) else int(ch))
          for p, _, st, et, ch in stored.itertuples(index=False)}
    assert by["surround8.wav"] == ("ok", None, 8)
    assert all(by[c.name][0] == "ok" for c in clips[:3])
    assert (by["cut.wav"][:2], by["boom.flac"][:2]) == (("failed", "truncated"), ("failed", "crashed"))

    second = ingest_folder(root, options=flow_config)
    assert (second.status, second.files_ok, second.files_failed) == ("completed", 0, 0)
    assert (second.files_unchanged, second.files_failed_before) == (4, 2)
    assert _rows(flow_config.db, sql).equals(stored)  # nothing rewritten, file ids stable

    third = ingest_folder(root, options=flow_config.replace(retry_failed=True))
    assert (third.status, third.files_failed, third.files_failed_before) == ("completed", 2, 0)
    assert _rows(flow_config.db, sql)["file_id"].tolist() == stored["file_id"].tolist()

    shutil.copy(clips[5], root / "cut.wav")  # the truncated file is replaced by a whole one: retried
    fourth = ingest_folder(root, options=flow_config)
    assert (fourth.files_ok, fourth.files_failed_before) == (1, 1)
    runs = _rows(flow_config.db, "SELECT status, n_files, n_failed FROM runs ORDER BY run_id")
    assert runs.values.tolist() == [["completed", 4, 2], ["completed", 0, 0], ["completed", 0, 2],
                                    ["completed", 1, 0]]


@pytest.mark.parametrize("retries", [0, 1])
def test_config_retries_is_how_often_a_transient_error_is_retried(prefect_harness, flow_config, ravdess_dir,
                                                                  tmp_path, monkeypatch, retries):
    import pipeline.analyze
    from flows.ingest import ingest_folder

    root = tmp_path / f"corpus-{retries}"
    root.mkdir()
    shutil.copy(sorted((ravdess_dir / "Actor_05").glob("*.flac"))[0], root / "one.flac")
    attempts = []

    def flaky(self, path):  # an I/O error on every attempt: transient, so Prefect retries it
        attempts.append(path)
        raise OSError(5, "input/output error")

    monkeypatch.setattr(pipeline.analyze.Analyzer, "analyze_file", flaky)
    s = ingest_folder(root, options=flow_config.replace(retries=retries))
    assert len(attempts) == retries + 1
    assert s.files_failed == 1
    failed = _rows(flow_config.db, "SELECT error FROM files WHERE path LIKE '%one.flac'")
    assert failed["error"].iloc[0] == "cannot read: input/output error"
