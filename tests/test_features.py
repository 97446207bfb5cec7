"""Acoustic features: values on signals whose truth is known, robustness to silence and tiny chunks."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from pipeline.features import (
    FEATURE_NAMES,
    FEATURE_UNITS,
    extract_features,
    extract_features_detailed,
    feature_tracks,
)

SR = 16000


def tone(f0: float, seconds: float = 1.0, amp: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * (np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 2 * f0 * t))).astype(np.float32)


def vowel(f1: float, f2: float, *, f0: float = 120.0, seconds: float = 1.0, jitter: float = 0.0,
          shimmer: float = 0.0, seed: int = 0) -> np.ndarray:
    """A synthetic vowel: a glottal pulse train (optionally perturbed) through five formant resonators."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    src = np.zeros(n)
    t = 0.0
    while t < n:
        src[int(t)] = 1.0 + shimmer * rng.uniform(-1, 1)
        t += SR / f0 * (1.0 + jitter * rng.uniform(-1, 1))
    src = lfilter([1.0], [1.0, -0.95], src)  # glottal roll-off
    y = src
    for f, bw in ((f1, 80.0), (f2, 100.0), (2800.0, 150.0), (3500.0, 200.0), (4500.0, 250.0)):
        r = math.exp(-math.pi * bw / SR)
        y = lfilter([1 - r], [1.0, -2 * r * math.cos(2 * math.pi * f / SR), r * r], y)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def lj_speech(speech_dir) -> np.ndarray:
    import librosa
    import soundfile as sf

    x, sr = sf.read(speech_dir / "LJ001-0001.wav", dtype="float32")
    return librosa.resample(x, orig_sr=sr, target_sr=SR).astype(np.float32)


def test_every_feature_is_returned_and_every_name_has_a_documented_unit():
    feats = extract_features(tone(150))
    assert list(feats) == list(FEATURE_NAMES)
    assert set(FEATURE_UNITS) == set(FEATURE_NAMES)
    assert {"pitch_mean_hz", "pitch_var_hz2", "rms_energy", "speaking_rate_syl_per_s", "spectral_centroid_hz",
            "zcr", "mfcc_1", "mfcc_13", "jitter_local", "shimmer_local", "f1_f2_ratio"} <= set(feats)


@pytest.mark.parametrize("f0", [110.0, 150.0, 240.0])
def test_pitch_mean_of_a_harmonic_tone_is_its_fundamental(f0):
    feats = extract_features(tone(f0))
    assert feats["pitch_mean_hz"] == pytest.approx(f0, rel=0.02)


def test_a_gliding_pitch_has_a_much_larger_pitch_variance_than_a_steady_one():
    t = np.arange(SR) / SR
    glide = (0.3 * np.sin(2 * np.pi * (120 * t + 60 * t**2))).astype(np.float32)  # 120 -> 240 Hz
    assert extract_features(glide)["pitch_var_hz2"] > 100 * max(extract_features(tone(150))["pitch_var_hz2"], 1.0)


def test_doubling_the_amplitude_doubles_rms_energy_and_leaves_pitch_unchanged():
    quiet, loud = extract_features(tone(150, amp=0.1)), extract_features(tone(150, amp=0.2))
    assert loud["rms_energy"] == pytest.approx(2 * quiet["rms_energy"], rel=1e-3)
    assert loud["pitch_mean_hz"] == pytest.approx(quiet["pitch_mean_hz"], rel=0.01)


def test_spectral_centroid_and_zero_crossing_rate_rise_with_frequency():
    low, high = extract_features(tone(200)), extract_features(tone(2000))
    assert high["spectral_centroid_hz"] > 3 * low["spectral_centroid_hz"]
    assert high["zcr"] > 3 * low["zcr"]


def test_silence_gives_nan_with_a_logged_reason_and_no_exception(caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.features"):
        fs = extract_features_detailed(np.zeros(SR, np.float32))
    assert fs.values["rms_energy"] == 0.0
    for name in ("pitch_mean_hz", "speaking_rate_syl_per_s", "mfcc_1", "jitter_local", "f1_f2_ratio"):
        assert math.isnan(fs.values[name])
        assert "silence" in fs.reasons[name]
    assert "silence" in caplog.text


@pytest.mark.parametrize("n_samples", [0, 1, 40, 800])
def test_very_short_chunks_give_nan_for_what_cannot_be_measured_and_never_raise(n_samples):
    x = np.random.default_rng(0).normal(size=n_samples).astype(np.float32) * 0.1
    fs = extract_features_detailed(x)
    assert set(fs.values) == set(FEATURE_NAMES)
    assert math.isnan(fs.values["pitch_mean_hz"]) and fs.reasons["pitch_mean_hz"]
    if n_samples:
        assert fs.values["rms_energy"] > 0


def test_unvoiced_noise_has_no_pitch_but_has_spectral_features():
    noise = np.random.default_rng(1).normal(size=SR).astype(np.float32) * 0.1
    fs = extract_features_detailed(noise)
    assert math.isnan(fs.values["pitch_mean_hz"]) and "voiced" in fs.reasons["pitch_mean_hz"]
    assert fs.values["spectral_centroid_hz"] > 2000
    assert np.isfinite(fs.values["mfcc_1"])


def test_jitter_is_higher_for_an_irregular_pulse_train():
    steady = extract_features(vowel(700, 1200, jitter=0.0))["jitter_local"]
    shaky = extract_features(vowel(700, 1200, jitter=0.04))["jitter_local"]
    assert shaky > 3 * steady
    assert 0.005 < shaky < 0.1


def test_shimmer_is_higher_for_uneven_pulse_amplitudes():
    steady = extract_features(vowel(700, 1200, shimmer=0.0))["shimmer_local"]
    uneven = extract_features(vowel(700, 1200, shimmer=0.5))["shimmer_local"]
    assert uneven > 2 * steady


def test_f1_f2_ratio_matches_the_synthesised_formants_of_open_and_close_vowels():
    a = extract_features(vowel(750, 1200))["f1_f2_ratio"]  # /a/
    i = extract_features(vowel(300, 2300))["f1_f2_ratio"]  # /i/
    assert a == pytest.approx(750 / 1200, rel=0.1)
    assert i == pytest.approx(300 / 2300, rel=0.1)


def test_speaking_rate_of_read_speech_is_plausible_and_rises_when_the_speech_is_sped_up(speech_dir):
    import librosa

    x = lj_speech(speech_dir)  # ~40 syllables in 9.7 s
    rate = extract_features(x)["speaking_rate_syl_per_s"]
    faster = extract_features(librosa.effects.time_stretch(x, rate=1.5))["speaking_rate_syl_per_s"]
    assert 2.5 < rate < 6.5
    assert faster > 1.2 * rate


def test_real_speech_has_every_feature_measured(speech_dir):
    feats = extract_features(lj_speech(speech_dir))
    missing = [k for k, v in feats.items() if not np.isfinite(v)]
    assert missing == []
    assert 150 < feats["pitch_mean_hz"] < 300  # LJ Speech: one female reader


def test_a_sub_range_summary_describes_only_that_range():
    x = np.concatenate([tone(150), tone(250)])
    tracks = feature_tracks(x)
    assert tracks.summarize(0.0, 1.0).values["pitch_mean_hz"] == pytest.approx(150, rel=0.03)
    assert tracks.summarize(1.0, 2.0).values["pitch_mean_hz"] == pytest.approx(250, rel=0.03)
    whole = tracks.summarize().values
    assert whole == pytest.approx(extract_features(x), nan_ok=True)


def test_other_sample_rates_are_resampled_before_measuring():
    assert extract_features(tone(150, sr=44100), 44100)["pitch_mean_hz"] == pytest.approx(150, rel=0.02)
