"""Silence chunking: speech regions with start/end seconds, merged when too short, split when too long."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from pipeline.audio import decode_audio
from pipeline.chunking import split_on_silence
from pipeline.config import Config
from tests.fixtures_audio import speech_like

SR = 16000
CFG = Config()
KEEP_S = CFG.keep_silence_ms / 1000


def _loud_span(x: np.ndarray, below_peak_db: float = 25.0) -> tuple[float, float]:
    """First and last time (s) where the 20 ms level is within ``below_peak_db`` of the loudest moment."""
    n = len(x) // 320 * 320
    level = 10 * np.log10(np.mean(x[:n].reshape(-1, 320) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(level > level.max() - below_peak_db)
    return loud[0] * 0.02, (loud[-1] + 1) * 0.02


def _covers(chunk, span, tol=0.03) -> bool:
    return chunk.start_s <= span[0] + tol and chunk.end_s >= span[1] - tol


@pytest.fixture(scope="module")
def three(three_utterances_wav):
    return three_utterances_wav, decode_audio(three_utterances_wav).samples


def test_a_ravdess_clip_gives_one_chunk_covering_its_speech_without_the_silence_around_it(ravdess_clips):
    for clip in ravdess_clips:
        x = decode_audio(clip.path).samples
        chunks = split_on_silence(x, SR, CFG)
        assert len(chunks) == 1, clip
        assert _covers(chunks[0], _loud_span(x)), clip
        assert chunks[0].duration_s < len(x) / SR - 0.5, clip  # leading/trailing silence trimmed


def test_three_utterances_separated_by_silence_give_three_chunks_split_at_the_gaps(three):
    joined, x = three
    chunks = split_on_silence(x, SR, CFG)
    assert len(chunks) == 3
    for chunk, (start, end) in zip(chunks, joined.clips):
        assert start - 1e-3 <= chunk.start_s and chunk.end_s <= end + KEEP_S
        a, b = _loud_span(x[int(start * SR):int(end * SR)])
        assert _covers(chunk, (start + a, start + b))
    for (g0, g1), before, after in zip(joined.gaps, chunks, chunks[1:]):
        assert before.end_s <= g0 + KEEP_S and after.start_s >= g1 - KEEP_S


def test_chunks_are_in_order_and_do_not_overlap(three):
    chunks = split_on_silence(three[1], SR, CFG)
    assert all(a.end_s <= b.start_s for a, b in zip(chunks, chunks[1:]))
    assert all(c.start_s < c.end_s for c in chunks)


def test_a_minimum_silence_longer_than_the_pauses_keeps_the_utterances_together(three):
    joined, x = three
    chunks = split_on_silence(x, SR, CFG.replace(min_silence_ms=6000))
    assert len(chunks) == 1
    assert chunks[0].start_s < joined.gaps[0][0] and chunks[0].end_s > joined.gaps[-1][1]


def test_seventy_seconds_of_continuous_speech_give_chunks_of_at_most_thirty_seconds():
    x = speech_like(70.0, SR, seed=1)
    chunks = split_on_silence(x, SR, CFG)
    assert len(chunks) >= 3
    assert all(c.duration_s <= CFG.max_chunk_s for c in chunks)
    assert all(c.duration_s >= CFG.min_chunk_s for c in chunks)
    covered = sum(c.duration_s for c in chunks)
    assert covered > 0.95 * 70.0  # the pieces tile the speech, nothing dropped


def test_max_chunk_length_comes_from_the_config():
    x = speech_like(40.0, SR, seed=2)
    chunks = split_on_silence(x, SR, CFG.replace(max_chunk_s=8.0))
    assert len(chunks) >= 5 and all(c.duration_s <= 8.0 for c in chunks)


def test_a_long_chunk_is_cut_at_its_quietest_moment():
    x = speech_like(45.0, SR, seed=3)
    dip = slice(int(21.0 * SR), int(21.3 * SR))  # a 300 ms breath pause: shorter than min_silence_ms
    x[dip] *= 0.01
    chunks = split_on_silence(x, SR, CFG)
    assert len(chunks) == 2
    assert 21.0 - 0.05 <= chunks[0].end_s <= 21.3 + 0.05
    assert chunks[1].start_s == pytest.approx(chunks[0].end_s, abs=0.011)


@pytest.mark.parametrize("name", ["silence_only", "noise_only", "clip_0_1s"])
def test_files_without_speech_give_no_chunks(name, no_speech_inputs):
    assert split_on_silence(decode_audio(no_speech_inputs[name]).samples, SR, CFG) == []


def test_digital_silence_and_an_empty_signal_give_no_chunks():
    assert split_on_silence(np.zeros(10 * SR, dtype=np.float32), SR, CFG) == []
    assert split_on_silence(np.zeros(0, dtype=np.float32), SR, CFG) == []


def test_a_dc_offset_does_not_change_the_chunks(ravdess_clips):
    x = decode_audio(ravdess_clips[3].path).samples
    x = 0.5 * x / np.max(np.abs(x))
    plain = split_on_silence(x, SR, CFG)
    shifted = split_on_silence(x + np.float32(0.4), SR, CFG)
    assert len(shifted) == len(plain) == 1
    assert shifted[0].start_s == pytest.approx(plain[0].start_s, abs=0.02)
    assert shifted[0].end_s == pytest.approx(plain[0].end_s, abs=0.02)


def test_a_very_quiet_recording_gives_the_same_chunks(three):
    joined, x = three
    quiet = x * np.float32(10 ** (-30 / 20))  # speech peaks between -70 and -54 dBFS
    chunks = split_on_silence(quiet, SR, CFG)
    assert len(chunks) == len(split_on_silence(x, SR, CFG)) == 3
    for chunk, (start, end) in zip(chunks, joined.clips):
        a, b = _loud_span(x[int(start * SR):int(end * SR)])
        assert _covers(chunk, (start + a, start + b))


def test_speech_over_steady_background_noise_is_still_found(three):
    joined, x = three
    rng = np.random.default_rng(0)
    hiss = np.float32(10 ** (-60 / 20)) * rng.standard_normal(len(x)).astype(np.float32)
    chunks = split_on_silence(x + hiss, SR, CFG)
    assert len(chunks) == 3
    for chunk, (start, end) in zip(chunks, joined.clips):
        a, b = _loud_span(x[int(start * SR):int(end * SR)], below_peak_db=20)
        assert _covers(chunk, (start + a, start + b))


def _burst(seconds: float, seed: int) -> np.ndarray:
    return speech_like(seconds, SR, seed=seed)


def test_a_short_utterance_close_to_another_is_merged_into_it():
    pause = np.zeros(int(0.8 * SR), dtype=np.float32)
    x = np.concatenate([pause, _burst(3.0, 4), pause, _burst(0.4, 5), pause])
    chunks = split_on_silence(x, SR, CFG)
    assert len(chunks) == 1
    assert chunks[0].start_s < 0.85 and chunks[0].end_s > 0.8 + 3.0 + 0.8 + 0.35


def test_a_short_utterance_far_from_others_stays_its_own_chunk():
    far = np.zeros(5 * SR, dtype=np.float32)
    x = np.concatenate([far, _burst(3.0, 6), far, _burst(0.6, 7), far])
    chunks = split_on_silence(x, SR, CFG)
    assert len(chunks) == 2
    assert chunks[1].start_s > 5 + 3 + 4.5


def test_an_isolated_click_is_not_a_chunk():
    x = np.zeros(6 * SR, dtype=np.float32)
    x[3 * SR:3 * SR + 80] = 0.8  # a 5 ms click
    assert split_on_silence(x, SR, CFG) == []


def test_chunk_times_scale_with_the_sample_rate():
    x16 = np.concatenate([np.zeros(SR), _burst(2.0, 8), np.zeros(SR)])
    x8 = x16[::2].copy()
    c16, c8 = split_on_silence(x16, SR, CFG), split_on_silence(x8, SR // 2, CFG)
    assert len(c16) == len(c8) == 1
    assert c8[0].start_s == pytest.approx(c16[0].start_s, abs=0.02)
    assert c8[0].end_s == pytest.approx(c16[0].end_s, abs=0.02)


def test_chunking_a_long_recording_needs_little_memory_beyond_the_signal():
    x = np.tile(speech_like(60.0, SR, seed=9), 20)  # 20 minutes
    tracemalloc.start()
    try:
        chunks = split_on_silence(x, SR, CFG)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(c.duration_s <= CFG.max_chunk_s for c in chunks)
    assert peak < 0.25 * x.nbytes


def test_a_stereo_array_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="mono"):
        split_on_silence(np.zeros((2, SR), dtype=np.float32), SR, CFG)
