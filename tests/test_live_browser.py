"""End to end in Debian's chromium: fake microphone -> WebRTC -> Live page -> results -> Stop -> saved.

A streamlit server runs the Live page alone (dashboard/pages/6_Live.py) on a free 127.0.0.1 port with
the tiny random HuBERT, no Whisper, fast explanations, a temp database and data folder. Headless
chromium plays three RAVDESS clips (48 kHz WAV) as its microphone. No outside request is made:
no ICE servers are configured (host candidates on this machine's own address).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from tests.browser_util import CHROMIUM, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture
def fake_microphone_wav(tmp_path, three_utterances_wav) -> Path:
    """The three clips (with 1.5 s pauses), 1 s of silence first, as a 48 kHz 16-bit stereo WAV."""
    x, rate = sf.read(three_utterances_wav.path, dtype="float32")
    x = np.concatenate([np.zeros(rate, dtype=np.float32), x, np.zeros(rate, dtype=np.float32)])
    x48 = resample_poly(x, 48000 // rate, 1).astype(np.float32)
    path = tmp_path / "microphone.wav"
    sf.write(path, np.stack([x48, x48], axis=1), 48000, subtype="PCM_16")
    return path


@pytest.fixture
def live_server(tmp_path, tiny_hubert_dir):
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "EMOTIVOICE_EMOTION_MODEL": str(tiny_hubert_dir),
        "EMOTIVOICE_WHISPER_MODEL": "none",
        "EMOTIVOICE_EXPLAIN": "fast",
        "EMOTIVOICE_DB": str(tmp_path / "live.duckdb"),
        "EMOTIVOICE_DATA_DIR": str(tmp_path / "data"),
        "EMOTIVOICE_ICE_SERVERS": "",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("EMOTIVOICE_CONFIG", None)
    log = tmp_path / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "pages" / "6_Live.py"),
             "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, proc, log)
        yield {"url": f"http://127.0.0.1:{port}", "db": tmp_path / "live.duckdb", "data": tmp_path / "data",
               "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_speaking_into_the_live_tab_shows_results_and_stop_saves_the_session(live_server, fake_microphone_wav):
    """Stream, see results, Stop saves; then the st.audio_input fallback saves a second session."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt install chromium)")
    from playwright.sync_api import expect, sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_microphone_wav}",
            "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page()
            page.goto(live_server["url"], timeout=60_000)
            widget = page.frame_locator("iframe[title*='streamlit_webrtc']")
            saved = page.get_by_text(re.compile(r"Saved session live-"))
            line = page.locator("li").filter(has_text=re.compile(r"\d\d:\d\d\.\d–\d\d:\d\d\.\d"))
            # Under the full suite's load the headless browser has ended the fake microphone's stream within
            # a second, before any result, in some runs (cause not found; see the closing note of session 5).
            # The page then saves what it heard, as it must; the test starts the stream again, at most 3 times.
            for attempt in range(3):
                dropped = saved.count()
                # the first render loads the model and runs the warm-up analysis
                widget.get_by_role("button", name="START").click(timeout=240_000)
                try:
                    # results appear while streaming: a transcript line tagged with an emotion
                    expect(page.get_by_text("Transcript", exact=True)).to_be_visible(timeout=120_000)
                    expect(line.first).to_contain_text(
                        re.compile(r"(anger|fear|happiness|sadness|surprise|neutral) \d\.\d\d"), timeout=60_000)
                    break
                except AssertionError:
                    if attempt == 2 or saved.count() == dropped:
                        raise
            body = page.inner_text("body")
            assert "untrained" in body  # a random model's scores are never presented as emotions

            # Stream until the page has heard 2 s (then press STOP), reading what it says it has heard
            # ("Heard": all of it must be in the saved recording) and its latency line. On a busy machine the
            # browser can end the stream on its own first; the page then saves what it heard, as it must.
            heard = page.get_by_test_id("stMetric").filter(has_text="Heard").get_by_test_id("stMetricValue")
            latency = page.get_by_text(re.compile(r"\d+\.\d\d s / \d+\.\d\d s"))
            heard_s, latency_seen, pressed_stop = 0.0, False, False
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and saved.count() == dropped:
                try:
                    heard_s = max(heard_s, float(re.search(r"([\d.]+) s", heard.inner_text(timeout=2000)).group(1)))
                    latency_seen = latency_seen or latency.count() > 0
                except Exception:  # the panel is redrawing, or the stream just ended
                    pass
                if heard_s >= 2.0 and latency_seen:
                    widget.get_by_role("button", name="STOP").click()
                    pressed_stop = True
                    break
                time.sleep(0.5)
            assert pressed_stop or saved.count() > dropped, f"the stream neither reached 2 s nor ended (heard {heard_s} s)"
            expect(saved).to_have_count(dropped + 1, timeout=120_000)
            message = saved.nth(dropped).inner_text()
            flac = Path(re.search(r"(/\S+\.flac)", message).group(1))

            # the fallback: a clip recorded with st.audio_input is analysed and saved the same way
            recorder = page.get_by_test_id("stAudioInput")
            recorder.get_by_role("button", name="Record").click()
            time.sleep(6)
            recorder.get_by_role("button", name="Stop recording").click()
            expect(saved).to_have_count(dropped + 2, timeout=120_000)
        finally:
            browser.close()

    flacs = sorted((live_server["data"] / "live").glob("live-*.flac"))
    assert len(flacs) == dropped + 2 and flac in flacs, message
    info = sf.info(flac)
    # chromium's fake microphone sometimes delivers audio slower than real time on a busy machine, so the
    # recording's length is checked against what the page said it had heard, not against the wall clock
    assert info.samplerate == 16000 and info.channels == 1
    said = float(re.search(r"\(([\d.]+) s, \d+ chunk", message).group(1))  # what the page said it saved
    assert info.duration > 0.5 and abs(info.duration - said) < 0.1, (info.duration, message)
    assert info.duration >= heard_s - 0.2, (info.duration, heard_s)

    from warehouse import Warehouse

    wh = Warehouse(live_server["db"])
    files = wh.read_df("SELECT file_id, path, source FROM files ORDER BY file_id")
    assert list(files["source"]) == ["live"] * (dropped + 2)
    assert sorted(files["path"]) == [str(f) for f in flacs]
    streamed = int(files.loc[files["path"] == str(flac), "file_id"].iloc[0])
    n = wh.read_df("SELECT count(*) AS n FROM chunks WHERE file_id = ?", [streamed])["n"][0]
    assert n >= 1
