"""Decode any common audio file to float32 mono 16 kHz, with one error type for bad input.

Everything goes through PyAV (FFmpeg's libraries, no subprocess): WAV (8/16/24/32-bit integer or
float), FLAC, MP3, Ogg (Opus/Vorbis/FLAC), M4A/AAC, WebM/Matroska and anything else FFmpeg reads, at
any sample rate, sample width and channel count. Decoding is packet by packet: each decoded frame's
channels are read plane by plane and averaged in numpy (:func:`frame_to_mono`; PyAV's own
``to_ndarray`` crashes on planar audio with 8+ channels), the mono signal is resampled to the target
rate by ``av.AudioResampler`` (skipped when the rates agree) and written into one preallocated buffer
sized from the header's duration (blocks appended when there is no duration or it was short), so
decoding a long file needs about its 16 kHz float32 size, at most about twice that.

Bad input of any kind raises :class:`pipeline.types.AudioError` with the file name, a plain reason
and a kind: "file not found", "file is empty" (unreadable), "no audio stream" (unsupported),
"no audio (zero length)", "could not decode: ..." (decode), "truncated: the header says 3.60 s but
only 1.20 s could be decoded" (truncated; for WAV the header's data size is read directly, since
FFmpeg silently clamps it to the file). :mod:`pipeline.isolate` runs decoding in a child process,
adding the kinds 'crashed' and 'timeout'.

Public API: :func:`decode_audio`, :func:`decode_bytes`, :func:`probe_audio`, :func:`file_sha256`,
and the result types :class:`Audio` and :class:`AudioInfo`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from pipeline.runtime import SAMPLE_RATE
from pipeline.types import AudioError

logger = logging.getLogger(__name__)

#: Samples per block when the final length is unknown (4 MiB of float32).
_BLOCK = 1 << 20
#: Longest header duration trusted for preallocation (s); longer headers are treated as unknown.
_MAX_PREALLOC_S = 24 * 3600.0
#: Containers whose header duration is exact (not estimated from the bit rate): used to detect truncation.
_EXACT_LENGTH_FORMATS = {"wav", "w64", "flac", "aiff", "caf", "mov,mp4,m4a,3gp,3g2,mj2"}
#: Undecodable packets are skipped with a warning; beyond this many, and this share of all packets,
#: the file is rejected as corrupt.
_MAX_BAD_PACKETS = 5
_MAX_BAD_SHARE = 0.01
#: Packets decoded by probe_audio to prove the stream really decodes.
_PROBE_PACKETS = 16
#: Mono samples gathered before each call of the resampler (64 Ki: 1.5 s at 44.1 kHz, 256 KiB).
_RESAMPLE_BLOCK = 1 << 16


@dataclass
class Audio:
    """Decoded audio ready for analysis.

    Attributes:
        samples: float32 mono samples in [-1, 1] at ``sample_rate``.
        sample_rate: rate of ``samples`` in Hz (16000 unless asked otherwise).
        source_sample_rate: the file's own sample rate in Hz.
        channels: the file's channel count (``samples`` is their average).
        duration_s: length of ``samples`` in seconds.
        path: the file name (or the upload name for :func:`decode_bytes`).
    """

    samples: np.ndarray
    sample_rate: int
    source_sample_rate: int
    channels: int
    duration_s: float
    path: str


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe_audio` learns from the headers and first packets.

    Attributes:
        path: the file name.
        container: FFmpeg's container name (e.g. 'wav', 'flac', 'mp3', 'ogg', 'matroska,webm').
        codec: FFmpeg's codec name (e.g. 'pcm_s16le', 'flac', 'mp3float', 'opus', 'aac').
        sample_rate: the file's sample rate in Hz.
        channels: channel count.
        duration_s: duration in seconds from the headers; None when the file does not say
            (e.g. browser-recorded WebM).
    """

    path: str
    container: str
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None


# ------------------------------------------------------------------------------------------ public


def decode_audio(path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE) -> Audio:
    """Decode an audio file to float32 mono at ``sample_rate``.

    Args:
        path: any file FFmpeg can read that has an audio stream (the first audio stream is used).
        sample_rate: output rate in Hz (default 16000, what every model expects).

    Returns:
        The decoded :class:`Audio`; channels are averaged, values lie in [-1, 1].

    Raises:
        AudioError: missing, empty, unreadable, non-audio, truncated, corrupt or zero-length input.
    """
    name = os.fspath(path)
    _check_file(name)
    return _decode(name, name, sample_rate)


def decode_bytes(data: bytes, name: str, *, sample_rate: int = SAMPLE_RATE) -> Audio:
    """Decode in-memory audio (an upload, a browser recording) like :func:`decode_audio`.

    Args:
        data: the encoded file's bytes (any format :func:`decode_audio` reads).
        name: a name for messages and for ``Audio.path`` (e.g. the upload's file name).
        sample_rate: output rate in Hz.

    Raises:
        AudioError: empty or bad data, naming ``name``.
    """
    if not data:
        raise AudioError(name, "file is empty", kind="unreadable")
    return _decode(io.BytesIO(data), name, sample_rate)


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Cheaply check that a file is decodable audio, by content (the extension is ignored).

    Reads the headers and decodes the first few packets only.

    Raises:
        AudioError: the file is not audio (text, random bytes, an image...), is empty, missing,
            has no audio stream, or its first packets do not decode.
    """
    name = os.fspath(path)
    _check_file(name)
    with _open_audio(name, name) as (container, stream):
        decoded = 0
        first_error: Exception | None = None
        for i, packet in enumerate(_demux(container, stream, name)):
            try:
                decoded += sum(frame.samples for frame in packet.decode())
            except _decode_errors() as exc:
                first_error = first_error or exc
            if decoded or i + 1 >= _PROBE_PACKETS:
                break
        if not decoded:
            # A tiny file may hold its only samples in the decoder's delay line.
            try:
                decoded += sum(frame.samples for frame in stream.codec_context.decode(None))
            except _decode_errors() as exc:
                first_error = first_error or exc
        if not decoded:
            if first_error is not None:
                raise AudioError(name, f"could not decode: {_plain(first_error)}")
            raise AudioError(name, "no audio (zero length)")
        cc = stream.codec_context
        return AudioInfo(
            path=name,
            container=container.format.name,
            codec=cc.name,
            sample_rate=int(cc.sample_rate),
            channels=int(cc.channels),
            duration_s=_header_duration(container, stream),
        )


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (constant memory).

    Raises:
        AudioError: the file does not exist or cannot be read.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        raise AudioError(name, "file not found", kind="unreadable") from None
    except IsADirectoryError:
        raise AudioError(name, "not a file (a folder)", kind="unreadable") from None
    except OSError as exc:
        raise AudioError(name, f"cannot read: {exc.strerror or exc}", kind="unreadable") from None


# ------------------------------------------------------------------------------------------ helpers


def _decode_errors() -> tuple[type[Exception], ...]:
    import av

    return (av.error.FFmpegError, ValueError)


def _check_file(name: str) -> None:
    p = Path(name)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AudioError(name, "file not found", kind="unreadable") from None
    except OSError as exc:
        raise AudioError(name, f"cannot read: {exc.strerror or exc}", kind="unreadable") from None
    if p.is_dir():
        raise AudioError(name, "not a file (a folder)", kind="unreadable")
    if st.st_size == 0:
        raise AudioError(name, "file is empty", kind="unreadable")
    if not os.access(name, os.R_OK):
        raise AudioError(name, "cannot read: permission denied", kind="unreadable")


def _plain(exc: BaseException) -> str:
    """FFmpeg's message without errno numbers and file names."""
    strerror = getattr(exc, "strerror", None)
    text = strerror if isinstance(strerror, str) and strerror else str(exc)
    return text.rstrip(".").lower() if text else type(exc).__name__


def _read_at(source: str | IO[bytes], offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of a file name or a seekable stream (its position is kept)."""
    try:
        if isinstance(source, str):
            with open(source, "rb") as fh:
                fh.seek(offset)
                return fh.read(size)
        pos = source.tell()
        try:
            source.seek(offset)
            return source.read(size)
        finally:
            source.seek(pos)
    except (OSError, ValueError):
        return b""


def _looks_like_text(source: str | IO[bytes]) -> bool:
    """True when the first KiB is printable UTF-8 (a text file mistaken for audio)."""
    head = _read_at(source, 0, 1024)
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut at the end
            return False
        text = head[: exc.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)


@contextmanager
def _open_audio(source: str | IO[bytes], name: str) -> Iterator[tuple]:
    """Open ``source`` with PyAV and yield (container, first audio stream), or raise AudioError."""
    import av

    try:
        container = av.open(source, mode="r")
    except FileNotFoundError:
        raise AudioError(name, "file not found", kind="unreadable") from None
    except PermissionError:
        raise AudioError(name, "cannot read: permission denied", kind="unreadable") from None
    except (av.error.FFmpegError, ValueError, EOFError, OSError) as exc:
        if _looks_like_text(source):
            raise AudioError(name, "could not decode: not audio (a text file)", kind="unsupported") from None
        raise AudioError(name, "could not decode: not a recognised audio format, or a damaged header "
                               f"({_plain(exc)})", kind="unsupported") from None
    try:
        if not container.streams.audio:
            raise AudioError(name, "no audio stream" + (" (a text file)" if _looks_like_text(source) else ""),
                             kind="unsupported")
        stream = container.streams.audio[0]
        cc = stream.codec_context
        if cc is None or not cc.sample_rate or not cc.channels:
            raise AudioError(name, "could not decode: the audio stream states no codec, sample rate or channels",
                             kind="unsupported")
        yield container, stream
    finally:
        container.close()


def _demux(container, stream, name: str) -> Iterator:
    """Packets of ``stream``; a read error after the start ends the stream (truncation is checked later)."""
    import av

    it = container.demux(stream)
    while True:
        try:
            packet = next(it)
        except StopIteration:
            return
        except (av.error.FFmpegError, EOFError, OSError) as exc:
            logger.warning("%s: reading stopped early: %s", name, _plain(exc))
            return
        if packet.size == 0 and packet.dts is None:
            continue  # the demuxer's flush packet; the decoder is flushed explicitly
        yield packet


def _header_duration(container, stream) -> float | None:
    """Duration in seconds the headers state, or None when unknown."""
    if stream.duration is not None and stream.time_base:
        d = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        d = container.duration / 1_000_000
    else:
        return None
    return d if d > 0 else None


def _exact_header_duration(source: str | IO[bytes], container, stream) -> float | None:
    """The header duration when it is exact (so a shortfall means truncation), else None."""
    fmt = container.format.name
    if fmt == "mp3":
        exact = _mp3_has_length_tag(source)
    else:
        exact = fmt in _EXACT_LENGTH_FORMATS
    return _header_duration(container, stream) if exact else None


def _mp3_has_length_tag(source: str | IO[bytes]) -> bool:
    """Whether an MP3 starts with a Xing/Info/VBRI frame (exact length); otherwise FFmpeg estimates it."""
    head = _read_at(source, 0, 10)
    skip = 0
    if len(head) == 10 and head[:3] == b"ID3":  # skip an ID3v2 tag (syncsafe size)
        skip = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | head[9] & 0x7F)
    first_frame = _read_at(source, skip, 200)
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))


class _SampleSink:
    """A growing float32 buffer: one preallocated array, then fixed blocks if that overflows."""

    def __init__(self, expected: int | None):
        self.main = None
        if expected:
            try:  # untouched pages cost nothing; a bogus huge header just falls back to blocks
                self.main = np.empty(expected, dtype=np.float32)
            except MemoryError:
                logger.debug("cannot preallocate %d samples; growing in blocks", expected)
        self.main_len = 0
        self.blocks: list[np.ndarray] = []
        self.block: np.ndarray | None = None
        self.block_len = 0

    def append(self, x: np.ndarray) -> None:
        while len(x):
            if self.main is not None and self.main_len < len(self.main):
                n = min(len(x), len(self.main) - self.main_len)
                self.main[self.main_len:self.main_len + n] = x[:n]
                self.main_len += n
            else:
                if self.block is None or self.block_len == len(self.block):
                    if self.block is not None:
                        self.blocks.append(self.block)
                    self.block = np.empty(_BLOCK, dtype=np.float32)
                    self.block_len = 0
                n = min(len(x), _BLOCK - self.block_len)
                self.block[self.block_len:self.block_len + n] = x[:n]
                self.block_len += n
            x = x[n:]

    def finish(self) -> np.ndarray:
        """The samples as one array (the preallocated one shrunk in place when it was big enough)."""
        if self.block is None:
            out = self.main if self.main is not None else np.empty(0, dtype=np.float32)
            if len(out) != self.main_len:
                out.resize(self.main_len, refcheck=False)  # realloc: shrinks without a copy
            return out
        parts = ([self.main[: self.main_len]] if self.main is not None else []) + self.blocks
        parts.append(self.block[: self.block_len])
        out = np.concatenate(parts)
        self.main = self.block = None
        self.blocks = []
        return out


def _decode(source: str | IO[bytes], name: str, sample_rate: int) -> Audio:
    with _open_audio(source, name) as (container, stream):
        cc = stream.codec_context
        src_rate, channels = int(cc.sample_rate), int(cc.channels)
        declared = _header_duration(container, stream)
        exact = _exact_header_duration(source, container, stream)
        riff = _riff_data_duration(source) if container.format.name == "wav" else None
        if riff is not None:
            exact = riff  # FFmpeg clamps a WAV's data size to the file size: the header's own figure
        expected = None
        if declared is not None and declared < _MAX_PREALLOC_S:
            expected = int(max(declared, exact or 0.0) * sample_rate * 1.01) + sample_rate // 10
        sink = _SampleSink(expected)
        mono = _MonoResampler(sink, sample_rate)
        bad_packets = packets = 0
        first_error: Exception | None = None

        def take(frames) -> None:
            for frame in frames:
                if frame.samples:
                    mono.feed(frame_to_mono(frame, name), int(frame.sample_rate or src_rate))

        for packet in _demux(container, stream, name):
            packets += 1
            try:
                frames = packet.decode()
            except _decode_errors() as exc:
                bad_packets += 1
                first_error = first_error or exc
                if bad_packets > _MAX_BAD_PACKETS and bad_packets > _MAX_BAD_SHARE * packets:
                    raise AudioError(name, f"could not decode: {bad_packets} of the first {packets} packets "
                                           f"are corrupt ({_plain(first_error)})") from None
                continue
            take(frames)
        try:
            take(cc.decode(None))
        except _decode_errors() as exc:
            bad_packets += 1
            first_error = first_error or exc
        mono.flush()

    samples = sink.finish()
    if bad_packets:
        logger.warning("%s: skipped %d undecodable packet(s): %s", name, bad_packets, _plain(first_error))
    if not len(samples):
        if first_error is not None:
            raise AudioError(name, f"could not decode: {_plain(first_error)}")
        raise AudioError(name, "no audio (zero length)")
    duration = len(samples) / sample_rate
    if exact is not None and duration < exact - max(0.25, 0.02 * exact):
        raise AudioError(name, f"truncated: the header says {exact:.2f} s but only {duration:.2f} s could be "
                               "decoded", kind="truncated")
    _sanitize(samples, name)
    return Audio(samples=samples, sample_rate=sample_rate, source_sample_rate=src_rate, channels=channels,
                 duration_s=duration, path=name)


#: numpy dtype and the scale that maps it into [-1, 1], by FFmpeg sample format (planar: 'p' suffix).
_SAMPLE_FORMATS = {
    "u8": (np.uint8, 1 / 128.0), "s16": (np.int16, 1 / 32768.0), "s32": (np.int32, 1 / 2147483648.0),
    "s64": (np.int64, 1 / 9223372036854775808.0), "flt": (np.float32, 1.0), "dbl": (np.float64, 1.0),
}


def frame_to_mono(frame, name: str = "<audio>") -> np.ndarray:
    """One decoded ``av.AudioFrame`` of any sample format and channel count -> mono float32 samples.

    Reads each channel's plane by index and averages in numpy. (PyAV's ``frame.planes`` and
    ``frame.to_ndarray()`` count planes by scanning for a NULL pointer past the last one, which
    reads out of bounds and crashes the process for planar audio with 8 or more channels.)

    Raises:
        AudioError: a sample format numpy cannot represent (kind 'unsupported').
    """
    from av.audio.plane import AudioPlane

    fmt = frame.format
    base = fmt.name[:-1] if fmt.is_planar else fmt.name
    if base not in _SAMPLE_FORMATS:
        raise AudioError(name, f"could not decode: sample format {fmt.name!r} is not supported", kind="unsupported")
    dtype, scale = _SAMPLE_FORMATS[base]
    n = int(frame.samples)
    ch = int(frame.layout.nb_channels) or 1
    acc = np.zeros(n, dtype=np.float64 if dtype in (np.int32, np.int64, np.float64) else np.float32)
    if fmt.is_planar:
        for i in range(ch):
            acc += np.frombuffer(AudioPlane(frame, i), dtype=dtype, count=n)
    else:
        packed = np.frombuffer(AudioPlane(frame, 0), dtype=dtype, count=n * ch).reshape(n, ch)
        for i in range(ch):  # strided adds: several times faster than a sum over axis 1
            acc += packed[:, i]
    if base == "u8":
        acc -= 128.0 * ch
    acc *= scale / ch
    return acc.astype(np.float32, copy=False)


class _MonoResampler:
    """Mono float32 at any rate -> ``sink`` at ``rate``: FFmpeg's resampler (stateful across frames),
    or a plain copy when the rates already agree. Input is batched into blocks of about
    ``_RESAMPLE_BLOCK`` samples (per-frame calls cost more than the resampling). A new source rate
    mid-stream flushes the old one."""

    def __init__(self, sink: _SampleSink, rate: int):
        self.sink, self.rate = sink, rate
        self.resampler = None
        self.src_rate: int | None = None
        self.pending: list[np.ndarray] = []
        self.n_pending = 0

    def feed(self, mono: np.ndarray, src_rate: int) -> None:
        import av

        if src_rate != self.src_rate:
            self.flush()
            self.src_rate = src_rate
            self.resampler = None if src_rate == self.rate else \
                av.AudioResampler(format="fltp", layout="mono", rate=self.rate)
        if self.resampler is None:
            self.sink.append(mono)
            return
        self.pending.append(mono)
        self.n_pending += len(mono)
        if self.n_pending >= _RESAMPLE_BLOCK:
            self._resample_pending()

    def _resample_pending(self) -> None:
        import av

        if not self.n_pending:
            return
        block = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        self.pending, self.n_pending = [], 0
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, dtype=np.float32)[None, :],
                                           format="fltp", layout="mono")
        frame.sample_rate = self.src_rate
        frame.pts = None  # let the resampler count samples; timestamp gaps are not audio
        self._drain(self.resampler.resample(frame))

    def flush(self) -> None:
        if self.resampler is not None:
            self._resample_pending()
            self._drain(self.resampler.resample(None))
            self.resampler = None

    def _drain(self, frames) -> None:
        from av.audio.plane import AudioPlane

        for f in frames:
            self.sink.append(np.frombuffer(AudioPlane(f, 0), dtype=np.float32, count=f.samples))


def _riff_data_duration(source: str | IO[bytes]) -> float | None:
    """Seconds of audio a WAV's own header declares (the 'data' chunk size over the byte rate).

    None when the header does not say: not RIFF/RF64, no fmt or data chunk, or a streaming header
    (data size 0 or 0xFFFFFFFF, written by recorders that never went back to fill it in).
    """
    import struct

    head = _read_at(source, 0, 12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RF64"):
        return None
    pos, byte_rate, ds64_data = 12, None, None
    for _ in range(64):  # chunks before 'data' (fmt, LIST, fact, ds64...)
        hdr = _read_at(source, pos, 8)
        if len(hdr) < 8:
            return None
        cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        if cid == b"ds64":
            body = _read_at(source, pos + 8, 16)
            if len(body) == 16:
                ds64_data = struct.unpack("<Q", body[8:16])[0]
        elif cid == b"fmt ":
            body = _read_at(source, pos + 8, 16)
            if len(body) < 16:
                return None
            _, _, _, byte_rate, _, _ = struct.unpack("<HHIIHH", body)
        elif cid == b"data":
            if head[:4] == b"RF64" and size == 0xFFFFFFFF:
                size = ds64_data
            if not byte_rate or not size or size == 0xFFFFFFFF:
                return None
            return size / byte_rate
        pos += 8 + size + (size & 1)
    return None


def _sanitize(samples: np.ndarray, name: str) -> None:
    """In place: NaN/inf to 0; scale into [-1, 1] when a float source (or resampling overshoot) exceeds it."""
    # max/min propagate NaN and inf and need no temporary copy of a long file
    if not (np.isfinite(samples.max()) and np.isfinite(samples.min())):
        logger.warning("%s: replaced non-finite samples with 0", name)
        np.nan_to_num(samples, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    peak = max(float(samples.max()), -float(samples.min()))
    if peak > 1.0:
        if peak > 1.01:
            logger.warning("%s: peak %.2f exceeds full scale; scaled into [-1, 1]", name, peak)
        samples /= np.float32(peak)
        np.clip(samples, -1.0, 1.0, out=samples)
