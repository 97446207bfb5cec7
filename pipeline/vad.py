"""Speech probabilities from the Silero voice-activity model that faster-whisper ships.

faster-whisper (already the project's Whisper runtime) carries the Silero VAD v6 network as ONNX
(``faster_whisper/assets/silero_vad_v6.onnx``, MIT) and runs it with onnxruntime: no torch, no
download, about 3 ms of CPU per second of audio. The ``silero-vad`` package ships the same model but
its audio extras pull torchaudio, which this project cannot install (see README, Dependencies).

The model scores 32 ms windows (512 samples at 16 kHz), each seen with the 64 samples before it, and
keeps an LSTM state from window to window. :func:`speech_probabilities` feeds it blocks of
:data:`BLOCK_WINDOWS` windows carrying that state and context across blocks, so a long file costs a
few tens of MB beyond its samples, and gives the same numbers as faster-whisper's one-shot call.

:func:`speech_runs` turns probabilities into speech runs with Silero's hysteresis: a run starts at a
window at or above ``threshold`` and lasts while the probability stays at or above
``threshold - 0.15``. Joining, padding and length rules are the chunker's (``pipeline.chunking``).

Public API: :func:`speech_probabilities`, :func:`speech_runs`, :class:`VadUnavailable`, :data:`WINDOW_S`.
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.runtime import SAMPLE_RATE

logger = logging.getLogger(__name__)

#: Samples per scored window, and samples of context before each.
WINDOW = 512
CONTEXT = 64
#: Seconds per scored window (32 ms).
WINDOW_S = WINDOW / SAMPLE_RATE
#: Windows per onnxruntime call (faster-whisper's own batch size; 23 MB of input per call).
BLOCK_WINDOWS = 10000
#: How far below the start threshold a run may dip and still continue (Silero's default).
HYSTERESIS = 0.15


class VadUnavailable(RuntimeError):
    """The VAD model cannot run here (package missing or model not loadable); the reason says which."""


def _model():
    try:
        from faster_whisper.vad import get_vad_model
    except ImportError as exc:
        raise VadUnavailable(f"faster-whisper is not installed ({exc}); pip install 'faster-whisper>=1.1,<2'") from exc
    try:
        return get_vad_model()  # lru-cached by faster-whisper: one session per process
    except Exception as exc:  # noqa: BLE001 - onnxruntime missing or the asset unreadable
        raise VadUnavailable(f"the Silero VAD model could not be loaded: {exc}") from exc


def speech_probabilities(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Silero's speech probability (0-1) of each 32 ms window of a mono signal.

    Args:
        samples: mono float signal in [-1, 1].
        sample_rate: its rate in Hz (resampled to 16 kHz when different).

    Returns:
        float32 array, one value per window of :data:`WINDOW_S` seconds from the signal start (the
        last window zero-padded); empty for an empty signal.

    Raises:
        VadUnavailable: faster-whisper or onnxruntime missing, or the model file unreadable.
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if sample_rate != SAMPLE_RATE:
        import librosa

        x = librosa.resample(x, orig_sr=sample_rate, target_sr=SAMPLE_RATE).astype(np.float32)
    n_win = -(-len(x) // WINDOW)
    out = np.empty(n_win, dtype=np.float32)
    if not n_win:
        return out
    session = _model().session
    h = np.zeros((1, 1, 128), dtype=np.float32)
    c = np.zeros((1, 1, 128), dtype=np.float32)
    tail = np.zeros(CONTEXT, dtype=np.float32)
    for w0 in range(0, n_win, BLOCK_WINDOWS):
        block = x[w0 * WINDOW:(w0 + BLOCK_WINDOWS) * WINDOW]
        if len(block) % WINDOW:
            block = np.pad(block, (0, WINDOW - len(block) % WINDOW))
        win = block.reshape(-1, WINDOW)
        context = np.concatenate([tail[None], win[:-1, -CONTEXT:]])
        try:
            probs, h, c = session.run(None, {"input": np.ascontiguousarray(np.concatenate([context, win], 1)),
                                             "h": h, "c": c})
        except Exception as exc:  # noqa: BLE001 - an onnxruntime failure: the caller falls back
            raise VadUnavailable(f"the Silero VAD failed on this signal: {exc}") from exc
        out[w0:w0 + len(win)] = np.asarray(probs, dtype=np.float32).reshape(-1)
        tail = win[-1, -CONTEXT:].copy()
    return out


def speech_runs(probs: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """[start, end) window-index runs of speech, by hysteresis on ``threshold`` (see module doc)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"config option 'vad_threshold': {threshold} is not a probability between 0 and 1")
    low = max(threshold - HYSTERESIS, 0.01)
    p = np.asarray(probs).reshape(-1)
    starts = np.flatnonzero(p >= threshold)
    stops = np.flatnonzero(p < low)
    runs: list[tuple[int, int]] = []
    k = 0
    while k < len(starts):
        start = int(starts[k])
        j = int(np.searchsorted(stops, start))
        end = int(stops[j]) if j < len(stops) else len(p)
        runs.append((start, end))
        k = int(np.searchsorted(starts, end))
    return runs
