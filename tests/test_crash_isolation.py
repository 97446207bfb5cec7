"""A native crash or hang while decoding one file fails that file with the reason; the process goes on.

The crashes are real: ``EMOTIVOICE_TEST_DECODE_FAULT=<segv|abort|oom|hang>:<name part>`` makes the decoding
child read address 0 (SIGSEGV), abort (SIGABRT), get SIGKILL as from the kernel's OOM killer, or hang, on
files whose name contains the part, which is what a decoder bug looks like from the outside.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipeline.isolate import decode_isolated, probe_isolated
from pipeline.types import AudioError

ROOT = Path(__file__).resolve().parents[1]
FAULT = "EMOTIVOICE_TEST_DECODE_FAULT"


@pytest.fixture
def clip(tmp_path, ravdess_dir) -> Path:
    src = sorted((ravdess_dir / "Actor_03").glob("*.flac"))[0]
    return Path(shutil.copy(src, tmp_path / "boom.flac"))


@pytest.mark.parametrize("fault,signal_name", [("segv", "SIGSEGV"), ("abort", "SIGABRT"), ("oom", "SIGKILL")])
def test_a_crash_while_decoding_fails_that_file_with_the_signal_and_the_next_file_decodes(
        monkeypatch, clip, tmp_path, fault, signal_name):
    monkeypatch.setenv(FAULT, f"{fault}:boom")
    with pytest.raises(AudioError) as err:
        decode_isolated(clip, timeout_s=60)
    assert err.value.kind == "crashed"
    assert err.value.reason.startswith(f"crashed the analyser: {signal_name}")
    good = shutil.copy(clip, tmp_path / "fine.flac")
    assert decode_isolated(good, timeout_s=60).duration_s > 1.0  # this process is alive and well


def test_a_hanging_decoder_is_killed_after_the_timeout(monkeypatch, clip):
    monkeypatch.setenv(FAULT, "hang:boom")
    t0 = time.monotonic()
    with pytest.raises(AudioError) as err:
        decode_isolated(clip, timeout_s=2)
    assert err.value.kind == "timeout" and "longer than 2 s" in err.value.reason
    assert time.monotonic() - t0 < 20


def test_probing_goes_on_after_a_crash_with_a_new_child(monkeypatch, clip, tmp_path):
    monkeypatch.setenv(FAULT, "segv:boom")
    first = shutil.copy(clip, tmp_path / "a.flac")
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n" * 50)
    last = shutil.copy(clip, tmp_path / "z.flac")
    results = list(probe_isolated([first, clip, text, last], timeout_s=60))
    assert [Path(p).name for p, _ in results] == ["a.flac", "boom.flac", "notes.txt", "z.flac"]
    outcome = {Path(p).name: r for p, r in results}
    assert outcome["a.flac"].channels == 1 and outcome["z.flac"].channels == 1
    assert outcome["boom.flac"].kind == "crashed" and "SIGSEGV" in outcome["boom.flac"].reason
    assert outcome["notes.txt"].kind == "unsupported" and "text file" in outcome["notes.txt"].reason


def test_analyze_cli_answers_a_crashing_file_with_one_line_and_exit_code_2(clip, tmp_path, tiny_hubert_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", EMOTIVOICE_WHISPER_MODEL="none",
               EMOTIVOICE_EMOTION_MODEL=str(tiny_hubert_dir), EMOTIVOICE_DATA_DIR=str(tmp_path / "data"))
    env[FAULT] = "segv:boom"
    out = subprocess.run([sys.executable, "-m", "flows.cli", "analyze", str(clip)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == f"emotivoice analyze: {clip}: crashed the analyser: SIGSEGV"


# ----------------------------------------------------------------------------- the CLI, end to end
def _surround(src: Path, dst: Path) -> Path:
    """The clip as an 8-channel WAV (a level per channel): what used to segfault every run."""
    x, sr = sf.read(str(src), dtype="float32")
    sf.write(dst, np.stack([x * (1.0 - 0.1 * c) for c in range(8)], axis=1), sr, subtype="PCM_16")
    return dst


def _truncated(src: Path, dst: Path) -> Path:
    x, sr = sf.read(str(src), dtype="float32")
    sf.write(dst, x, sr, subtype="PCM_16")
    data = dst.read_bytes()
    dst.write_bytes(data[: len(data) // 3])
    return dst


@pytest.mark.slow
def test_cli_ingests_a_folder_with_crashing_8_channel_and_truncated_files_twice_both_runs_complete(
        tmp_path, ravdess_dir, tiny_hubert_dir):
    from warehouse import read_df

    root = tmp_path / "corpus"
    root.mkdir()
    clips = sorted((ravdess_dir / "Actor_06").glob("*.flac"))
    for c in clips[:3]:
        shutil.copy(c, root / c.name)
    _surround(clips[5], root / "surround8.wav")
    _truncated(clips[6], root / "cut.wav")
    shutil.copy(clips[7], root / "boom.flac")  # good audio that crashes the decoder (SIGSEGV)
    (root / "evil\nrun 1: completed.txt").write_text("a name that tries to forge a summary line\n")
    db = tmp_path / "ev.duckdb"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", EMOTIVOICE_WHISPER_MODEL="none",
               EMOTIVOICE_EMOTION_MODEL=str(tiny_hubert_dir), EMOTIVOICE_DB=str(db), EMOTIVOICE_EXPLAIN="none",
               EMOTIVOICE_DATA_DIR=str(tmp_path / "data"), PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL", None)
    env[FAULT] = "segv:boom"

    def ingest(*extra: str) -> str:
        out = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(root), *extra], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=500)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout

    first = ingest()
    assert "4 ok, 2 failed, 1 skipped" in first  # 3 clips + the 8-channel file; cut.wav, boom.flac
    assert "failed: " + str(root / "boom.flac") + ": crashed the analyser: SIGSEGV" in first
    assert "failed: " + str(root / "cut.wav") + ": truncated: the header says" in first
    # the newline in the name is shown escaped: it cannot start a line of its own
    assert [ln for ln in first.splitlines() if ln.startswith("run ")] == [first.splitlines()[0]]
    assert "evil\\nrun 1: completed.txt: not audio" in first

    second = ingest()
    assert "0 ok, 0 failed, 1 skipped, 4 unchanged" in second
    assert "2 file(s) failed in an earlier run and are unchanged: not retried" in second

    third = ingest("--retry-failed")  # retried: the crash happens again, and the run still completes
    assert "0 ok, 2 failed" in third and "crashed the analyser: SIGSEGV" in third

    runs = read_df("SELECT status FROM runs ORDER BY run_id", db=str(db))
    assert runs["status"].tolist() == ["completed"] * 3
    files = read_df("SELECT path, status, error_type, count(*) OVER (PARTITION BY path) AS n FROM files", db=str(db))
    by = {Path(p).name: (st, None if pd.isna(et) else et) for p, st, et, _ in files.itertuples(index=False)}
    assert files["n"].max() == 1
    assert by["surround8.wav"] == ("ok", None) and all(by[c.name] == ("ok", None) for c in clips[:3])
    assert by["cut.wav"] == ("failed", "truncated") and by["boom.flac"] == ("failed", "crashed")
