"""Audio for the dashboard: decode a stored file once (cached), slice chunks, make WAV bytes.

Decoding uses ``pipeline.audio.decode_audio`` (16 kHz mono float32). A file that moved or cannot be
decoded gives ``AudioUnavailable`` with the reason, so pages show the timeline without audio.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import streamlit as st

from pipeline import SAMPLE_RATE


@dataclass(frozen=True)
class AudioUnavailable:
    """Why a stored file's audio cannot be played."""

    path: str
    reason: str


@st.cache_resource(max_entries=2, show_spinner=False)
def _decode(path: str, mtime_ns: int, size: int):
    from pipeline import decode_audio

    return decode_audio(path, sample_rate=SAMPLE_RATE)


def load_audio(path: str):
    """The decoded file (``pipeline.audio.Audio``) or ``AudioUnavailable`` with a plain reason.

    Cached per (path, modification time, size): a changed file is decoded again. At most two decoded
    files are kept (an hour of audio is about 230 MB at 16 kHz float32).
    """
    from pipeline import AudioError

    if "://" in path:
        return AudioUnavailable(path, "not a local file")
    try:
        st_ = os.stat(path)
    except OSError as exc:
        return AudioUnavailable(path, f"the file is no longer readable at this path ({exc.strerror or exc})")
    try:
        return _decode(path, st_.st_mtime_ns, st_.st_size)
    except AudioError as exc:
        return AudioUnavailable(path, exc.reason)


@st.cache_data(max_entries=32, show_spinner=False)
def _envelope(path: str, mtime_ns: int, size: int, points: int):
    from dashboard.charts import envelope

    return envelope(_decode(path, mtime_ns, size).samples, SAMPLE_RATE, points=points)


def file_envelope(audio, points: int = 1200):
    """The min/max envelope (``charts.envelope``) of a loaded file, cached per file version."""
    st_ = os.stat(audio.path)
    return _envelope(str(audio.path), st_.st_mtime_ns, st_.st_size, points)


def chunk_samples(samples: np.ndarray, start_s: float, end_s: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The samples of ``[start_s, end_s)`` (clipped to the signal)."""
    a = max(0, int(round(start_s * sample_rate)))
    b = min(len(samples), int(round(end_s * sample_rate)))
    return np.asarray(samples[a:max(a, b)], dtype=np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV of a float signal in [-1, 1]."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), sample_rate, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()
