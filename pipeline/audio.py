"""Decode any common audio file to float32 mono 16 kHz, with one error type for bad input.

Everything goes through PyAV (FFmpeg's libraries, no subprocess): WAV (8/16/24/32-bit integer or
float), FLAC, MP3, Ogg (Opus/Vorbis/FLAC), M4A/AAC, WebM/Matroska and anything else FFmpeg reads, at
any sample rate and channel count. Decoding is packet by packet: each decoded frame is converted and
resampled to float at the target rate by ``av.AudioResampler``, averaged over channels, and written into
one preallocated buffer sized from the header's duration (blocks appended when there is no duration or
it was short), so decoding a long file needs about its 16 kHz float32 size, at most about twice that.

Bad input of any kind raises :class:`pipeline.types.AudioError` with the file name and a plain reason:
"file not found", "file is empty", "no audio stream", "no audio (zero length)",
"truncated: ...", "could not decode: ...".

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

from pipeline.types import AudioError

logger = logging.getLogger(__name__)

#: The analysis sample rate of every stage (Hz).
TARGET_SAMPLE_RATE = 16000

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


def decode_audio(path: str | os.PathLike, *, sample_rate: int = TARGET_SAMPLE_RATE) -> Audio:
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


def decode_bytes(data: bytes, name: str, *, sample_rate: int = TARGET_SAMPLE_RATE) -> Audio:
    """Decode in-memory audio (an upload, a browser recording) like :func:`decode_audio`.

    Args:
        data: the encoded file's bytes (any format :func:`decode_audio` reads).
        name: a name for messages and for ``Audio.path`` (e.g. the upload's file name).
        sample_rate: output rate in Hz.

    Raises:
        AudioError: empty or bad data, naming ``name``.
    """
    if not data:
        raise AudioError(name, "file is empty")
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
        raise AudioError(name, "file not found") from None
    except IsADirectoryError:
        raise AudioError(name, "not a file (a folder)") from None
    except OSError as exc:
        raise AudioError(name, f"cannot read: {exc.strerror or exc}") from None


# ------------------------------------------------------------------------------------------ helpers


def _decode_errors() -> tuple[type[Exception], ...]:
    import av

    return (av.error.FFmpegError, ValueError)


def _check_file(name: str) -> None:
    p = Path(name)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AudioError(name, "file not found") from None
    except OSError as exc:
        raise AudioError(name, f"cannot read: {exc.strerror or exc}") from None
    if p.is_dir():
        raise AudioError(name, "not a file (a folder)")
    if st.st_size == 0:
        raise AudioError(name, "file is empty")
    if not os.access(name, os.R_OK):
        raise AudioError(name, "cannot read: permission denied")


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
        raise AudioError(name, "file not found") from None
    except PermissionError:
        raise AudioError(name, "cannot read: permission denied") from None
    except (av.error.FFmpegError, ValueError, EOFError, OSError) as exc:
        if _looks_like_text(source):
            raise AudioError(name, "could not decode: not audio (a text file)") from None
        raise AudioError(name, "could not decode: not a recognised audio format, or a damaged header "
                               f"({_plain(exc)})") from None
    try:
        if not container.streams.audio:
            raise AudioError(name, "no audio stream" + (" (a text file)" if _looks_like_text(source) else ""))
        stream = container.streams.audio[0]
        cc = stream.codec_context
        if cc is None or not cc.sample_rate or not cc.channels:
            raise AudioError(name, "could not decode: the audio stream states no codec, sample rate or channels")
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
    import av

    with _open_audio(source, name) as (container, stream):
        cc = stream.codec_context
        src_rate, channels = int(cc.sample_rate), int(cc.channels)
        declared = _header_duration(container, stream)
        exact = _exact_header_duration(source, container, stream)
        expected = None
        if declared is not None and declared < _MAX_PREALLOC_S:
            expected = int(declared * sample_rate * 1.01) + sample_rate // 10
        sink = _SampleSink(expected)
        resampler = None
        setup = None
        bad_packets = packets = 0
        first_error: Exception | None = None

        def take(frames) -> None:
            nonlocal resampler, setup
            for frame in frames:
                key = (frame.format.name, frame.layout.nb_channels, frame.sample_rate)
                if key != setup:  # first frame, or the stream changed its parameters mid-way
                    if resampler is not None:
                        _mix_into(sink, resampler.resample(None))
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=sample_rate)
                    setup = key
                frame.pts = None  # let the resampler count samples; timestamp gaps are not audio
                _mix_into(sink, resampler.resample(frame))

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
        if resampler is not None:
            _mix_into(sink, resampler.resample(None))

    samples = sink.finish()
    if bad_packets:
        logger.warning("%s: skipped %d undecodable packet(s): %s", name, bad_packets, _plain(first_error))
    if not len(samples):
        if first_error is not None:
            raise AudioError(name, f"could not decode: {_plain(first_error)}")
        raise AudioError(name, "no audio (zero length)")
    duration = len(samples) / sample_rate
    if exact is not None and duration < exact - max(0.25, 0.02 * exact):
        raise AudioError(name, f"truncated: the header says {exact:.2f} s but only {duration:.2f} s could be decoded")
    _sanitize(samples, name)
    return Audio(samples=samples, sample_rate=sample_rate, source_sample_rate=src_rate, channels=channels,
                 duration_s=duration, path=name)


def _mix_into(sink: _SampleSink, frames) -> None:
    for frame in frames:
        planes = frame.to_ndarray()  # (channels, n) float32 for planar 'fltp'
        sink.append(planes[0] if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float32))


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
