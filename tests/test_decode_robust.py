"""Decoding never crashes the process: any channel count and sample width, truncated and lying headers.

The regression cases ran the decoder into a segfault before (8+ channels: PyAV's ``to_ndarray`` and
``from_ndarray`` scan planes past the last one). Decoding runs through ``decode_isolated`` where a crash
would otherwise take pytest down with it: a crash then shows as an AudioError of kind 'crashed', which
every test here rejects.
"""

from __future__ import annotations

import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.audio import decode_audio
from pipeline.isolate import decode_isolated
from pipeline.types import AUDIO_ERROR_KINDS, AudioError
from tests.fixtures_audio import mux_resampled

RATE = 16000


def _decode(path) -> np.ndarray:
    """Samples of ``path`` decoded in a child; a crash or hang fails the test with the reason."""
    audio = decode_isolated(path, timeout_s=120)
    return audio.samples


def _tone_channels(n_channels: int, seconds: float, rate: int) -> np.ndarray:
    """(n, channels) float32: a different tone and level per channel, all within [-0.5, 0.5]."""
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([(0.5 / (1 + c % 4)) * np.sin(2 * np.pi * (150 + 40 * c) * t) for c in range(n_channels)],
                    axis=1).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 2, 7, 8, 9, 16, 32])
def test_wav_of_any_channel_count_decodes_to_the_mean_of_its_channels(tmp_path, channels):
    x = _tone_channels(channels, 1.0, RATE)
    path = tmp_path / f"c{channels}.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    got = _decode(path)
    assert len(got) == len(x)
    np.testing.assert_allclose(got, x.mean(axis=1), atol=1e-6)


def _write_aac_71(path: Path, x: np.ndarray, rate: int) -> None:
    """8-channel (7.1) AAC in M4A; the decoder gives planar float frames with 8 planes."""
    import av

    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate, layout="7.1")
        cc = stream.codec_context
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x).reshape(1, -1), format="flt", layout="7.1")
        frame.sample_rate, frame.pts = rate, 0
        resampler = av.AudioResampler(format=cc.format.name, layout="7.1", rate=rate, frame_size=cc.frame_size)
        mux_resampled(out, stream, resampler, frame)


def test_planar_8_channel_aac_decodes(tmp_path):
    x = _tone_channels(8, 2.0, 48000)
    path = tmp_path / "surround.m4a"
    _write_aac_71(path, x, 48000)
    audio = decode_isolated(path, timeout_s=120)
    assert audio.channels == 8 and abs(audio.duration_s - 2.0) < 0.1
    # lossy, resampled: compare loudness, not samples
    expected_rms = float(np.sqrt(np.mean(x.mean(axis=1) ** 2)))
    assert abs(float(np.sqrt(np.mean(audio.samples ** 2))) - expected_rms) < 0.2 * expected_rms


@pytest.mark.parametrize("subtype,rate", [("PCM_U8", 11025), ("PCM_16", 16000), ("PCM_24", 44100),
                                          ("PCM_32", 22050), ("FLOAT", 8000), ("DOUBLE", 16000)])
def test_every_sample_width_is_scaled_like_soundfile_reads_it(tmp_path, subtype, rate):
    x = _tone_channels(3, 0.5, rate)
    path = tmp_path / f"w_{subtype}.wav"
    sf.write(path, x, rate, subtype=subtype)
    ref, _ = sf.read(path, dtype="float64")
    got = decode_isolated(path, sample_rate=rate, timeout_s=120).samples
    tol = {"PCM_U8": 1 / 64}.get(subtype, 1e-4)
    np.testing.assert_allclose(got, ref.mean(axis=1), atol=tol)


def _wav_bytes(x: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def test_truncated_wav_fails_naming_both_durations(tmp_path):
    data = _wav_bytes(_tone_channels(1, 3.6, RATE), RATE)
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: 44 + int(1.2 * RATE) * 2])
    with pytest.raises(AudioError) as err:
        decode_isolated(path, timeout_s=120)
    assert err.value.kind == "truncated"
    assert "3.60 s" in err.value.reason and "1.20 s" in err.value.reason


def test_streaming_wav_header_without_a_length_is_not_called_truncated(tmp_path):
    """Recorders that never fill in the sizes write 0xFFFFFFFF: the data runs to the end of the file."""
    data = bytearray(_wav_bytes(_tone_channels(1, 1.5, RATE), RATE))
    assert data[36:40] == b"data"
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    path = tmp_path / "streamed.wav"
    path.write_bytes(bytes(data))
    assert abs(len(_decode(path)) / RATE - 1.5) < 0.01


def test_flac_with_a_garbage_body_fails_with_a_reason(tmp_path):
    good = io.BytesIO()
    sf.write(good, _tone_channels(1, 2.0, RATE), RATE, format="FLAC", subtype="PCM_16")
    data = good.getvalue()
    garbage = np.random.default_rng(1).bytes(len(data) - 200)
    path = tmp_path / "garbage.flac"
    path.write_bytes(data[:200] + garbage)
    with pytest.raises(AudioError) as err:
        decode_isolated(path, timeout_s=120)
    assert err.value.kind in ("decode", "truncated") and err.value.reason


# ----------------------------------------------------------------------------- property-based
_CHECKS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _analysed_or_failed_with_a_reason(data: bytes, suffix: str) -> None:
    """The property: decoding gives finite samples in [-1, 1], or an AudioError with a kind and a one-line
    reason; never a crash, a hang or another exception."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as fh:
        fh.write(data)
        fh.flush()
        try:
            audio = decode_isolated(fh.name, timeout_s=60)
        except AudioError as exc:
            assert exc.kind in AUDIO_ERROR_KINDS and exc.kind not in ("crashed", "timeout"), exc.reason
            assert exc.reason and "\n" not in exc.reason
            return
    assert audio.duration_s > 0 and len(audio.samples) > 0 and audio.channels >= 1
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() <= 1.0


_GUID_PCM = bytes.fromhex("0100000000001000800000aa00389b71")
_GUID_FLOAT = bytes.fromhex("0300000000001000800000aa00389b71")


@st.composite
def wav_files(draw, honest: bool) -> tuple[bytes, dict | None]:
    """(WAV bytes, what an uncut consistent file must decode to, else None).

    ``honest``: a consistent header (PCM 8-32 bit or float 32/64, plain or extensible, 1-40 channels,
    common rates) with a random body; otherwise header fields (format tag, channels, rate, width, block
    align, sizes) that may lie. Either may be cut at any point.
    """
    if honest:
        tag = draw(st.sampled_from([1, 3, 0xFFFE]))
        bits = draw(st.sampled_from([32, 64] if tag == 3 else [8, 16, 24, 32]))
        channels = draw(st.integers(1, 40))
        rate = draw(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]))
        block_align = channels * bits // 8
        byte_rate = block_align * rate
        frames = draw(st.integers(2000, 4000)) if block_align * 2000 <= 200_000 else 200_000 // block_align
        body = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1))).bytes(frames * block_align)
        sub = _GUID_PCM if bits < 32 else _GUID_FLOAT if bits == 64 else draw(st.sampled_from([_GUID_PCM, _GUID_FLOAT]))
        if tag == 3 or (tag == 0xFFFE and sub == _GUID_FLOAT):  # random bytes as floats: NaN/huge; use a tone
            dtype = "<f4" if bits == 32 else "<f8"
            body = (0.5 * np.sin(np.arange(frames * channels) / 5.0)).astype(dtype).tobytes()
        data_size = len(body)
    else:
        tag = draw(st.sampled_from([1, 3, 0xFFFE, 6, 7, 2, 0x11, 0, 0x55, 12345]))
        channels = draw(st.one_of(st.integers(0, 12), st.sampled_from([16, 33, 255, 256, 1024, 65535])))
        rate = draw(st.one_of(st.sampled_from([8000, 16000, 44100]), st.integers(0, 2 ** 32 - 1)))
        bits = draw(st.sampled_from([8, 16, 24, 32, 64, 0, 4, 12, 20]))
        block = channels * max(1, bits // 8)
        block_align = draw(st.one_of(st.just(block), st.integers(0, 65535))) & 0xFFFF
        byte_rate = draw(st.one_of(st.just(block * rate), st.integers(0, 2 ** 32 - 1))) & 0xFFFFFFFF
        body = draw(st.binary(min_size=0, max_size=8192))
        data_size = draw(st.sampled_from([len(body), len(body) * 3 + 1000, len(body) // 3, 0, 0xFFFFFFFF]))
    fmt = struct.pack("<HHIIHH", tag, channels & 0xFFFF, rate, byte_rate, block_align, bits)
    if tag == 0xFFFE:
        mask = draw(st.sampled_from([0, (1 << min(channels, 18)) - 1]) if honest else st.integers(0, 2 ** 32 - 1))
        if not honest:
            sub = draw(st.sampled_from([_GUID_PCM, _GUID_FLOAT, b"\0" * 16]))
        fmt += struct.pack("<HHI", 22, bits, mask) + sub
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_size) + body
    data = b"RIFF" + struct.pack("<I", (4 + len(chunks)) & 0xFFFFFFFF) + b"WAVE" + chunks
    if draw(st.sampled_from([False, False, True]) if honest else st.booleans()):
        return data[:draw(st.integers(0, len(data)))], None
    expect = {"channels": channels, "duration_s": frames / rate} if honest else None
    return data, expect


@given(wav_files(honest=True))
@_CHECKS
def test_consistent_wav_headers_of_any_width_and_channel_count_decode_and_cut_ones_fail_cleanly(case):
    data, expect = case
    if expect is None:
        _analysed_or_failed_with_a_reason(data, ".wav")
        return
    with tempfile.NamedTemporaryFile(suffix=".wav") as fh:
        fh.write(data)
        fh.flush()
        audio = decode_isolated(fh.name, timeout_s=60)  # must decode: an AudioError fails the test
    assert audio.channels == expect["channels"]
    assert abs(audio.duration_s - expect["duration_s"]) < 0.005
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() <= 1.0


@given(wav_files(honest=False))
@_CHECKS
def test_any_wav_header_however_it_lies_is_analysed_or_failed_with_a_reason(case):
    _analysed_or_failed_with_a_reason(case[0], ".wav")


def _mutate(draw, data: bytes) -> bytes:
    """Cut ``data`` somewhere, and/or overwrite some bytes after its first 4 (the magic)."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(4, max(4, len(data) - 1)))
        chunk = draw(st.binary(min_size=1, max_size=64))
        data[pos:pos + len(chunk)] = chunk
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return bytes(data if cut is None else data[:cut])


@st.composite
def flac_files(draw) -> bytes:
    channels = draw(st.integers(1, 8))
    rate = draw(st.sampled_from([8000, 16000, 44100, 48000, 96000]))
    subtype = draw(st.sampled_from(["PCM_16", "PCM_24", "PCM_S8"]))
    buf = io.BytesIO()
    sf.write(buf, _tone_channels(channels, draw(st.sampled_from([0.05, 0.3, 1.0])), rate), rate,
             format="FLAC", subtype=subtype)
    return _mutate(draw, buf.getvalue())


@given(flac_files())
@_CHECKS
def test_any_flac_cut_or_damaged_is_analysed_or_failed_with_a_reason(data):
    _analysed_or_failed_with_a_reason(data, ".flac")


@pytest.fixture(scope="module")
def mp3_bytes(format_variants) -> bytes:
    return format_variants["mp3"].read_bytes()


@given(data=st.data())
@settings(_CHECKS, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.function_scoped_fixture])
def test_any_mp3_cut_or_damaged_is_analysed_or_failed_with_a_reason(mp3_bytes, data):
    _analysed_or_failed_with_a_reason(_mutate(data.draw, mp3_bytes), ".mp3")


def test_in_process_decoding_of_8_channels_matches_the_child(tmp_path):
    """The fix is in the decoder itself, not only in the isolation: in-process decoding of the case that
    crashed (8 channels) gives the same samples as the child."""
    x = _tone_channels(8, 0.5, RATE)
    path = tmp_path / "eight.wav"
    sf.write(path, x, RATE, subtype="PCM_16")
    in_child = _decode(path)  # first: were the fix lost, this fails cleanly instead of killing pytest
    np.testing.assert_array_equal(decode_audio(path).samples, in_child)
