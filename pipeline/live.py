"""Live microphone analysis: frames in, utterance results out, on the same pipeline as files.

The browser sends audio frames over WebRTC (seen as 48 kHz s16 interleaved stereo, 960 samples per
frame). This module turns them into analysed utterances with bounded latency; it knows nothing of
Streamlit, WebRTC or DuckDB (frames are duck-typed ``av.AudioFrame``-like objects).

Flow of one session (:class:`LiveSession`):

1. The WebRTC callback calls :meth:`LiveSession.push_frames`; it only buffers: each frame is mixed to
   mono float32 (:func:`frame_to_mono`), resampled to 16 kHz by a streaming polyphase filter
   (:class:`StreamResampler`, no clicks at frame edges), appended to the recording and to a ring buffer
   (:class:`RingBuffer`), and judged in 20 ms blocks by the end-pointer (:class:`EndPointer`). That is a
   few microseconds of numpy per frame; no model runs on the callback thread.
2. The end-pointer closes an utterance after ``config.live_silence_ms`` of silence following speech,
   cuts long speech every ``config.live_max_utterance_s`` seconds, and drops utterances whose speech
   lasts less than ``config.live_min_utterance_s`` (counted as ``dropped_short``).
3. Closed utterances go into a bounded queue (:class:`DropOldestQueue`, ``config.live_queue_size``).
   **Overload policy: drop oldest.** When the queue is full, the oldest *waiting* utterance is taken
   out to make room for the new one and counted (``dropped_overload``, shown on the page), so the
   delay between the end of what was said and its result stays bounded on a slow machine: at most
   ``live_queue_size`` utterances wait ahead of a new one. Dropped utterances are not lost: their
   audio is in the recording, and :meth:`LiveSession.session_result` analyses them at Stop.
4. One worker thread per session takes utterances from the queue and runs the analysis
   (``pipeline.analyze.Analyzer.analyze_signal(..., live=True)``: Whisper beam ``live_beam_size``,
   fast explanations) and appends a :class:`LiveResult`, whose ``latency_s`` is the time from the
   end-pointer's decision (the moment the server knows the utterance ended) to the result being ready.
   The page adds the time until it is drawn (``display_latency_s``). Users perceive
   ``live_silence_ms`` more than that: the end-pointer must hear that much silence to decide.

Saving (see :meth:`LiveSession.session_result`): the saved result of a session is the concatenation
of its utterance results with chunk and word times offset into the whole recording, plus the
utterances dropped by the overload policy (and any still waiting at Stop), analysed once at Stop.
This keeps exactly the results the user saw, costs no second pass over the session, and makes Stop
fast; every chunk time points into the saved 16 kHz mono FLAC.

Public API: :class:`LiveSession`, :class:`LiveResult`, :class:`LiveStats`, :class:`Utterance`,
:class:`EndPointer`, :class:`StreamResampler`, :class:`RingBuffer`, :class:`DropOldestQueue`,
:func:`frame_to_mono`, :func:`to_mono_float`, :func:`merge_utterance_results`, :func:`write_flac`.
"""

from __future__ import annotations

import collections
import copy
import functools
import logging
import math
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from pipeline.config import Config
from pipeline.types import BASE_EMOTIONS, FileResult

logger = logging.getLogger(__name__)

#: Sample rate of everything after the resampler (Hz).
TARGET_RATE = 16000
#: End-pointer block length (s).
BLOCK_S = 0.020
#: Blocks below this level (dB re full-scale RMS) are never speech.
ABS_FLOOR_DBFS = -70.0
#: Blocks within this many dB above the recent noise floor are not speech.
NOISE_MARGIN_DB = 10.0
#: Percentile of recent block levels taken as the noise floor.
NOISE_PERCENTILE = 10.0
#: Window of recent blocks over which the noise floor and the peak level are tracked (s).
LEVEL_WINDOW_S = 10.0
#: Nothing is speech until this much level history exists for the noise floor (s): the first blocks
#: after Start show the microphone's background, so its hiss never opens an utterance.
MIN_NOISE_HISTORY_S = 0.3
#: Block levels are clamped at this floor (digital silence would otherwise be -inf dB).
MIN_LEVEL_DBFS = -120.0
#: Consecutive speech blocks needed to open an utterance (2 x 20 ms: a click does not open one).
ONSET_BLOCKS = 2

AnalyzeFn = Callable[..., FileResult]


# --------------------------------------------------------------------------------------------------
# Frames -> mono float -> 16 kHz
# --------------------------------------------------------------------------------------------------

def to_mono_float(data: np.ndarray, *, channels: int, planar: bool) -> np.ndarray:
    """Mix one frame's samples to mono float32 in [-1, 1].

    Args:
        data: what ``av.AudioFrame.to_ndarray()`` gives: packed formats ``(1, samples * channels)``
            interleaved (L R L R ...), planar formats ``(channels, samples)``. Integer dtypes are scaled
            by their full range (int16 / 32768, int32 / 2**31, uint8 centred on 128), floats kept.
        channels: number of channels in the frame.
        planar: whether the layout is planar (one row per channel).

    Returns:
        float32 mono samples (mean of the channels).

    Raises:
        ValueError: the array's size does not match ``channels``.
    """
    a = np.asarray(data)
    channels = max(1, int(channels))
    if a.dtype == np.int16:
        x = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        x = (a.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif a.dtype == np.uint8:
        x = (a.astype(np.float32) - 128.0) / 128.0
    else:
        x = a.astype(np.float32, copy=False)
    if planar:
        x = x.reshape(channels, -1) if x.ndim != 2 or x.shape[0] != channels else x
        return x.mean(axis=0) if channels > 1 else x[0].astype(np.float32, copy=True)
    flat = x.reshape(-1)
    if flat.size % channels:
        raise ValueError(f"audio frame: {flat.size} interleaved samples do not divide into {channels} channels")
    if channels == 1:
        return flat.astype(np.float32, copy=True)
    return flat.reshape(-1, channels).mean(axis=1).astype(np.float32)


def frame_to_mono(frame: Any) -> tuple[np.ndarray, int]:
    """An ``av.AudioFrame`` (or anything with the same attributes) -> (mono float32 samples, rate in Hz)."""
    layout = frame.layout
    channels = getattr(layout, "nb_channels", None) or len(layout.channels)
    samples = to_mono_float(frame.to_ndarray(), channels=channels, planar=bool(frame.format.is_planar))
    return samples, int(frame.sample_rate)


class StreamResampler:
    """Streaming rational resampler: feeding blocks gives the same samples as one pass over the whole.

    A polyphase FIR (``scipy.signal.firwin``, Kaiser window beta 5, the filter that
    ``scipy.signal.resample_poly`` uses) evaluated only at the output instants, with the input history
    it needs carried between calls, so frame boundaries leave no clicks. Delay-compensated: output
    sample ``m`` is at input time ``m * in_rate / out_rate``, as with ``resample_poly``. Outputs wait
    for ``10 * max(up, down) / up`` input samples of look-ahead (0.6 ms at 48 kHz -> 16 kHz);
    :meth:`flush` releases them at the end.

    Args:
        in_rate: input sample rate (Hz).
        out_rate: output sample rate (Hz).
    """

    def __init__(self, in_rate: int, out_rate: int = TARGET_RATE):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"resampler: rates must be positive, got {in_rate} -> {out_rate} Hz")
        g = math.gcd(int(in_rate), int(out_rate))
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.up, self.down = self.out_rate // g, self.in_rate // g
        self._n_in = 0  # input samples received
        self._m = 0  # output samples produced
        if self.up == self.down:
            return
        from scipy.signal import firwin

        self._half = 10 * max(self.up, self.down)
        h = firwin(2 * self._half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
        self._taps = -(-h.size // self.up)  # taps per phase
        padded = np.zeros(self._taps * self.up)
        padded[: h.size] = h
        self._poly = padded.reshape(self._taps, self.up).T.astype(np.float64)  # [phase, j] = h[phase + j*up]
        self._buf = np.zeros(self._taps, dtype=np.float64)  # history; zeros before the stream start
        self._buf_start = -self._taps  # absolute input index of self._buf[0]

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed input samples; returns the output samples that are now complete (float32)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._n_in += x.size
        if self.up == self.down:
            self._m += x.size
            return x.copy()
        self._buf = np.concatenate([self._buf, x.astype(np.float64)])
        return self._emit(self._n_in)

    def flush(self) -> np.ndarray:
        """Release the outputs held back for look-ahead (the input is treated as ending in silence)."""
        if self.up == self.down:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._n_in * self.up // self.down)  # ceil: the length resample_poly gives
        pad = self._half // self.up + 2
        self._buf = np.concatenate([self._buf, np.zeros(pad)])
        out = self._emit(self._n_in + pad, limit=total)
        return out

    def _emit(self, available: int, *, limit: int | None = None) -> np.ndarray:
        # output m needs input index (m*down + half) // up  <=  available - 1
        m_end = (available * self.up - 1 - self._half) // self.down + 1
        if limit is not None:
            m_end = min(m_end, limit)
        if m_end <= self._m:
            return np.zeros(0, dtype=np.float32)
        ms = np.arange(self._m, m_end, dtype=np.int64)
        k = ms * self.down + self._half
        phase = k % self.up
        base = k // self.up - self._buf_start
        idx = base[:, None] - np.arange(self._taps)[None, :]
        y = np.einsum("ij,ij->i", self._poly[phase], self._buf[idx])
        self._m = int(m_end)
        # keep the history the next output needs
        next_base = (self._m * self.down + self._half) // self.up - (self._taps - 1)
        drop = max(0, next_base - self._buf_start)
        if drop:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return y.astype(np.float32)


class RingBuffer:
    """Fixed-capacity buffer of the most recent samples, addressed by absolute sample index.

    Args:
        capacity: number of samples kept; older ones are overwritten.
    """

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"ring buffer: capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self.end = 0  # absolute index one past the newest sample

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.end - self.capacity)

    def append(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size >= self.capacity:
            self.end += x.size - self.capacity
            x = x[-self.capacity:]
        pos = self.end % self.capacity
        first = min(x.size, self.capacity - pos)
        self._data[pos:pos + first] = x[:first]
        self._data[: x.size - first] = x[first:]
        self.end += x.size

    def get(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` by absolute index.

        Raises:
            ValueError: part of the range was overwritten or has not arrived yet.
        """
        if start < self.start or end > self.end or start > end:
            raise ValueError(f"ring buffer: samples [{start}, {end}) not held (have [{self.start}, {self.end}))")
        idx = np.arange(start, end) % self.capacity
        return self._data[idx].copy()


# --------------------------------------------------------------------------------------------------
# End-pointing
# --------------------------------------------------------------------------------------------------

@dataclass
class Utterance:
    """A closed stretch of speech, in seconds from the session start (16 kHz samples)."""

    index: int
    start_s: float
    end_s: float
    samples: np.ndarray = field(repr=False)
    reason: str
    """'silence' (live_silence_ms of silence after speech), 'max_length' (cut at live_max_utterance_s)
    or 'stop' (the session stopped during speech)."""
    speech_s: float
    """Seconds from the first to the last speech block (without padding)."""
    closed_at: float = 0.0
    """``time.monotonic()`` when the end-pointer closed it."""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class EndPointer:
    """Energy end-pointing of a 16 kHz mono stream into utterances.

    A 20 ms block is speech when its RMS level (mean removed) is above all of :data:`ABS_FLOOR_DBFS`,
    ``config.silence_threshold_db`` below the loudest block of the last :data:`LEVEL_WINDOW_S`, and
    :data:`NOISE_MARGIN_DB` above the noise floor (the :data:`NOISE_PERCENTILE` percentile of the
    block levels of that window; nothing is speech before :data:`MIN_NOISE_HISTORY_S`). So a steady hum
    or hiss is not speech, while speech, whose level keeps dipping between syllables, is; a sound that
    stays level for most of the window (a held tone of 9 s or more) becomes the noise floor.
    :data:`ONSET_BLOCKS` speech blocks in a row open an utterance; ``live_silence_ms`` of silence closes
    it; an utterance reaching ``live_max_utterance_s`` is cut there and the next one starts at once;
    utterances whose speech lasts under ``live_min_utterance_s`` are dropped and counted. Each utterance
    carries ``keep_silence_ms`` of context on both sides (within the cut limits).

    Args:
        config: the live_* and keep_silence_ms/silence_threshold_db settings.
        clock: source of ``Utterance.closed_at`` (default ``time.monotonic``).
    """

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self.rate = TARGET_RATE
        self.block = int(round(BLOCK_S * self.rate))
        self.silence_blocks = max(1, int(math.ceil(config.live_silence_ms / 1000.0 / BLOCK_S)))
        self.max_samples = max(self.block * (ONSET_BLOCKS + 1), int(config.live_max_utterance_s * self.rate))
        self.min_speech_s = float(config.live_min_utterance_s)
        self.pad = int(config.keep_silence_ms / 1000.0 * self.rate)
        window = max(1, int(LEVEL_WINDOW_S / BLOCK_S))
        self._levels: collections.deque[float] = collections.deque(maxlen=window)
        capacity = self.max_samples + self.pad + (self.silence_blocks + ONSET_BLOCKS + 2) * self.block
        self.ring = RingBuffer(capacity)
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet forming a whole block
        self._n = 0  # absolute samples judged (whole blocks)
        self._run = 0  # consecutive speech blocks (before an utterance opens)
        self._open: int | None = None  # absolute start of the open utterance's speech
        self._start: int | None = None  # absolute start of the open utterance (with padding)
        self._last_speech_end = 0  # absolute end of the last speech block of the open utterance
        self._silent = 0  # silent blocks since the last speech block
        self._index = 0
        self.dropped_short = 0
        self.closed = 0

    # -- levels
    def _is_speech(self, level: float) -> bool:
        if len(self._levels) * BLOCK_S < MIN_NOISE_HISTORY_S - 1e-9:
            return False
        threshold = max(ABS_FLOOR_DBFS, max(self._levels) + float(self.config.silence_threshold_db),
                        float(np.percentile(self._levels, NOISE_PERCENTILE)) + NOISE_MARGIN_DB)
        return level > threshold

    @staticmethod
    def level_db(block: np.ndarray) -> float:
        b = block.astype(np.float64)
        rms = math.sqrt(float(np.mean((b - b.mean()) ** 2))) if b.size else 0.0
        return max(MIN_LEVEL_DBFS, 20.0 * math.log10(rms + 1e-12))

    # -- feeding
    def feed(self, samples: np.ndarray) -> list[Utterance]:
        """Append 16 kHz mono samples; returns the utterances this closes (in order)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return []
        buf = np.concatenate([self._pending, x]) if self._pending.size else x
        n_blocks = buf.size // self.block
        self._pending = buf[n_blocks * self.block:].copy()
        out: list[Utterance] = []
        for i in range(n_blocks):
            blk = buf[i * self.block:(i + 1) * self.block]
            self.ring.append(blk)  # block by block: a long push never overwrites what is still to be judged
            level = self.level_db(blk)
            speech = self._is_speech(level)
            self._levels.append(level)
            b_start = self._n
            self._n += self.block
            out.extend(self._step(speech, b_start))
        return out

    def _step(self, speech: bool, b_start: int) -> list[Utterance]:
        b_end = b_start + self.block
        if self._open is None:
            if not speech:
                self._run = 0
                return []
            self._run += 1
            if self._run < ONSET_BLOCKS:
                return []
            self._open = b_end - self._run * self.block
            self._start = max(self.ring.start, self._open - self.pad, 0)
            self._last_speech_end = b_end
            self._silent = 0
            self._run = 0
            return self._cut_if_long()
        if speech:
            self._last_speech_end = b_end
            self._silent = 0
            return self._cut_if_long()
        self._silent += 1
        if self._silent >= self.silence_blocks:
            end = min(self._last_speech_end + self.pad, b_end)
            return self._close(end, "silence", reopen=False)
        return self._cut_if_long()

    def _cut_if_long(self) -> list[Utterance]:
        assert self._start is not None
        if self._n - self._start < self.max_samples:
            return []
        end = self._start + self.max_samples
        if self._silent:  # ends in a pause: end at the last speech (plus padding) and don't reopen
            return self._close(min(self._last_speech_end + self.pad, end), "max_length", reopen=False)
        return self._close(end, "max_length", reopen=True)

    def _close(self, end: int, reason: str, *, reopen: bool) -> list[Utterance]:
        assert self._open is not None and self._start is not None
        start, speech_start, speech_end = self._start, self._open, min(self._last_speech_end, end)
        if reopen:  # speech continues: the next utterance starts where this one was cut
            self._open = self._start = end
            self._last_speech_end = max(self._last_speech_end, end)
        else:
            self._open = self._start = None
            self._run = 0
        self._silent = 0
        return self._emit(start, end, speech_start, speech_end, reason)

    def _emit(self, start: int, end: int, speech_start: int, speech_end: int, reason: str) -> list[Utterance]:
        end = min(end, self.ring.end)
        speech_s = max(0, min(speech_end, end) - speech_start) / self.rate
        if speech_s < self.min_speech_s:
            self.dropped_short += 1
            logger.debug("live: dropped a %.2f s blip (< live_min_utterance_s %.2f s)", speech_s, self.min_speech_s)
            return []
        start = max(start, self.ring.start)
        utt = Utterance(index=self._index, start_s=start / self.rate, end_s=end / self.rate,
                        samples=self.ring.get(start, end), reason=reason, speech_s=speech_s,
                        closed_at=self.clock())
        self._index += 1
        self.closed += 1
        return [utt]

    def flush(self) -> list[Utterance]:
        """End of stream: close the open utterance (reason 'stop'), judging any partial block."""
        out: list[Utterance] = []
        if self._pending.size:
            self.ring.append(self._pending)
            blk = np.concatenate([self._pending, np.zeros(self.block - self._pending.size, dtype=np.float32)])
            self._pending = np.zeros(0, dtype=np.float32)
            level = self.level_db(blk)
            speech = self._is_speech(level)
            b_start = self._n
            self._n += self.block
            # the padding block is virtual: the ring only holds real samples
            out.extend(self._step(speech, b_start))
        if self._open is not None:
            end = min(self.ring.end, self._last_speech_end + self.pad)
            out.extend(self._close(end, "stop", reopen=False))
        return out

    @property
    def in_speech(self) -> bool:
        return self._open is not None


# --------------------------------------------------------------------------------------------------
# Bounded queue with a drop-oldest policy
# --------------------------------------------------------------------------------------------------

class DropOldestQueue:
    """Bounded FIFO: putting into a full queue removes and returns the oldest waiting item.

    Args:
        maxsize: items that may wait (at least 1).
    """

    def __init__(self, maxsize: int):
        self.maxsize = max(1, int(maxsize))
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: Any) -> Any | None:
        """Add an item; returns the item dropped to make room, or None."""
        with self._cond:
            dropped = None
            if len(self._items) >= self.maxsize:
                dropped = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> Any | None:
        """The oldest item, waiting up to ``timeout`` seconds; None when none came."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def drain(self) -> list[Any]:
        """Remove and return every waiting item."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


# --------------------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------------------

@dataclass
class LiveResult:
    """The analysis of one utterance, with chunk times already offset into the session."""

    utterance: Utterance
    result: FileResult
    """Chunk and word times in seconds from the session start."""
    closed_at: float
    done_at: float
    shown_at: float | None = None
    """``time.monotonic()`` when the page first drew it (set by the page)."""
    transcribing: bool = False
    """True while Whisper is still working on it (emotions first, words after)."""
    transcribed_at: float | None = None
    """When its transcripts were filled in (None: not transcribed in a second step)."""

    @property
    def latency_s(self) -> float:
        """End-pointer decision -> result ready (s)."""
        return self.done_at - self.closed_at

    @property
    def transcript_latency_s(self) -> float | None:
        """End-pointer decision -> transcripts ready (s); None unless transcribed in a second step."""
        return None if self.transcribed_at is None else self.transcribed_at - self.closed_at

    @property
    def display_latency_s(self) -> float | None:
        """End-pointer decision -> result on screen (s); None until drawn."""
        return None if self.shown_at is None else self.shown_at - self.closed_at


@dataclass
class LiveStats:
    """Counters of a session, for the page."""

    received_s: float
    frames: int
    utterances: int
    analysed: int
    waiting: int
    busy: bool
    dropped_overload: int
    dropped_short: int
    errors: int
    in_speech: bool
    latency_p50_s: float | None
    latency_p95_s: float | None
    display_latency_p50_s: float | None
    display_latency_p95_s: float | None
    last_error: str | None = None
    transcript_latency_p50_s: float | None = None
    transcript_latency_p95_s: float | None = None
    transcript_errors: int = 0
    """Utterances whose words failed (their emotions were kept)."""
    last_transcript_error: str | None = None


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def offset_result(result: FileResult, offset_s: float) -> FileResult:
    """A copy of ``result`` with chunk and word times shifted by ``offset_s`` seconds."""
    out = copy.deepcopy(result)
    for c in out.chunks:
        c.start_s = round(c.start_s + offset_s, 3)
        c.end_s = round(c.end_s + offset_s, 3)
        for w in c.words:
            w.start_s = round(w.start_s + offset_s, 3)
            w.end_s = round(w.end_s + offset_s, 3)
    return out


def merge_utterance_results(results: Iterable[FileResult], *, name: str, duration_s: float,
                            extra_notes: Sequence[str] = (), settings: dict[str, Any] | None = None) -> FileResult:
    """One FileResult from results already offset into the same recording.

    Chunks are sorted by start time and renumbered; notes are de-duplicated in order; timings summed.

    Args:
        results: per-utterance results (chunk times in seconds from the recording start).
        name: the ``file`` of the merged result (the saved recording's path).
        duration_s: the recording's duration (s).
        extra_notes: notes to add (e.g. how the session was segmented).
        settings: settings to store (default: the first result's).

    Raises:
        ValueError: no results to merge (analyse the recording itself instead).
    """
    results = list(results)
    if not results:
        raise ValueError(f"live session {name}: no utterance results to merge")
    chunks = sorted((copy.deepcopy(c) for r in results for c in r.chunks), key=lambda c: (c.start_s, c.end_s))
    for i, c in enumerate(chunks):
        c.idx = i
    notes: list[str] = []
    for r in results:
        for n in r.notes:
            if n not in notes and not n.startswith("silence only"):
                notes.append(n)
    if not chunks:
        notes.append("silence only: no speech chunks found")
    notes.extend(n for n in extra_notes if n not in notes)
    timings: dict[str, float] = {}
    for r in results:
        for k, v in r.timings.items():
            timings[k] = timings.get(k, 0.0) + float(v)
    first = results[0]
    return FileResult(
        file=name, duration_s=round(duration_s, 3), sample_rate=TARGET_RATE, channels=1,
        models=copy.deepcopy(first.models), chunks=chunks,
        settings=copy.deepcopy(settings if settings is not None else first.settings),
        notes=notes, timings=timings,
    )


def write_flac(samples: np.ndarray, path: str | Path, sample_rate: int = TARGET_RATE) -> Path:
    """Write mono float samples as 16-bit FLAC (folders created).

    Raises:
        ValueError: there are no samples to write.
    """
    import soundfile as sf

    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    path = Path(path)
    if x.size == 0:
        raise ValueError(f"{path}: nothing was recorded, no FLAC written")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1.0, 1.0), sample_rate, subtype="PCM_16", format="FLAC")
    return path


def new_session_id(now: datetime | None = None) -> str:
    """'live-YYYYmmdd-HHMMSS-xxxxxx' (UTC time and 6 random hex digits; safe as a file name)."""
    now = now or datetime.now(timezone.utc)
    return f"live-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class LiveSession:
    """One microphone session: buffers frames, end-points, analyses utterances on a worker thread.

    Thread use: :meth:`push_frames` / :meth:`push` run on the WebRTC thread and only buffer;
    :meth:`results`, :meth:`stats` and :meth:`stop` may be called from any thread (the page's).

    Args:
        config: settings (``live_*``, chunking padding, model names through ``analyze``).
        analyze: ``analyze(samples, sample_rate, name=..., live=True) -> FileResult``; default the
            process-wide ``pipeline.analyze`` Analyzer for ``config`` (models load once per process),
            in two steps: emotions without transcripts first (published at once), then Whisper's
            transcripts filled in (``LiveResult.transcribing`` meanwhile).
        transcribe: ``transcribe(result, samples_16k) -> FileResult``, the second step for a custom
            ``analyze`` (None: one step).
        session_id: id used for the recording's file name (default :func:`new_session_id`).
        clock: monotonic clock (s) for latencies.
        torch_threads: CPU threads torch uses on the worker thread (a per-thread setting: the rest of
            the process keeps its own); default ``config.live_threads``; 0 leaves torch's default.
    """

    def __init__(self, config: Config, *, analyze: AnalyzeFn | None = None, session_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic, torch_threads: int | None = None,
                 transcribe: Callable[[FileResult, np.ndarray], FileResult] | None = None):
        self.config = config
        self.torch_threads = int(config.live_threads if torch_threads is None else torch_threads)
        self.id = session_id or new_session_id()
        self.created = datetime.now(timezone.utc)
        self.clock = clock
        self._analyze = analyze
        self._transcribe = transcribe
        self._lock = threading.RLock()
        self.endpointer = EndPointer(config, clock=clock)
        self.queue = DropOldestQueue(config.live_queue_size)
        self._resampler: StreamResampler | None = None
        self._recording: list[np.ndarray] = []  # int16 blocks at 16 kHz
        self._n_recorded = 0
        self._frames = 0
        self._results: list[LiveResult] = []
        self._dropped: list[Utterance] = []  # dropped by the overload policy (samples released)
        self._errors: list[tuple[Utterance, str]] = []
        self._word_errors: list[tuple[Utterance, str]] = []
        self._words_q: queue.Queue = queue.Queue()
        self._words_thread: threading.Thread | None = None
        self._busy = False
        self._receiving = True
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self.stopped = False
        self.save_lock = threading.Lock()
        """Held by whoever saves the session (the page's Stop and its on-ended hook may race)."""
        self.saved: Any = None
        """What the caller stored when it saved the session (None until saved)."""

    # ---------------------------------------------------------------- analysis function
    def analyze(self, samples: np.ndarray, sample_rate: int, *, name: str) -> FileResult:
        if self._analyze is None:
            from pipeline.analyze import get_analyzer

            analyzer = get_analyzer(self.config)
            if analyzer.whisper() is not None:  # emotions first, words in a second step
                self._transcribe = functools.partial(analyzer.add_transcripts, live=True)
                self._analyze = functools.partial(analyzer.analyze_signal, transcribe=False)
            else:
                self._analyze = analyzer.analyze_signal
        return self._analyze(samples, sample_rate, name=name, live=True)

    # ---------------------------------------------------------------- input (WebRTC thread)
    def start(self) -> None:
        """Start the worker thread (idempotent; also started by the first pushed frame)."""
        with self._lock:
            if self._worker is None and not self.stopped:
                self._worker = threading.Thread(target=self._work, name=f"emotivoice-{self.id}", daemon=True)
                self._worker.start()

    def push_frames(self, frames: Iterable[Any]) -> None:
        """Buffer ``av.AudioFrame``-like frames (the WebRTC callback calls this)."""
        for frame in frames:
            samples, rate = frame_to_mono(frame)
            self.push(samples, rate)

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        """Buffer mono float samples at any rate (resampled to 16 kHz, end-pointed, queued)."""
        with self._lock:
            if not self._receiving:
                return
            if self._worker is None:
                self.start()
            self._frames += 1
            if self._resampler is None or self._resampler.in_rate != int(sample_rate):
                if self._resampler is not None:
                    logger.info("live %s: input rate changed %d -> %d Hz", self.id, self._resampler.in_rate,
                                sample_rate)
                    self._ingest(self._resampler.flush())
                self._resampler = StreamResampler(int(sample_rate), TARGET_RATE)
            self._ingest(self._resampler.process(samples))

    def _ingest(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        self._recording.append((np.clip(x, -1.0, 1.0) * 32767.0).round().astype(np.int16))
        self._n_recorded += x.size
        for utt in self.endpointer.feed(x):
            self._enqueue(utt)

    def _enqueue(self, utt: Utterance) -> None:
        dropped = self.queue.put(utt)
        if dropped is not None:
            logger.warning("live %s: analysis is behind; dropped utterance %d (%.1f-%.1f s) to keep latency "
                           "bounded (it is analysed at Stop)", self.id, dropped.index, dropped.start_s,
                           dropped.end_s)
            dropped.samples = np.zeros(0, dtype=np.float32)
            self._dropped.append(dropped)

    # ---------------------------------------------------------------- worker thread
    def _work(self) -> None:
        logger.info("live %s: analysis worker started", self.id)
        if self.torch_threads:
            import torch  # per-thread with torch's OpenMP backend: other threads keep their setting

            torch.set_num_threads(int(self.torch_threads))
        while True:
            utt = self.queue.get(timeout=0.05)
            if utt is None:
                if self._stopping.is_set() and len(self.queue) == 0:
                    logger.info("live %s: analysis worker finished", self.id)
                    return
                continue
            logger.debug("live %s: analysing utterance %d (%.2f-%.2f s, %s)", self.id, utt.index, utt.start_s,
                         utt.end_s, utt.reason)
            with self._lock:
                self._busy = True
            try:
                self._analyse_one(utt)
            finally:
                with self._lock:
                    self._busy = False

    def _analyse_one(self, utt: Utterance, *, samples: np.ndarray | None = None) -> LiveResult | None:
        x = utt.samples if samples is None else samples
        try:
            res = self.analyze(x, TARGET_RATE, name=f"{self.id}#{utt.index}")
        except Exception as exc:  # shown on the page; the session goes on
            logger.exception("live %s: analysis of utterance %d failed", self.id, utt.index)
            with self._lock:
                self._errors.append((utt, f"{type(exc).__name__}: {exc}"))
            return None
        done = self.clock()
        logger.debug("live %s: utterance %d analysed %.3f s after it closed (stages %s)", self.id, utt.index,
                     done - utt.closed_at, {k: round(v, 3) for k, v in res.timings.items()})
        lr = LiveResult(utterance=utt, result=offset_result(res, utt.start_s), closed_at=utt.closed_at, done_at=done,
                        transcribing=self._transcribe is not None and bool(res.chunks))
        utt.samples = np.zeros(0, dtype=np.float32)  # the recording holds the audio
        with self._lock:
            self._results.append(lr)
        if lr.transcribing:  # words on their own thread: the next utterance's emotions need not wait
            with self._lock:
                if self._words_thread is None:
                    self._words_thread = threading.Thread(target=self._words_work, name=f"emotivoice-words-{self.id}",
                                                          daemon=True)
                    self._words_thread.start()
                self._words_q.put((lr, res, x))
        return lr

    def _words_work(self) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(int(self.torch_threads))
        while True:
            item = self._words_q.get()
            if item is None:
                return
            self._add_transcripts(*item)

    def _finish_words(self, timeout: float | None) -> None:
        """Let the words thread finish what it was given, then end it (a later utterance starts a new one)."""
        with self._lock:
            thread, self._words_thread = self._words_thread, None
        if thread is not None:
            self._words_q.put(None)
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("live %s: transcription still running after %.0f s at stop", self.id, timeout or 0)

    def _add_transcripts(self, lr: LiveResult, res: FileResult, samples: np.ndarray) -> None:
        """Second step: Whisper's words for a published result (the emotions stay if it fails)."""
        try:
            res = self._transcribe(res, samples)
            shifted = offset_result(res, lr.utterance.start_s)
        except Exception as exc:  # shown on the page; the emotions are kept, the session goes on
            logger.exception("live %s: transcription of utterance %d failed", self.id, lr.utterance.index)
            with self._lock:
                self._word_errors.append((lr.utterance, f"transcription: {type(exc).__name__}: {exc}"))
                lr.transcribing = False
            return
        with self._lock:
            lr.result = shifted
            lr.transcribing = False
            lr.transcribed_at = self.clock()

    # ---------------------------------------------------------------- reading (page thread)
    def results(self) -> list[LiveResult]:
        """Snapshot of the analysed utterances, in the order they finished."""
        with self._lock:
            return list(self._results)

    def mark_shown(self, results: Iterable[LiveResult], when: float | None = None) -> None:
        """Record when the page first drew these results (for the on-screen latency)."""
        when = self.clock() if when is None else when
        with self._lock:
            for r in results:
                if r.shown_at is None:
                    r.shown_at = when

    def stats(self) -> LiveStats:
        with self._lock:
            lat = [r.latency_s for r in self._results]
            shown = [r.display_latency_s for r in self._results if r.shown_at is not None]
            words = [r.transcript_latency_s for r in self._results if r.transcribed_at is not None]
            return LiveStats(
                received_s=self._n_recorded / TARGET_RATE, frames=self._frames,
                utterances=self.endpointer.closed, analysed=len(self._results), waiting=len(self.queue),
                busy=self._busy, dropped_overload=self.queue.dropped, dropped_short=self.endpointer.dropped_short,
                errors=len(self._errors), in_speech=self.endpointer.in_speech,
                latency_p50_s=_pct(lat, 50), latency_p95_s=_pct(lat, 95),
                display_latency_p50_s=_pct(shown, 50), display_latency_p95_s=_pct(shown, 95),
                last_error=self._errors[-1][1] if self._errors else None,
                transcript_latency_p50_s=_pct(words, 50), transcript_latency_p95_s=_pct(words, 95),
                transcript_errors=len(self._word_errors),
                last_transcript_error=self._word_errors[-1][1] if self._word_errors else None,
            )

    def recording(self) -> np.ndarray:
        """The whole session so far, float32 mono 16 kHz."""
        with self._lock:
            if not self._recording:
                return np.zeros(0, dtype=np.float32)
            return np.concatenate(self._recording).astype(np.float32) / 32767.0

    @property
    def duration_s(self) -> float:
        return self._n_recorded / TARGET_RATE

    # ---------------------------------------------------------------- stop and save
    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop receiving, close the open utterance and wait for the worker to finish the queue.

        Args:
            timeout: seconds to wait for the worker; utterances still waiting afterwards are analysed
                by :meth:`session_result`.
        """
        with self._lock:
            if self.stopped:
                return
            self._receiving = False
            if self._resampler is not None:
                self._ingest(self._resampler.flush())
            for utt in self.endpointer.flush():
                self._enqueue(utt)
            self.stopped = True
            worker = self._worker
        self._stopping.set()
        if worker is not None:
            worker.join(timeout)
            if worker.is_alive():
                logger.warning("live %s: analysis still running after %.0f s at stop", self.id, timeout or 0)
        self._finish_words(timeout)

    def session_result(self, name: str | None = None) -> FileResult:
        """The whole session as one FileResult (times into the recording); stops the session first.

        Utterances dropped by the overload policy or still waiting are analysed now, from the recording.
        With no utterance at all, the recording itself is analysed once (normally: no speech found).

        Args:
            name: the ``file`` of the result (the saved recording's path); default the session id.
        """
        self.stop()
        name = name or self.id
        audio = self.recording()
        with self._lock:
            catch_up = sorted(self._dropped + [u for u in self.queue.drain()], key=lambda u: u.index)
            self._dropped = []
        for utt in catch_up:
            a, b = int(round(utt.start_s * TARGET_RATE)), int(round(utt.end_s * TARGET_RATE))
            self._analyse_one(utt, samples=audio[a:b])
        self._finish_words(60.0)
        results = sorted(self.results(), key=lambda r: r.utterance.start_s)
        cfg = self.config
        segmentation = {"live_silence_ms": cfg.live_silence_ms, "live_max_utterance_s": cfg.live_max_utterance_s,
                        "live_min_utterance_s": cfg.live_min_utterance_s}
        if not results:
            res = self.analyze(audio, TARGET_RATE, name=name)
            if self._transcribe is not None and res.chunks:
                try:
                    res = self._transcribe(res, audio)
                except Exception as exc:  # keep the emotions; say why the words are missing
                    logger.exception("live %s: transcription of the recording failed", self.id)
                    res.notes.append(f"transcription failed: {type(exc).__name__}: {exc}")
            res.file, res.sample_rate, res.channels = name, TARGET_RATE, 1
            res.settings = {**res.settings, "live_segmentation": segmentation}
            res.notes.append("live session: no utterance was end-pointed; the recording was analysed whole")
            return res
        stats = self.stats()
        notes = [f"live session: {len(results)} utterance(s) analysed"
                 + (f", {len(catch_up)} of them at stop (analysis had fallen behind)" if catch_up else "")
                 + (f"; {stats.dropped_short} blip(s) under {cfg.live_min_utterance_s:g} s ignored"
                    if stats.dropped_short else "")]
        if self._errors:
            notes.append(f"live session: {len(self._errors)} utterance(s) failed to analyse: {self._errors[-1][1]}")
        if self._word_errors:
            notes.append(f"live session: words missing for {len(self._word_errors)} utterance(s) (emotions kept): "
                         f"{self._word_errors[-1][1]}")
        unfinished = sum(r.transcribing for r in results)
        if unfinished:
            notes.append(f"live session: words missing for {unfinished} utterance(s): transcription had not "
                         "finished when the session was saved")
        settings = {**results[0].result.settings, "live_segmentation": segmentation}
        return merge_utterance_results([r.result for r in results], name=name, duration_s=self.duration_s,
                                       extra_notes=notes, settings=settings)

    def save_recording(self, path: str | Path) -> Path:
        """Write the recording as 16 kHz mono 16-bit FLAC.

        Raises:
            ValueError: nothing was recorded.
        """
        return write_flac(self.recording(), path)


# --------------------------------------------------------------------------------------------------
# Shaping results for display (pure; the page draws them)
# --------------------------------------------------------------------------------------------------

@dataclass
class TranscriptLine:
    start_s: float
    end_s: float
    text: str | None
    dominant: str | None
    confidence: float | None
    granular: list[str]
    complex: list[str]
    pending: bool = False
    """Whisper is still transcribing it."""


def timeline_rows(results: Iterable[LiveResult]) -> list[dict[str, Any]]:
    """Long-form rows (time_s = chunk middle in the session, emotion, probability) for a rolling chart.

    Emotions the model does not have (None) are left out rather than drawn as zero.
    """
    rows = []
    for r in results:
        for c in r.result.chunks:
            mid = round((c.start_s + c.end_s) / 2, 3)
            for e in BASE_EMOTIONS:
                p = c.base.get(e)
                if p is not None:
                    rows.append({"time_s": mid, "start_s": c.start_s, "end_s": c.end_s, "emotion": e,
                                 "probability": float(p)})
    return rows


def transcript_lines(results: Iterable[LiveResult]) -> list[TranscriptLine]:
    """One line per analysed chunk, in time order, tagged with its emotions."""
    lines = []
    for r in results:
        for c in r.result.chunks:
            conf = c.base.get(c.dominant) if c.dominant else None
            lines.append(TranscriptLine(
                start_s=c.start_s, end_s=c.end_s, text=c.transcript, dominant=c.dominant,
                confidence=None if conf is None else float(conf),
                granular=[g.name for g in c.granular], complex=[x.name for x in c.complex],
                pending=r.transcribing,
            ))
    return sorted(lines, key=lambda ln: ln.start_s)


def warm_signal(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A synthetic speech-like sound at 16 kHz: voiced 200 ms syllables (150 Hz and harmonics) under a
    raised-cosine envelope over a -70 dBFS noise floor, with 0.2 s of that floor around it (so that the
    chunker, which wants level changes, finds one chunk in it)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * TARGET_RATE)
    t = np.arange(n) / TARGET_RATE
    voiced = sum(np.sin(2 * np.pi * k * 150.0 * t) / k for k in range(1, 8))
    syllable = int(0.2 * TARGET_RATE)
    env = np.zeros(n)
    for start in range(0, n - syllable, int(0.25 * TARGET_RATE)):
        env[start:start + syllable] = np.hanning(syllable)
    x = 0.2 * env * voiced / np.max(np.abs(voiced))
    pad = np.zeros(TARGET_RATE // 5)
    x = np.concatenate([pad, x, pad])
    return (x + rng.standard_normal(x.size) * 10 ** (-70 / 20)).astype(np.float32)


def warm_up(analyze: AnalyzeFn, *, torch_threads: int | None = None) -> float:
    """Analyse one synthetic second so that first-use costs are paid before the first utterance.

    The first analysis in a process imports the explanation and feature libraries and compiles their
    kernels (tens of seconds on a busy 2-core machine); without this the first live result would wait
    for it. Runs on a separate thread with the worker's torch thread setting. Returns seconds taken.
    """
    t0 = time.perf_counter()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            if torch_threads:
                import torch

                torch.set_num_threads(int(torch_threads))
            analyze(warm_signal(), TARGET_RATE, name="warm-up", live=True)
        except Exception as exc:  # reported by the first real utterance as well
            errors.append(exc)

    th = threading.Thread(target=run, name="emotivoice-live-warm-up", daemon=True)
    th.start()
    th.join()
    if errors:
        logger.warning("live warm-up failed: %s", errors[0])
    return time.perf_counter() - t0


def analyse_recording(samples: np.ndarray, sample_rate: int, config: Config, *, analyze: AnalyzeFn | None = None,
                      session_id: str | None = None, frame_s: float = BLOCK_S) -> LiveSession:
    """Run a finished recording through a live session, as if it had streamed in (the fallback path).

    The samples are pushed in ``frame_s`` pieces, so end-pointing, the queue and the analysis are
    exactly the live ones; returns the stopped session (its results are all in).

    Args:
        samples: mono float samples in [-1, 1] (mix to mono first).
        sample_rate: their rate (Hz).
        config: settings.
        analyze: the analysis function (default: the process-wide Analyzer).
        session_id: id of the session (default a new one).
        frame_s: piece length (s).
    """
    if analyze is None:  # the process-wide Analyzer of this configuration (not of the enlarged queue's)
        from pipeline.analyze import get_analyzer

        analyze = get_analyzer(config).analyze_signal
    # an offline clip may be analysed as fast as the machine goes: make room for every utterance
    n = len(samples)
    duration = n / float(sample_rate)
    room = int(duration / max(0.1, config.live_min_utterance_s)) + 2
    session = LiveSession(config.replace(live_queue_size=max(config.live_queue_size, room)), analyze=analyze,
                          session_id=session_id)
    step = max(1, int(round(frame_s * sample_rate)))
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    for i in range(0, n, step):
        session.push(x[i:i + step], sample_rate)
    session.stop(timeout=None)
    return session
