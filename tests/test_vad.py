"""Voice-activity chunking: the Silero model faster-whisper ships, its hysteresis, and the energy fallback."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import vad
from pipeline.audio import decode_audio
from pipeline.chunking import chunk_speech, split_on_silence, split_on_speech_activity
from pipeline.config import Config

SR = 16000
CFG = Config()


def _loud_span(x: np.ndarray, below_peak_db: float = 25.0) -> tuple[float, float]:
    n = len(x) // 320 * 320
    level = 10 * np.log10(np.mean(x[:n].reshape(-1, 320) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(level > level.max() - below_peak_db)
    return loud[0] * 0.02, (loud[-1] + 1) * 0.02


def _pink(n: int, seed: int) -> np.ndarray:
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spec[1:] /= np.sqrt(np.arange(1, len(spec)))
    spec[0] = 0
    return np.fft.irfft(spec, n)


def _at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    speech = clean[np.abs(clean) > 0.01 * np.abs(clean).max()]
    gain = np.sqrt(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return (clean + gain * noise).astype(np.float32)


@pytest.fixture(scope="module")
def three(three_utterances_wav):
    return three_utterances_wav, decode_audio(three_utterances_wav).samples


def test_probabilities_match_faster_whispers_own_call_across_block_boundaries(three, monkeypatch):
    from faster_whisper.vad import get_vad_model

    x = three[1]
    padded = np.pad(x, (0, vad.WINDOW - len(x) % vad.WINDOW))
    reference = get_vad_model()(padded.copy())
    monkeypatch.setattr(vad, "BLOCK_WINDOWS", 37)  # many blocks: the LSTM state and context must carry over
    ours = vad.speech_probabilities(x, SR)
    assert ours.shape == reference.shape
    # faster-whisper zeroes the last 64 samples of its last window; every other window must agree
    np.testing.assert_allclose(ours[:-1], reference[:-1], atol=1e-5)
    assert ours.max() > 0.9 and ours.min() < 0.1  # speech and silence both present


def test_speech_continues_through_a_dip_above_the_lower_threshold_and_ends_below_it():
    p = np.array([0.1, 0.6, 0.7, 0.4, 0.7, 0.3, 0.1, 0.9, 0.9])
    assert vad.speech_runs(p, 0.5) == [(1, 5), (7, 9)]  # 0.4 >= 0.5 - 0.15 continues, 0.3 ends
    assert vad.speech_runs(np.zeros(5), 0.5) == []
    with pytest.raises(ValueError, match="vad_threshold"):
        vad.speech_runs(p, 1.5)


def test_three_utterances_in_pink_noise_at_5_db_give_one_vad_chunk_each(three):
    joined, x = three
    noisy = _at_snr(x, _pink(len(x), seed=1), 5.0)
    chunks = split_on_speech_activity(noisy, SR, CFG)
    assert len(chunks) == 3
    for chunk, (start, end) in zip(chunks, joined.clips):
        a, b = _loud_span(x[int(start * SR):int(end * SR)])
        assert chunk.start_s <= start + a + 0.15 and chunk.end_s >= start + b - 0.25
        assert start - 0.2 <= chunk.start_s and chunk.end_s <= end + 0.2  # not into the next pause


def test_noise_bursts_in_the_pauses_are_not_speech_to_the_vad_but_are_to_the_energy_splitter(three):
    joined, x = three
    noisy = x.copy()
    pink = _pink(len(x), seed=2)
    speech_rms = np.sqrt(np.mean(x[np.abs(x) > 0.01 * np.abs(x).max()] ** 2))
    bursts = []
    for g0, g1 in joined.gaps:  # a 1 s burst (a door, traffic) as loud as the speech, mid-pause
        a, b = int(((g0 + g1) / 2 - 0.5) * SR), int(((g0 + g1) / 2 + 0.5) * SR)
        noisy[a:b] += (speech_rms * pink[a:b] / np.sqrt(np.mean(pink[a:b] ** 2))).astype(np.float32)
        bursts.append((a / SR, b / SR))

    def hits_a_burst(chunks):
        return any(c.start_s < b1 - 0.2 and c.end_s > b0 + 0.2 for c in chunks for b0, b1 in bursts)

    vad_chunks = split_on_speech_activity(noisy, SR, CFG)
    assert len(vad_chunks) == 3 and not hits_a_burst(vad_chunks)
    assert hits_a_burst(split_on_silence(noisy, SR, CFG))  # a level rule cannot tell loud noise from voice
    assert split_on_speech_activity(np.zeros(3 * SR, dtype=np.float32), SR, CFG) == []


def test_a_44k_signal_is_chunked_at_the_same_times_as_its_16k_original(ravdess_clips):
    import librosa

    x = decode_audio(ravdess_clips[0].path).samples
    y = librosa.resample(x, orig_sr=SR, target_sr=44100)
    a, b = split_on_speech_activity(x, SR, CFG), split_on_speech_activity(y, 44100, CFG)
    assert len(a) == len(b) == 1
    assert a[0].start_s == pytest.approx(b[0].start_s, abs=0.07) and a[0].end_s == pytest.approx(b[0].end_s, abs=0.07)


def test_vad_chunks_respect_the_maximum_chunk_length(three):
    chunks = split_on_speech_activity(three[1], SR, CFG.replace(min_silence_ms=5000, max_chunk_s=4.0))
    assert len(chunks) >= 2 and all(c.duration_s <= 4.0 for c in chunks)


def test_chunk_speech_uses_the_vad_by_default_and_energy_on_request(three):
    assert chunk_speech(three[1], SR, CFG).method == "vad"
    energy = chunk_speech(three[1], SR, CFG.replace(chunker="energy"))
    assert energy.method == "energy" and energy.note is None
    assert energy.chunks == split_on_silence(three[1], SR, CFG)
    with pytest.raises(ValueError, match="'chunker'.*vad, energy"):
        chunk_speech(three[1], SR, CFG.replace(chunker="webrtc"))


def test_without_the_vad_model_chunking_falls_back_to_energy_and_says_why(three, monkeypatch, caplog):
    def missing():
        raise vad.VadUnavailable("faster-whisper is not installed")

    monkeypatch.setattr(vad, "_model", missing)
    with caplog.at_level("WARNING", logger="pipeline.chunking"):
        got = chunk_speech(three[1], SR, CFG)
    assert got.method == "energy"
    assert got.chunks == split_on_silence(three[1], SR, CFG)
    assert "faster-whisper is not installed" in got.note and "energy" in got.note
    assert any("faster-whisper is not installed" in r.getMessage() for r in caplog.records)
