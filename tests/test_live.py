"""Live session logic with synthetic frames: conversion, resampling, end-pointing, overload, saving."""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from flows.live import LiveSession, analyse_recording
from pipeline.config import Config
from pipeline.live_results import timeline_rows, transcript_lines
from pipeline.stream import DropOldestQueue, EndPointer, RingBuffer, StreamResampler, frame_to_mono
from pipeline.types import BASE_EMOTIONS, ChunkResult, FileResult, ModelInfo, Word
from tests.fixtures_audio import speech_like

SR = 16000
FRAME = 960  # samples per channel of a WebRTC frame at 48 kHz (20 ms)


def live_config(**kw) -> Config:
    base = dict(live_silence_ms=400, live_max_utterance_s=2.0, live_min_utterance_s=0.4, live_queue_size=4,
                keep_silence_ms=100)
    base.update(kw)
    return Config().replace(**base)


def tone(seconds: float, rate: int = SR, freq: float = 220.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float, rate: int = SR) -> np.ndarray:
    return np.zeros(int(round(seconds * rate)), dtype=np.float32)


def webrtc_frames(mono: np.ndarray, rate: int = 48000, frame: int = FRAME, right: np.ndarray | None = None):
    """Mono float -> the frames the browser sends: s16 interleaved stereo, shape (1, 2*frame)."""
    right = mono if right is None else right
    n = len(mono) // frame * frame
    inter = np.stack([mono[:n], right[:n]], axis=1).reshape(-1)
    pcm = np.clip(np.round(inter * 32767), -32768, 32767).astype(np.int16)
    frames = []
    for i in range(0, 2 * n, 2 * frame):
        f = av.AudioFrame.from_ndarray(pcm[i:i + 2 * frame].reshape(1, -1), format="s16", layout="stereo")
        f.sample_rate = rate
        frames.append(f)
    return frames


def fake_result(samples: np.ndarray, sample_rate: int, name: str = "x", **_) -> FileResult:
    """What analyze_signal returns, for one chunk covering the whole signal (0.1 s in)."""
    dur = len(samples) / sample_rate
    probs = np.full(len(BASE_EMOTIONS), 0.1)
    probs[int(len(samples)) % len(BASE_EMOTIONS)] = 0.5
    base = dict(zip(BASE_EMOTIONS, map(float, probs)))
    dominant = max(base, key=base.get)
    chunk = ChunkResult(idx=0, start_s=0.1, end_s=round(dur, 3), base=base, dominant=dominant,
                        transcript=f"words of {name}", words=[Word("words", 0.2, 0.4)])
    return FileResult(file=name, duration_s=dur, sample_rate=sample_rate, channels=1,
                      models=ModelInfo("fake", False, None), chunks=[chunk], settings={"emotion_model": "fake"},
                      notes=["emotion model fake is untrained (random weights): scores are not emotions"],
                      timings={"emotion_s": 0.01})


def feed_and_collect(ep: EndPointer, signal: np.ndarray, block: int = 320):
    """Feed a 16 kHz signal in 20 ms pieces; return (utterance, samples fed when it closed)."""
    out = []
    for i in range(0, len(signal), block):
        for u in ep.feed(signal[i:i + block]):
            out.append((u, i + len(signal[i:i + block])))
    return out


# ---------------------------------------------------------------------------------------- frames


def test_an_interleaved_s16_stereo_frame_becomes_the_mean_of_its_channels():
    left = np.full(FRAME, 0.5, dtype=np.float32)
    right = np.full(FRAME, -0.25, dtype=np.float32)
    (frame,) = webrtc_frames(left, right=right)
    assert frame.to_ndarray().shape == (1, 2 * FRAME)
    mono, rate = frame_to_mono(frame)
    assert rate == 48000
    assert mono.dtype == np.float32 and mono.shape == (FRAME,)
    np.testing.assert_allclose(mono, 0.125, atol=1e-4)


def test_a_planar_float_frame_becomes_the_mean_of_its_channels():
    data = np.stack([np.full(480, 0.2, np.float32), np.full(480, 0.6, np.float32)])
    frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
    frame.sample_rate = 24000
    mono, rate = frame_to_mono(frame)
    assert rate == 24000
    np.testing.assert_allclose(mono, 0.4, atol=1e-6)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_resampling_frame_by_frame_equals_resampling_the_whole_signal(rate):
    x = np.random.default_rng(1).standard_normal(rate).astype(np.float32) * 0.1
    rs = StreamResampler(rate, SR)
    sizes = np.random.default_rng(2).integers(1, 1500, size=400)
    parts, i = [], 0
    for n in sizes:
        parts.append(rs.process(x[i:i + n]))
        i += n
    parts.append(rs.process(x[i:]))
    parts.append(rs.flush())
    g = np.gcd(rate, SR)
    ref = resample_poly(x.astype(np.float64), SR // g, rate // g)
    out = np.concatenate(parts)
    assert len(out) == len(ref)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_48k_stereo_frames_are_recorded_as_16k_mono_with_the_same_tone_and_level():
    x48 = tone(1.0, 48000, freq=440.0, level=0.25)
    session = LiveSession(live_config(), analyze=fake_result)
    session.push_frames(webrtc_frames(x48))
    session.stop()
    rec = session.recording()
    assert len(rec) == SR  # 1 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(rec))
    assert np.argmax(spectrum) * SR / len(rec) == pytest.approx(440.0, abs=2)
    assert np.sqrt(np.mean(rec[800:-800] ** 2)) == pytest.approx(0.25 / np.sqrt(2), rel=0.02)


def test_the_ring_buffer_keeps_the_newest_samples_by_absolute_index():
    rb = RingBuffer(100)
    for k in range(7):
        rb.append(np.arange(k * 30, (k + 1) * 30, dtype=np.float32))
    assert (rb.start, rb.end) == (110, 210)
    np.testing.assert_array_equal(rb.get(150, 170), np.arange(150, 170))
    with pytest.raises(ValueError, match="not held"):
        rb.get(100, 120)


# ---------------------------------------------------------------------------------------- end-pointing


def test_speech_followed_by_400_ms_of_silence_closes_an_utterance():
    ep = EndPointer(live_config(live_silence_ms=400))
    signal = np.concatenate([silence(0.5), tone(1.0), silence(1.0)])
    got = feed_and_collect(ep, signal)
    assert len(got) == 1
    utt, fed = got[0]
    assert utt.reason == "silence"
    speech_end = int(1.5 * SR)
    assert speech_end + 0.4 * SR <= fed <= speech_end + 0.46 * SR  # closed once 400 ms of silence was heard
    assert utt.start_s == pytest.approx(0.4, abs=0.03)  # 100 ms of context before the speech
    assert utt.end_s == pytest.approx(1.6, abs=0.03)  # and after it
    assert len(utt.samples) == pytest.approx((utt.end_s - utt.start_s) * SR, abs=1)


def test_a_pause_shorter_than_the_silence_setting_does_not_split_an_utterance():
    ep = EndPointer(live_config(live_silence_ms=400))
    signal = np.concatenate([silence(0.3), tone(0.6), silence(0.3), tone(0.6), silence(0.8)])
    got = feed_and_collect(ep, signal)
    assert [u.reason for u, _ in got] == ["silence"]
    assert got[0][0].speech_s == pytest.approx(1.5, abs=0.05)


def test_continuous_speech_is_cut_at_the_maximum_utterance_length():
    ep = EndPointer(live_config(live_max_utterance_s=2.0))
    signal = np.concatenate([silence(0.5), speech_like(7.0, seed=3), silence(1.0)])
    utts = [u for u, _ in feed_and_collect(ep, signal)]
    assert len(utts) == 4
    assert [u.reason for u in utts[:3]] == ["max_length"] * 3
    assert all(u.duration_s == pytest.approx(2.0, abs=0.001) for u in utts[:3])
    for a, b in zip(utts, utts[1:]):
        assert b.start_s == pytest.approx(a.end_s)  # nothing lost between the cuts
    assert utts[-1].end_s == pytest.approx(7.5, abs=0.15)


def test_blips_shorter_than_the_minimum_are_dropped_and_counted():
    ep = EndPointer(live_config(live_min_utterance_s=0.4))
    signal = np.concatenate([silence(0.5), tone(0.15), silence(1.0), tone(0.1, level=0.6), silence(1.0)])
    assert feed_and_collect(ep, signal) == []
    assert ep.dropped_short == 2


def test_steady_background_noise_is_not_speech_but_speech_over_it_is():
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(int(6 * SR)) * 10 ** (-50 / 20)).astype(np.float32)  # -50 dBFS hiss
    signal = noise.copy()
    signal[int(3 * SR):int(4 * SR)] += tone(1.0, level=0.2)
    ep = EndPointer(live_config())
    utts = [u for u, _ in feed_and_collect(ep, signal)]
    assert len(utts) == 1
    assert utts[0].start_s == pytest.approx(2.9, abs=0.05)
    assert utts[0].end_s == pytest.approx(4.1, abs=0.05)


def test_three_real_clips_with_pauses_give_three_utterances(three_utterances_wav):
    x, rate = sf.read(three_utterances_wav.path, dtype="float32")
    session = LiveSession(live_config(live_max_utterance_s=6.0), analyze=fake_result)
    session.push_frames(webrtc_frames(resample_poly(x, 3, 1).astype(np.float32)))
    session.stop()
    utts = sorted((r.utterance for r in session.results()), key=lambda u: u.start_s)
    assert len(utts) == 3
    for u, (c0, c1) in zip(utts, three_utterances_wav.clips):
        assert c0 - 0.05 <= u.start_s and u.end_s <= c1 + 0.15  # within its clip (plus context)


def test_stop_during_speech_closes_the_open_utterance():
    session = LiveSession(live_config(), analyze=fake_result)
    session.push(np.concatenate([silence(0.3), tone(1.0)]), SR)
    assert session.results() == []
    session.stop()
    (res,) = session.results()
    assert res.utterance.reason == "stop"
    assert res.utterance.end_s == pytest.approx(1.3, abs=0.03)


# ---------------------------------------------------------------------------------------- overload


def test_a_full_queue_drops_its_oldest_item_and_counts_it():
    q = DropOldestQueue(2)
    assert q.put("a") is None and q.put("b") is None
    assert q.put("c") == "a"
    assert len(q) == 2 and q.dropped == 1
    assert [q.get(0), q.get(0), q.get(0)] == ["b", "c", None]


class GatedAnalyser:
    """A slow analyser: the first call blocks until released (a machine that cannot keep up)."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls: list[float] = []

    def __call__(self, samples, sample_rate, name="x", live=False):
        self.calls.append(len(samples) / sample_rate)
        self.started.set()
        self.release.wait(10)
        return fake_result(samples, sample_rate, name)


def utterances(n: int) -> np.ndarray:
    return np.concatenate([silence(0.3)] + [np.concatenate([tone(0.6 + 0.1 * k), silence(0.6)]) for k in range(n)])


def test_when_analysis_falls_behind_the_oldest_waiting_utterances_are_dropped_and_counted():
    slow = GatedAnalyser()
    session = LiveSession(live_config(live_queue_size=2), analyze=slow)
    signal = utterances(6)
    first_closed = int(1.5 * SR)  # utterance 0 (0.3-0.9 s) is closed by 1.3 s
    session.push(signal[:first_closed], SR)
    assert slow.started.wait(5)  # the worker is busy with utterance 0
    session.push(signal[first_closed:], SR)
    stats = session.stats()
    assert stats.utterances == 6
    assert stats.waiting == 2  # bounded by live_queue_size
    assert stats.busy
    assert stats.dropped_overload == 3  # 1 in analysis + 2 waiting + 3 dropped
    slow.release.set()
    session.stop(timeout=10)
    kept = sorted(r.utterance.index for r in session.results())
    assert kept == [0, 4, 5]  # the first (already running) and the newest two


def test_the_saved_session_result_includes_utterances_dropped_under_overload():
    slow = GatedAnalyser()
    session = LiveSession(live_config(live_queue_size=1), analyze=slow)
    session.push(utterances(5), SR)
    slow.release.set()
    result = session.session_result(name="/data/live/x.flac")
    assert len(result.chunks) == 5
    assert [c.idx for c in result.chunks] == list(range(5))
    starts = [c.start_s for c in result.chunks]
    assert starts == sorted(starts)
    assert any("at stop" in n for n in result.notes)


def test_a_failing_analysis_is_counted_and_the_session_goes_on():
    calls = []

    def flaky(samples, sample_rate, name="x", live=False):
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return fake_result(samples, sample_rate, name)

    session = LiveSession(live_config(), analyze=flaky)
    session.push(utterances(3), SR)
    session.stop()
    stats = session.stats()
    assert stats.errors == 1 and "model exploded" in stats.last_error
    assert stats.analysed == 2


# ---------------------------------------------------------------------------------------- results and saving


def test_utterance_results_are_shifted_into_session_time():
    session = LiveSession(live_config(), analyze=fake_result)
    session.push(utterances(2), SR)
    session.stop()
    for r in session.results():
        (chunk,) = r.result.chunks
        assert chunk.start_s == pytest.approx(r.utterance.start_s + 0.1, abs=1e-3)
        assert chunk.words[0].start_s == pytest.approx(r.utterance.start_s + 0.2, abs=1e-3)
        assert r.latency_s >= 0


def test_the_session_result_is_one_file_spanning_the_recording():
    session = LiveSession(live_config(), analyze=fake_result)
    signal = utterances(3)
    session.push(signal, SR)
    result = session.session_result(name="/data/live/s.flac")
    assert result.file == "/data/live/s.flac"
    assert result.duration_s == pytest.approx(len(signal) / SR, abs=0.01)
    assert result.sample_rate == SR and result.channels == 1
    assert len(result.chunks) == 3
    assert all(0 <= c.start_s < c.end_s <= result.duration_s for c in result.chunks)
    assert result.settings["live_segmentation"]["live_silence_ms"] == 400
    assert sum("untrained" in n for n in result.notes) == 1  # notes de-duplicated


def test_the_recording_is_saved_as_16k_mono_flac(tmp_path):
    session = LiveSession(live_config(), analyze=fake_result)
    session.push_frames(webrtc_frames(tone(1.5, 48000, level=0.3)))
    session.stop()
    path = session.save_recording(tmp_path / "live" / f"{session.id}.flac")
    data, rate = sf.read(path, dtype="float32")
    info = sf.info(path)
    assert (info.format, rate, info.channels) == ("FLAC", SR, 1)
    np.testing.assert_allclose(data, session.recording(), atol=1e-4)


def test_an_empty_session_refuses_to_save(tmp_path):
    session = LiveSession(live_config(), analyze=fake_result)
    session.stop()
    with pytest.raises(ValueError, match="nothing was recorded"):
        session.save_recording(tmp_path / "x.flac")


def test_a_recorded_clip_is_analysed_like_the_stream():
    signal = utterances(3)
    streamed = LiveSession(live_config(), analyze=fake_result)
    streamed.push_frames(webrtc_frames(resample_poly(signal, 3, 1).astype(np.float32)))
    streamed.stop()
    clip = analyse_recording(signal, SR, live_config(), analyze=fake_result)
    spans = lambda s: sorted((round(r.utterance.start_s, 2), round(r.utterance.end_s, 2)) for r in s.results())
    assert len(spans(clip)) == 3
    assert spans(clip) == spans(streamed)


def test_chart_rows_and_transcript_lines_follow_the_chunks():
    session = LiveSession(live_config(), analyze=fake_result)
    session.push(utterances(2), SR)
    session.stop()
    results = session.results()
    rows = timeline_rows(results)
    assert len(rows) == 2 * len(BASE_EMOTIONS)
    lines = transcript_lines(results)
    assert [ln.start_s for ln in lines] == sorted(c.start_s for r in results for c in r.result.chunks)
    assert all(ln.text.startswith("words of") and ln.dominant in BASE_EMOTIONS for ln in lines)


# ---------------------------------------------------------------------------------------- the page's helpers


def test_no_ice_servers_are_configured_by_default():
    from dashboard.live_page import rtc_configuration

    assert rtc_configuration(Config()) == {"iceServers": []}


def test_turn_credentials_in_the_url_become_username_and_credential():
    from dashboard.live_page import rtc_configuration

    cfg = Config().replace(ice_servers="stun:stun.example.org:3478,turn:alice:s3cret@turn.example.org:3478")
    assert rtc_configuration(cfg)["iceServers"] == [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:turn.example.org:3478"], "username": "alice", "credential": "s3cret"},
    ]


# ---------------------------------------------------------------------------------------- with the real pipeline


def test_a_live_session_with_the_real_pipeline_gives_emotions_per_utterance(tiny_hubert_dir, three_utterances_wav):
    cfg = live_config(emotion_model=str(tiny_hubert_dir), whisper_model="none", explain="fast",
                      live_max_utterance_s=6.0)
    x, rate = sf.read(three_utterances_wav.path, dtype="float32")
    session = LiveSession(cfg)
    session.push_frames(webrtc_frames(resample_poly(x, 3, 1).astype(np.float32)))
    session.stop(timeout=120)
    results = session.results()
    assert len(results) == 3
    for r in results:
        assert r.result.chunks, r.result.notes
        for c in r.result.chunks:
            present = {e: p for e, p in c.base.items() if p is not None}
            assert sum(present.values()) == pytest.approx(1.0, abs=1e-3)
            assert r.utterance.start_s - 0.01 <= c.start_s < c.end_s <= r.utterance.end_s + 0.01
        assert any("untrained" in n for n in r.result.notes)


def test_each_utterance_is_analysed_as_one_chunk_without_chunking_it_again(monkeypatch, tiny_hubert_dir,
                                                                          three_utterances_wav):
    import pipeline.chunking

    chunker_calls = []
    real_chunker = pipeline.chunking.chunk_speech

    def counting_chunker(*args, **kwargs):
        chunker_calls.append(args[0].size)
        return real_chunker(*args, **kwargs)

    monkeypatch.setattr(pipeline.chunking, "chunk_speech", counting_chunker)
    cfg = live_config(emotion_model=str(tiny_hubert_dir), whisper_model="none", explain="none",
                      live_max_utterance_s=6.0)
    x, rate = sf.read(three_utterances_wav.path, dtype="float32")
    session = LiveSession(cfg)
    session.push(x, rate)
    session.stop(timeout=120)
    results = session.results()
    assert len(results) == 3
    for r in results:  # the end-pointer's utterance is the chunk: same span, one chunk
        (chunk,) = r.result.chunks
        assert chunk.start_s == pytest.approx(r.utterance.start_s, abs=1e-3)
        assert chunk.end_s == pytest.approx(r.utterance.end_s, abs=1e-3)
        assert r.result.settings["chunking"] == {"one_chunk": True}
    assert chunker_calls == []  # segmented once, by the end-pointer
    saved = session.session_result()
    assert [(c.start_s, c.end_s) for c in saved.chunks] == [(c.start_s, c.end_s) for r in results
                                                           for c in r.result.chunks]


def test_stop_saves_the_recording_as_flac_and_one_live_file_in_the_warehouse(tmp_path):
    from flows.live import save_session
    from warehouse import Warehouse

    cfg = live_config(db=str(tmp_path / "w.duckdb"), data_dir=str(tmp_path / "data"))
    session = LiveSession(cfg, analyze=fake_result)
    session.push_frames(webrtc_frames(resample_poly(utterances(2), 3, 1).astype(np.float32)))
    saved = save_session(session, cfg)
    assert saved.stored, saved.warehouse_error
    assert saved.path == (tmp_path / "data" / "live" / f"{session.id}.flac").resolve()
    assert sf.info(saved.path).format == "FLAC"
    wh = Warehouse(cfg.db)
    files = wh.read_df("SELECT file_id, path, source, run_id FROM files")
    assert len(files) == 1
    row = files.iloc[0]
    assert (row["source"], row["path"], int(row["file_id"])) == ("live", str(saved.path), saved.file_id)
    n_chunks = wh.read_df("SELECT count(*) AS n FROM chunks WHERE file_id = ?", [saved.file_id])["n"][0]
    assert n_chunks == len(saved.result.chunks) == 2
    runs = wh.read_df("SELECT source, status FROM runs WHERE run_id = ?", [int(row["run_id"])])
    assert list(runs.iloc[0]) == ["live", "completed"]


def test_stop_and_the_stream_end_hook_saving_at_once_store_the_session_once(tmp_path):
    from flows.live import save_session
    from warehouse import Warehouse

    cfg = live_config(db=str(tmp_path / "w.duckdb"), data_dir=str(tmp_path / "data"))
    session = LiveSession(cfg, analyze=fake_result)
    session.push(utterances(1), SR)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(save_session(session, cfg))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 2 and outcomes[0] is outcomes[1]
    assert len(Warehouse(cfg.db).read_df("SELECT file_id FROM runs JOIN files USING (run_id)")) == 1
    assert len(list((tmp_path / "data" / "live").iterdir())) == 1


# ---------------------------------------------------------------------------------------- emotions first, words after


def test_emotions_are_published_before_whisper_finishes_and_the_words_follow():
    gate = threading.Event()
    seen_while_transcribing = []

    def emotions_only(samples, sample_rate, name="x", **_):
        res = fake_result(samples, sample_rate, name)
        res.chunks[0].transcript, res.chunks[0].words = None, []
        return res

    def words(result, samples):
        seen_while_transcribing.append([r.transcribing for r in session.results()])
        assert gate.wait(10)
        result.chunks[0].transcript = f"{len(samples)} samples"
        result.chunks[0].words = [Word("samples", 0.2, 0.4)]
        return result

    session = LiveSession(live_config(), analyze=emotions_only, transcribe=words)
    session.push(utterances(1), SR)
    session.push(silence(1.0), SR)
    deadline = time.monotonic() + 10
    while not session.results() and time.monotonic() < deadline:
        time.sleep(0.01)
    (r,) = session.results()
    assert r.transcribing and r.result.chunks[0].transcript is None  # the emotions are out, the words not yet
    assert [ln.pending for ln in transcript_lines([r])] == [True]
    gate.set()
    session.stop()
    (r,) = session.results()
    assert not r.transcribing and r.transcribed_at >= r.done_at
    n = int(r.result.chunks[0].transcript.split()[0])
    assert n == pytest.approx(r.utterance.duration_s * SR, abs=2)  # Whisper got the utterance's audio
    assert r.result.chunks[0].words[0].start_s == pytest.approx(r.utterance.start_s + 0.2, abs=1e-3)
    assert seen_while_transcribing == [[True]]
    stats = session.stats()
    assert stats.transcript_latency_p95_s is not None and stats.transcript_latency_p95_s >= stats.latency_p95_s


def test_a_failed_transcription_keeps_the_emotions_and_is_reported():
    def broken(result, samples):
        raise RuntimeError("whisper fell over")

    session = LiveSession(live_config(), analyze=fake_result, transcribe=broken)
    session.push(utterances(2), SR)
    session.stop()
    results = session.results()
    assert len(results) == 2 and all(not r.transcribing for r in results)
    assert all(r.result.chunks[0].dominant in BASE_EMOTIONS for r in results)
    stats = session.stats()
    assert stats.errors == 0 and stats.transcript_errors == 2
    assert "transcription: RuntimeError: whisper fell over" in stats.last_transcript_error
    notes = session.session_result().notes
    assert any("words missing for 2 utterance(s) (emotions kept)" in n for n in notes)
    assert not any("failed to analyse" in n for n in notes)


def test_the_default_analyzer_transcribes_in_a_second_step(tiny_hubert_dir, tiny_whisper_path, ravdess_dir):
    from pipeline.audio import decode_audio

    clip = decode_audio(sorted((ravdess_dir / "Actor_02").glob("*.flac"))[0]).samples
    config = live_config(emotion_model=str(tiny_hubert_dir), whisper_model=str(tiny_whisper_path), language="en",
                         live_max_utterance_s=8.0)
    session = LiveSession(config)
    session.push(np.concatenate([clip, silence(1.0)]), SR)
    session.stop()
    results = session.results()
    assert results and all(r.transcribed_at is not None and r.transcribed_at >= r.done_at for r in results)
    assert all(c.language == "en" for r in results for c in r.result.chunks)
    assert results[0].result.timings["emotion_s"] > 0 and "transcribe_s" in results[0].result.timings


def test_a_slow_transcription_does_not_hold_back_the_next_utterances_emotions():
    release = threading.Event()

    def slow_words(result, samples):
        assert release.wait(20)
        return result

    session = LiveSession(live_config(), analyze=fake_result, transcribe=slow_words)
    session.push(utterances(3), SR)
    session.push(silence(1.0), SR)
    deadline = time.monotonic() + 10
    while len(session.results()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    results = session.results()
    assert len(results) == 3 and all(r.transcribing for r in results)  # all emotions out, words still pending
    release.set()
    session.stop()
    assert all(not r.transcribing and r.transcribed_at is not None for r in session.results())
