"""Live audio as a stream: frames in, end-pointed utterances out (pure numpy; no threads of its own).

The browser sends audio frames over WebRTC (seen as 48 kHz s16 interleaved stereo, 960 samples per
frame). The parts here turn them into utterances; they know nothing of Streamlit, WebRTC, DuckDB or
the models (frames are duck-typed ``av.AudioFrame``-like objects). ``flows.live.LiveSession`` wires
them together and runs the analysis.

1. Each frame is mixed to mono float32 (:func:`frame_to_mono`), resampled to 16 kHz by a streaming
   polyphase filter (:class:`StreamResampler`, no clicks at frame edges), held in a ring buffer
   (:class:`RingBuffer`), and judged in 20 ms blocks by the end-pointer (:class:`EndPointer`). That is
   a few microseconds of numpy per frame, cheap enough for the WebRTC callback thread.
2. The end-pointer closes an utterance after ``config.live_silence_ms`` of silence following speech,
   cuts long speech every ``config.live_max_utterance_s`` seconds, and drops utterances whose speech
   lasts less than ``config.live_min_utterance_s`` (counted as ``dropped_short``). Its utterance is the
   unit of analysis: the analysis takes it as one chunk, it is not chunked a second time.
3. Closed utterances wait in a bounded queue (:class:`DropOldestQueue`). **Overload policy: drop
   oldest.** When the queue is full, the oldest *waiting* item is taken out to make room for the new
   one and counted, so the delay between the end of what was said and its result stays bounded on a
   slow machine: at most ``maxsize`` items wait ahead of a new one.

The recording is written with :func:`write_flac` (16 kHz mono 16-bit FLAC).

Public API: :class:`EndPointer`, :class:`Utterance`, :class:`StreamResampler`, :class:`RingBuffer`,
:class:`DropOldestQueue`, :func:`frame_to_mono`, :func:`to_mono_float`, :func:`write_flac`.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.config import Config
from pipeline.runtime import SAMPLE_RATE

logger = logging.getLogger(__name__)

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

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE):
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
        self.rate = SAMPLE_RATE
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
# The recording
# --------------------------------------------------------------------------------------------------

def write_flac(samples: np.ndarray, path: str | Path, sample_rate: int = SAMPLE_RATE) -> Path:
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

