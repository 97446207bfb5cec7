"""Recording channels: fixed test conditions and random training augmentation (audiomentations).

Analysts' recordings are calls and rooms, not a studio. Two fixed **test channels** let cross-validation ask
how a head trained on studio clips holds on a worse channel:

- ``telephone``: white noise at 20 dB SNR, then a 300–3400 Hz band (the narrowband telephone channel);
- ``noise10``: pink noise at 10 dB SNR (a noisy room, full band).

:func:`augment` makes a *random* training copy: coloured noise at 5–30 dB SNR, band limits, gain. Its ranges
contain the test channels, so a gain measured on them is a gain on these channels, not proof for others
(``bench.whisper_head_cv --augment`` and docs/whisper_emotion.md say so). Every transform is seeded: the same
clip and seed give the same samples, so the encoder statistics cache (keyed on the samples) is reused.
"""

from __future__ import annotations

import zlib

import numpy as np

from pipeline.runtime import SAMPLE_RATE

#: Test channels :func:`channel` knows.
CHANNELS = ("telephone", "noise10")


def _compose(name: str):
    from audiomentations import (AddColorNoise, AddGaussianSNR, Compose, Gain, HighPassFilter, LowPassFilter,
                                 OneOf)

    if name == "telephone":
        return Compose([  # noise at the caller's end, then the line's band: the noise is band-limited too
            AddGaussianSNR(min_snr_db=20.0, max_snr_db=20.0, p=1.0),
            HighPassFilter(min_cutoff_freq=300.0, max_cutoff_freq=300.0, min_rolloff=24, max_rolloff=24, p=1.0),
            LowPassFilter(min_cutoff_freq=3400.0, max_cutoff_freq=3400.0, min_rolloff=24, max_rolloff=24, p=1.0),
        ])
    if name == "noise10":
        return Compose([AddColorNoise(min_snr_db=10.0, max_snr_db=10.0, min_f_decay=-3.01, max_f_decay=-3.01,
                                      p=1.0)])
    if name == "augment":
        return Compose([  # noise, then a channel's band (which limits the noise too), then gain
            OneOf([
                AddGaussianSNR(min_snr_db=5.0, max_snr_db=30.0, p=1.0),
                AddColorNoise(min_snr_db=5.0, max_snr_db=30.0, p=1.0),
            ], p=0.8),
            OneOf([
                Compose([HighPassFilter(min_cutoff_freq=150.0, max_cutoff_freq=500.0, p=1.0),
                         LowPassFilter(min_cutoff_freq=2800.0, max_cutoff_freq=5000.0, p=1.0)]),
                LowPassFilter(min_cutoff_freq=4000.0, max_cutoff_freq=7500.0, p=1.0),
            ], p=0.6),
            Gain(min_gain_db=-12.0, max_gain_db=6.0, p=0.5),
        ])
    raise ValueError(f"unknown channel {name!r}: expected one of {CHANNELS} or 'augment'")


def _seeded(x: np.ndarray, name: str, seed: int) -> np.ndarray:
    import random

    samples = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1))
    state = (random.getstate(), np.random.get_state())
    # audiomentations draws from numpy's and Python's global generators: seed both, then put them back.
    mix = zlib.crc32(samples[:4096].tobytes()) ^ (seed * 2654435761 % 2**32)
    random.seed(mix)
    np.random.seed(mix % 2**32)
    try:
        out = _compose(name)(samples=samples, sample_rate=SAMPLE_RATE)
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
    return np.clip(np.asarray(out, dtype=np.float32), -1.0, 1.0)


def channel(x: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """``x`` (16 kHz) through test channel ``name`` (:data:`CHANNELS`); deterministic per clip and seed."""
    if name not in CHANNELS:
        raise ValueError(f"unknown channel {name!r}: expected one of {CHANNELS}")
    return _seeded(x, name, seed)


def augment(x: np.ndarray, seed: int) -> np.ndarray:
    """A random training copy of ``x`` (16 kHz): band limits, noise, gain (see the module text)."""
    return _seeded(x, "augment", seed)
