"""Split a recording on silence into speech chunks the emotion model and Whisper can take whole.

How a frame is judged (10 ms hop, 30 ms frames): its RMS after removing the frame's own mean, so a DC
offset or a slow drift does not count as sound. A frame is speech when its level is above all of

* ``config.silence_threshold_db`` below the file's loudest frame (relative, so quiet recordings work),
* :data:`NOISE_MARGIN_DB` above the file's noise floor (the 10th percentile of non-digital-silence
  frames), so a steady hum or hiss, or a file of pure low-level noise, is not speech,
* :data:`ABS_FLOOR_DBFS`, so dither and near-digital silence never are.

Speech runs closer than ``min_silence_ms`` are joined, padded with ``keep_silence_ms`` of context,
chunks shorter than ``min_chunk_s`` are merged into the nearer neighbour (across a pause of at most
:data:`MAX_MERGE_GAP_S`, never beyond ``max_chunk_s``), a lone chunk under :data:`MIN_LONE_CHUNK_S` is
dropped, and chunks longer than ``max_chunk_s`` are cut at the quietest moment of the allowed range so
that each piece is at most ``max_chunk_s`` long. A file with no speech gives no chunks.

The frame energies are computed from per-hop sums (no frame matrix, no copy of the signal), so a long
file costs a few MB beyond its samples.

:func:`split_on_speech_activity` finds the speech runs with the Silero VAD model instead
(``pipeline.vad``): a 32 ms window is speech by the model's probability (``config.vad_threshold``),
runs closer than ``min_silence_ms`` are joined, runs shorter than ``vad_min_speech_ms`` dropped, and
the same padding, merging and splitting rules follow. Noise that is loud but not voice (traffic, fans,
music) is what it is better at (``python -m bench.vad_bench``). :func:`chunk_speech` picks one by
``config.chunker`` and falls back to the energy splitter, saying why, when the VAD cannot run.

Public API: :func:`chunk_speech`, :class:`Chunking`, :func:`split_on_silence`,
:func:`split_on_speech_activity`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from pipeline.config import Config
from pipeline.types import Chunk

logger = logging.getLogger(__name__)

#: Hop between frames (s).
HOP_S = 0.010
#: Frame length in hops (30 ms frames).
FRAME_HOPS = 3
#: Frames within this many dB above the noise floor are not speech.
NOISE_MARGIN_DB = 10.0
#: Frames below this level (dB re full scale RMS) are never speech.
ABS_FLOOR_DBFS = -85.0
#: Frames below this level count as digital silence and are left out of the noise-floor estimate.
DIGITAL_SILENCE_DBFS = -130.0
#: Percentile of frame levels taken as the noise floor.
NOISE_PERCENTILE = 10.0
#: A short chunk is merged only across a pause up to this long (s); otherwise it stands alone.
MAX_MERGE_GAP_S = 2.0
#: A chunk that is still shorter than this after merging is dropped (s).
MIN_LONE_CHUNK_S = 0.25
#: Window over which the level is smoothed when choosing where to cut a long chunk (s).
CUT_SMOOTH_S = 0.25
#: Preference (dB) for cutting later in the allowed range (fewer, longer pieces) at equal quietness.
CUT_LATE_BIAS_DB = 1.0
#: The values ``config.chunker`` may take.
CHUNKERS = ("vad", "energy")


@dataclass(frozen=True)
class Chunking:
    """What :func:`chunk_speech` found and how."""

    chunks: list[Chunk]
    method: str
    """The chunker that produced ``chunks``: 'vad' or 'energy'."""
    note: str | None = None
    """Why another chunker than the configured one ran (for the user), else None."""


def chunk_speech(samples: np.ndarray, sample_rate: int, config: Config | None = None) -> Chunking:
    """Speech chunks by ``config.chunker``; 'vad' falls back to the energy splitter when the VAD cannot run.

    Raises:
        ValueError: ``config.chunker`` is not one of :data:`CHUNKERS` (naming the option), or a bad signal.
    """
    config = config or Config()
    if config.chunker not in CHUNKERS:
        raise ValueError(f"config option 'chunker': {config.chunker!r} is not one of {', '.join(CHUNKERS)}")
    if config.chunker == "vad":
        from pipeline.vad import VadUnavailable

        try:
            return Chunking(split_on_speech_activity(samples, sample_rate, config), "vad")
        except VadUnavailable as exc:
            note = f"voice-activity chunking unavailable ({exc}): chunked on energy instead"
            logger.warning(note)
            return Chunking(split_on_silence(samples, sample_rate, config), "energy", note)
    return Chunking(split_on_silence(samples, sample_rate, config), "energy")



def _framing(samples: np.ndarray, sample_rate: int, caller: str) -> tuple[np.ndarray | None, int, float]:
    """The signal as a 1-D array, the analysis hop in samples and the duration in s; the array is None when
    the signal is shorter than one analysis frame (no chunk can come of it)."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"{caller} needs a mono 1-D signal, got shape {x.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    hop = max(1, int(round(HOP_S * sample_rate)))
    duration = len(x) / sample_rate
    return (None if len(x) < hop * FRAME_HOPS else x), hop, duration

def split_on_silence(samples: np.ndarray, sample_rate: int, config: Config | None = None) -> list[Chunk]:
    """Speech chunks of a mono signal, in seconds from its start.

    Args:
        samples: mono signal (float, any scale; 16 kHz float32 in [-1, 1] in the pipeline).
        sample_rate: rate of ``samples`` in Hz.
        config: uses ``silence_threshold_db``, ``min_silence_ms``, ``keep_silence_ms``,
            ``min_chunk_s`` and ``max_chunk_s`` (defaults when None).

    Returns:
        Chunks in time order, not overlapping, each at most ``config.max_chunk_s`` long;
        an empty list when the signal holds no speech (silence, steady noise, too short).
    """
    config = config or Config()
    x, hop, duration = _framing(samples, sample_rate, "split_on_silence")
    if x is None:
        return []
    level_db = _frame_levels_db(x, hop)
    threshold = _threshold_db(level_db, config.silence_threshold_db)
    speech = level_db > threshold
    if not speech.any():
        logger.debug("no frame above %.1f dBFS: no speech", threshold)
        return []
    hop_s = hop / sample_rate
    runs = _runs(speech, max_gap=int(round(config.min_silence_ms / 1000 / hop_s)))
    return _to_chunks([(a * hop_s, b * hop_s) for a, b in runs], level_db, hop_s, duration, config)


def split_on_speech_activity(samples: np.ndarray, sample_rate: int, config: Config | None = None) -> list[Chunk]:
    """Speech chunks of a mono signal found by the Silero VAD, in seconds from its start.

    Args:
        samples: mono signal (float in [-1, 1]); any rate (the VAD runs at 16 kHz).
        sample_rate: rate of ``samples`` in Hz.
        config: uses ``vad_threshold``, ``vad_min_speech_ms``, ``min_silence_ms``, ``keep_silence_ms``,
            ``min_chunk_s`` and ``max_chunk_s`` (defaults when None).

    Returns:
        Chunks as :func:`split_on_silence` gives them (ordered, not overlapping, at most ``max_chunk_s``);
        empty when the model hears no voice.

    Raises:
        pipeline.vad.VadUnavailable: the VAD model cannot run here.
    """
    from pipeline import vad

    config = config or Config()
    x, hop, duration = _framing(samples, sample_rate, "split_on_speech_activity")
    if x is None:
        return []
    probs = vad.speech_probabilities(x, sample_rate)
    win = vad.WINDOW_S
    spans: list[tuple[float, float]] = []
    max_gap = config.min_silence_ms / 1000
    for a, b in vad.speech_runs(probs, config.vad_threshold):
        a_s, b_s = a * win, min(b * win, duration)
        if spans and a_s - spans[-1][1] < max_gap:
            spans[-1] = (spans[-1][0], b_s)
        else:
            spans.append((a_s, b_s))
    spans = [s for s in spans if s[1] - s[0] >= config.vad_min_speech_ms / 1000]
    if not spans:
        return []
    return _to_chunks(spans, _frame_levels_db(x, hop), hop / sample_rate, duration, config)


# ------------------------------------------------------------------------------------------ helpers


def _to_chunks(runs_s: list[tuple[float, float]], level_db: np.ndarray, hop_s: float, duration: float,
               config: Config) -> list[Chunk]:
    """Speech runs (s) -> padded, merged, length-limited chunks in whole milliseconds."""
    spans = _pad(runs_s, config.keep_silence_ms / 1000, duration)
    spans = _merge_short(spans, config.min_chunk_s, config.max_chunk_s)
    spans = [s for s in spans if s[1] - s[0] >= MIN_LONE_CHUNK_S]
    pieces: list[tuple[float, float]] = []
    for span in spans:
        pieces.extend(_split_long(span, level_db, hop_s, config.min_chunk_s, config.max_chunk_s))
    # whole milliseconds, rounded inwards so that no piece grows past max_chunk_s
    return [Chunk(math.ceil(round(a * 1000, 6)) / 1000, math.floor(round(b * 1000, 6)) / 1000) for a, b in pieces]


def _frame_levels_db(x: np.ndarray, hop: int) -> np.ndarray:
    """Per-hop level (dB re full scale) of the mean-removed RMS over a ``FRAME_HOPS``-hop window."""
    if x.dtype != np.float32 and x.dtype != np.float64:
        x = x.astype(np.float32)
    n_full = len(x) // hop
    body = np.ascontiguousarray(x[: n_full * hop]).reshape(n_full, hop)
    s1 = body.sum(axis=1, dtype=np.float64)
    s2 = np.einsum("ij,ij->i", body, body, dtype=np.float64)
    counts = np.full(n_full, hop, dtype=np.float64)
    tail = x[n_full * hop:]
    if len(tail):
        tail = tail.astype(np.float64)
        s1 = np.append(s1, tail.sum())
        s2 = np.append(s2, np.dot(tail, tail))
        counts = np.append(counts, len(tail))
    kernel = np.ones(FRAME_HOPS)
    f1 = np.convolve(s1, kernel, mode="same")
    f2 = np.convolve(s2, kernel, mode="same")
    fn = np.convolve(counts, kernel, mode="same")
    var = np.maximum(f2 / fn - (f1 / fn) ** 2, 0.0)
    return 10.0 * np.log10(var + 1e-24)


def _threshold_db(level_db: np.ndarray, relative_db: float) -> float:
    """The speech/silence threshold for this file (dBFS): the highest of the three rules."""
    peak = float(level_db.max())
    audible = level_db[level_db > DIGITAL_SILENCE_DBFS]
    noise = float(np.percentile(audible, NOISE_PERCENTILE)) if len(audible) else DIGITAL_SILENCE_DBFS
    threshold = max(peak + relative_db, noise + NOISE_MARGIN_DB, ABS_FLOOR_DBFS)
    logger.debug("levels: peak %.1f dBFS, noise floor %.1f dBFS, threshold %.1f dBFS", peak, noise, threshold)
    return threshold


def _runs(mask: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """[start, end) index runs of True, joining runs separated by fewer than ``max_gap`` False."""
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    runs: list[tuple[int, int]] = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        if runs and a - runs[-1][1] < max_gap:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs


def _pad(spans: list[tuple[float, float]], keep_s: float, duration: float) -> list[tuple[float, float]]:
    """Widen each span by ``keep_s`` within [0, duration]; neighbours that would overlap meet halfway."""
    out = []
    for i, (a, b) in enumerate(spans):
        lo = max(0.0, a - keep_s)
        hi = min(duration, b + keep_s)
        if i > 0:
            lo = max(lo, (spans[i - 1][1] + a) / 2)
        if i + 1 < len(spans):
            hi = min(hi, (b + spans[i + 1][0]) / 2)
        out.append((lo, hi))
    return out


def _merge_short(spans: list[tuple[float, float]], min_s: float, max_s: float) -> list[tuple[float, float]]:
    """Merge each chunk shorter than ``min_s`` into its nearer neighbour when allowed."""
    spans = list(spans)
    stuck: set[tuple[float, float]] = set()
    while True:
        short = [i for i, (a, b) in enumerate(spans) if b - a < min_s and spans[i] not in stuck]
        if not short:
            return spans
        i = min(short, key=lambda k: spans[k][1] - spans[k][0])  # shortest first
        a, b = spans[i]
        options = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(spans):
                lo, hi = min(a, spans[j][0]), max(b, spans[j][1])
                gap = spans[j][0] - b if j > i else a - spans[j][1]
                if gap <= MAX_MERGE_GAP_S and hi - lo <= max_s:
                    options.append((gap, j, (lo, hi)))
        if not options:
            stuck.add(spans[i])
            continue
        _, j, merged = min(options)
        spans[min(i, j)] = merged
        del spans[max(i, j)]
        stuck.discard(merged)


def _split_long(span: tuple[float, float], level_db: np.ndarray, hop_s: float, min_s: float,
                max_s: float) -> list[tuple[float, float]]:
    """Cut a span into pieces of at most ``max_s`` at the quietest points of the allowed ranges."""
    a, b = span
    if b - a <= max_s:
        return [span]
    win = max(1, int(round(CUT_SMOOTH_S / hop_s)))
    power = 10.0 ** (level_db / 10.0)
    smooth = 10.0 * np.log10(np.convolve(power, np.ones(win) / win, mode="same") + 1e-24)
    pieces = []
    while b - a > max_s:
        lo = a + max_s / 2
        hi = min(a + max_s, b - min_s)
        if hi <= lo:
            lo, hi = a + max_s / 2, a + max_s
        i0 = int(np.ceil(lo / hop_s))
        i1 = min(int(np.floor(hi / hop_s)), len(smooth) - 1)
        if i1 < i0:
            cut = a + max_s
        else:
            seg = smooth[i0:i1 + 1]
            cost = seg - CUT_LATE_BIAS_DB * np.linspace(0.0, 1.0, len(seg))
            cut = (i0 + int(np.argmin(cost))) * hop_s
            cut = min(max(cut, a + hop_s), a + max_s)
        pieces.append((a, cut))
        a = cut
    pieces.append((a, b))
    return pieces
