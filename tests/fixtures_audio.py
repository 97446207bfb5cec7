"""Audio fixtures (a pytest plugin, registered in tests/conftest.py): real clips and generated variants.

Session-scoped, written once per run into a temp folder from real clips of ``ravdess_dir`` (the full corpus at
../shared/datasets, or the clips shipped in tests/data: tests/fixtures_datasets.py):

* ``ravdess_clips``: a few (path, emotion, actor) rows of the RAVDESS manifest, one per emotion.
* ``variant_source``: the clip every format variant is made from (path, duration in s).
* ``format_variants``: name -> path of the same clip as MP3, Ogg/Opus, WebM/Opus, M4A/AAC, stereo,
  8/48/96 kHz, 24-bit, 32-bit float and 8-bit WAV, FLAC (written with PyAV and soundfile encoders).
* ``bad_inputs``: name -> path of files that must be rejected with AudioError (empty, random bytes named
  .wav, truncated MP3, text named .mp3, zero-length WAV, an image, a missing file).
* ``no_speech_inputs``: name -> path of files that decode but hold no speech (silence only, low-level
  noise only, a 0.1 s clip): chunking gives no chunks.
* ``three_utterances_wav``: three RAVDESS clips joined by 1.5 s of digital silence, with the known spans.

Plain helpers (importable): :func:`speech_like`, :func:`write_with_pyav`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import soundfile as sf

#: Emotions of the RAVDESS manifest, one clip each in ``ravdess_clips``.
RAVDESS_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
#: Silence between the clips of ``three_utterances_wav`` (s).
GAP_S = 1.5


class RavdessClip(NamedTuple):
    path: Path
    emotion: str
    actor: int


@dataclass(frozen=True)
class JoinedClips:
    """A WAV made of clips joined by digital silence; usable wherever a path is (``os.PathLike``).

    Attributes:
        path: the 16 kHz mono 16-bit WAV.
        clips: (start_s, end_s) of each source clip inside the file.
        gaps: (start_s, end_s) of the digital silence between consecutive clips.
        sources: the clip files, in order.
    """

    path: Path
    clips: list[tuple[float, float]]
    gaps: list[tuple[float, float]]
    sources: list[Path]

    def __fspath__(self) -> str:
        return str(self.path)


# ------------------------------------------------------------------------------------------ helpers


def write_with_pyav(path: Path, samples: np.ndarray, sample_rate: int, *, container: str, codec: str,
                    rate: int | None = None, bit_rate: int | None = None) -> Path:
    """Encode float samples ((n,) mono or (n, channels)) with PyAV into ``path``.

    Args:
        container: FFmpeg muxer name ('mp3', 'ogg', 'webm', 'ipod', 'flac', ...).
        codec: encoder name ('libmp3lame', 'libopus', 'aac', 'flac', ...).
        rate: the encoded sample rate (default ``sample_rate``); the input is resampled by FFmpeg.
    """
    import av

    x = np.asarray(samples, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    layout = {1: "mono", 2: "stereo"}[x.shape[1]]
    rate = rate or sample_rate
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        cc = stream.codec_context
        resampler = av.AudioResampler(format=cc.format.name, layout=layout, rate=rate,
                                      frame_size=cc.frame_size or None)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = 0
        mux_resampled(out, stream, resampler, frame)
    return path


def mux_resampled(out, stream, resampler, frame) -> None:
    """Resample ``frame`` to the encoder's format and frame size, encode it and mux every packet, flushing both."""
    pts = 0
    for f in resampler.resample(frame) + resampler.resample(None):
        f.pts = pts
        pts += f.samples
        for packet in stream.encode(f):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def speech_like(duration_s: float, sample_rate: int = 16000, *, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A synthetic continuous 'speech-like' signal without pauses (float32 mono).

    Voiced syllables (a harmonic source with a wandering 100-220 Hz pitch plus breath noise) of
    150-300 ms under a raised-cosine envelope, separated by 30-120 ms stretches that stay about 30 dB
    below the syllables: never silent for long, so only the max-length rule can split it.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    env = np.full(n, 10 ** (-30 / 20), dtype=np.float64)
    pos = 0
    while pos < n:
        syl = int(rng.uniform(0.15, 0.30) * sample_rate)
        gap = int(rng.uniform(0.03, 0.12) * sample_rate)
        end = min(n, pos + syl)
        w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(end - pos) / max(1, syl))
        env[pos:end] = np.maximum(env[pos:end], w * rng.uniform(0.5, 1.0))
        pos = end + gap
    t = np.arange(n) / sample_rate
    f0 = 160 + 60 * np.sin(2 * np.pi * 0.3 * t) * np.sin(2 * np.pi * 0.07 * t + 1.0)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    x = env * (voiced / 2.0 + 0.1 * rng.standard_normal(n))
    return (level * x / np.max(np.abs(x))).astype(np.float32)


def _read_manifest(ravdess_dir: Path) -> list[dict[str, str]]:
    with open(ravdess_dir / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def audio_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="session")
def ravdess_clips(ravdess_dir) -> list[RavdessClip]:
    """One clip per manifest emotion, from different actors (both genders), normal intensity if any."""
    rows = _read_manifest(ravdess_dir)
    clips = []
    for i, emotion in enumerate(RAVDESS_EMOTIONS):
        actor = 1 + (3 * i) % 18
        match = [r for r in rows if r["emotion"] == emotion and int(r["actor"]) == actor]
        if not match:
            pytest.fail(f"RAVDESS manifest has no {emotion} clip of actor {actor}")
        row = sorted(match, key=lambda r: (r["intensity"] != "normal", r["path"]))[0]
        clips.append(RavdessClip(ravdess_dir / row["path"], emotion, actor))
    return clips


@pytest.fixture(scope="session")
def variant_source(ravdess_clips) -> tuple[Path, float]:
    """(path, duration_s) of the clip the format variants are made from."""
    path = ravdess_clips[4].path  # 'angry': loud, wide dynamics
    return path, sf.info(str(path)).duration


@pytest.fixture(scope="session")
def format_variants(audio_tmp, variant_source) -> dict[str, Path]:
    """The variant-source clip in every format, rate, width and channel layout the decoder must read.

    The stereo variant has the clip at full level on the left and half level on the right.
    """
    import librosa

    src, _ = variant_source
    x, sr = sf.read(str(src), dtype="float32")
    x = 0.95 * x / np.max(np.abs(x))  # full scale, so that width scaling errors show
    d = audio_tmp / "variants"
    d.mkdir()

    def at(rate: int) -> np.ndarray:
        return x if rate == sr else librosa.resample(x, orig_sr=sr, target_sr=rate).astype(np.float32)

    v: dict[str, Path] = {"flac_16k": d / "clip.flac"}
    sf.write(v["flac_16k"], x, sr, subtype="PCM_16")
    for name, rate, subtype in [("wav_8k", 8000, "PCM_16"), ("wav_48k", 48000, "PCM_16"),
                                ("wav_96k", 96000, "PCM_24"), ("wav_24bit", 44100, "PCM_24"),
                                ("wav_float32", 22050, "FLOAT"), ("wav_8bit", 11025, "PCM_U8")]:
        v[name] = d / f"{name}.wav"
        sf.write(v[name], np.clip(at(rate), -1, 1), rate, subtype=subtype)
    v["wav_stereo_44k"] = d / "wav_stereo_44k.wav"
    y = at(44100)
    sf.write(v["wav_stereo_44k"], np.stack([y, 0.5 * y], axis=1), 44100, subtype="PCM_16")
    v["mp3"] = write_with_pyav(d / "clip.mp3", x, sr, container="mp3", codec="libmp3lame", rate=44100,
                               bit_rate=128_000)
    v["ogg_opus"] = write_with_pyav(d / "clip.opus.ogg", x, sr, container="ogg", codec="libopus", rate=48000,
                                    bit_rate=64_000)
    v["webm_opus"] = write_with_pyav(d / "clip.webm", x, sr, container="webm", codec="libopus", rate=48000,
                                     bit_rate=64_000)
    v["m4a_aac"] = write_with_pyav(d / "clip.m4a", x, sr, container="ipod", codec="aac", rate=44100,
                                   bit_rate=128_000)
    v["flac_96k"] = write_with_pyav(d / "clip_96k.flac", at(96000), 96000, container="flac", codec="flac")
    return v


@pytest.fixture(scope="session")
def bad_inputs(audio_tmp, format_variants) -> dict[str, Path]:
    """Files that are not decodable audio; each must raise AudioError naming it."""
    d = audio_tmp / "bad"
    d.mkdir()
    b: dict[str, Path] = {}
    b["empty"] = d / "empty.wav"
    b["empty"].write_bytes(b"")
    b["random_bytes"] = d / "random.wav"
    b["random_bytes"].write_bytes(np.random.default_rng(7).bytes(64_000))
    mp3 = format_variants["mp3"].read_bytes()
    b["truncated_mp3"] = d / "truncated.mp3"
    b["truncated_mp3"].write_bytes(mp3[: len(mp3) * 2 // 5])
    b["text_as_mp3"] = d / "notes.mp3"
    b["text_as_mp3"].write_text("Meeting notes\n- call the studio about the recordings\n- ask for WAV files\n" * 20)
    b["zero_length_wav"] = d / "zero_length.wav"
    sf.write(b["zero_length_wav"], np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    b["image_png"] = d / "picture.wav"
    _write_png(b["image_png"])
    b["missing"] = d / "does_not_exist.flac"
    return b


@pytest.fixture(scope="session")
def no_speech_inputs(audio_tmp, variant_source) -> dict[str, Path]:
    """Files that decode fine but hold no speech: chunking must give no chunks."""
    d = audio_tmp / "no_speech"
    d.mkdir()
    rng = np.random.default_rng(3)
    out = {"silence_only": d / "silence.wav", "noise_only": d / "noise.wav", "clip_0_1s": d / "short.wav"}
    sf.write(out["silence_only"], np.zeros(5 * 16000, dtype=np.float32), 16000, subtype="PCM_16")
    noise = (10 ** (-60 / 20) * rng.standard_normal(5 * 44100)).astype(np.float32)  # steady hiss, -60 dBFS
    sf.write(out["noise_only"], noise, 44100, subtype="PCM_16")
    x, sr = sf.read(str(variant_source[0]), dtype="float32")
    loudest = int(np.argmax(np.abs(x)))
    start = max(0, loudest - sr // 20)
    sf.write(out["clip_0_1s"], x[start:start + sr // 10], sr, subtype="PCM_16")
    return out


@pytest.fixture(scope="session")
def three_utterances_wav(audio_tmp, ravdess_clips) -> JoinedClips:
    """Three RAVDESS clips (different actors) joined by 1.5 s of digital silence, 16 kHz 16-bit WAV."""
    sources = [ravdess_clips[i].path for i in (2, 3, 5)]
    parts, clips, gaps, t = [], [], [], 0.0
    sr = 16000
    for k, src in enumerate(sources):
        x, rate = sf.read(str(src), dtype="float32")
        assert rate == sr, f"{src}: expected 16 kHz RAVDESS FLAC"
        if k:
            parts.append(np.zeros(int(GAP_S * sr), dtype=np.float32))
            gaps.append((t, t + GAP_S))
            t += GAP_S
        parts.append(x)
        clips.append((t, t + len(x) / sr))
        t += len(x) / sr
    path = audio_tmp / "three_utterances.wav"
    sf.write(path, np.concatenate(parts), sr, subtype="PCM_16")
    return JoinedClips(path=path, clips=clips, gaps=gaps, sources=sources)


def _write_png(path: Path) -> None:
    """A small real PNG image (an audio-named file that holds no audio stream)."""
    import struct
    import zlib

    w = h = 8
    raw = b"".join(b"\x00" + b"".join(bytes([(x * 32) % 256, (y * 32) % 256, 128]) for x in range(w)) for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)
