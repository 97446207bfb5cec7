"""Decoding: every format/rate/width/layout to float32 mono 16 kHz; one error type for bad input."""

from __future__ import annotations

import hashlib
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

import pipeline.audio as audio_mod
from pipeline.audio import decode_audio, decode_bytes, file_sha256, probe_audio
from pipeline.types import AudioError

#: Decoded duration vs the source (s): PCM/FLAC are exact to a sample or so, lossy codecs pad a frame.
PCM_TOL_S = 0.002
LOSSY_TOL_S = 0.030
LOSSY = {"mp3", "ogg_opus", "webm_opus", "m4a_aac"}
#: Expected bad-input reasons (a plain phrase inside AudioError.reason).
BAD_REASONS = {
    "empty": "file is empty",
    "random_bytes": "could not decode",
    "truncated_mp3": "truncated",
    "text_as_mp3": "text file",
    "zero_length_wav": "zero length",
    "image_png": "no audio stream",
    "missing": "file not found",
}
#: The kind (files.error_type) of each bad input.
BAD_KINDS = {
    "empty": "unreadable", "random_bytes": "unsupported", "truncated_mp3": "truncated", "text_as_mp3": "unsupported",
    "zero_length_wav": "decode", "image_png": "unsupported", "missing": "unreadable",
}


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    """Highest normalised cross-correlation of a and b over lags within ±max_lag samples."""
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.concatenate([xc[: max_lag + 1], xc[-max_lag:]])
    return float(lags.max() / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def source_16k(variant_source) -> np.ndarray:
    """The variant source clip as the variants hold it (scaled to 0.95 peak), 16 kHz."""
    x, sr = sf.read(str(variant_source[0]), dtype="float32")
    assert sr == 16000
    return 0.95 * x / np.max(np.abs(x))


# ---------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", ["flac_16k", "wav_8k", "wav_48k", "wav_96k", "wav_24bit", "wav_float32",
                                  "wav_8bit", "wav_stereo_44k", "mp3", "ogg_opus", "webm_opus", "m4a_aac",
                                  "flac_96k"])
def test_every_format_variant_decodes_to_16k_mono_float_with_the_source_duration(name, format_variants,
                                                                                 variant_source):
    a = decode_audio(format_variants[name])
    tol = LOSSY_TOL_S if name in LOSSY else PCM_TOL_S
    assert a.sample_rate == 16000
    assert a.samples.dtype == np.float32 and a.samples.ndim == 1
    assert abs(a.duration_s - variant_source[1]) <= tol
    assert abs(len(a.samples) / 16000 - a.duration_s) < 1e-9
    assert float(np.max(np.abs(a.samples))) <= 1.0


@pytest.mark.parametrize("name", ["wav_8k", "wav_96k", "wav_24bit", "wav_float32", "wav_8bit", "wav_stereo_44k",
                                  "mp3", "ogg_opus", "webm_opus", "m4a_aac", "flac_96k"])
def test_every_format_variant_decodes_to_the_same_sound_at_the_same_level(name, format_variants, source_16k):
    a = decode_audio(format_variants[name])
    # the stereo variant holds the clip at full level left and half level right: its mono mix is 0.75
    gain = 0.75 if name == "wav_stereo_44k" else 1.0
    rms_ratio = np.sqrt(np.mean(a.samples ** 2)) / (gain * np.sqrt(np.mean(source_16k ** 2)))
    # 8 kHz keeps only the band below 4 kHz, so compare it on that band's share of the waveform
    min_corr = 0.8 if name == "wav_8k" else 0.9
    assert _best_correlation(a.samples, source_16k, max_lag=800) >= min_corr
    assert 0.85 <= rms_ratio <= 1.12


@pytest.mark.parametrize("name", ["wav_8k", "wav_48k", "wav_96k", "wav_stereo_44k", "mp3", "ogg_opus", "m4a_aac"])
def test_decoding_reports_the_files_own_rate_and_channel_count(name, format_variants):
    info = sf.info(str(format_variants[name])) if format_variants[name].suffix == ".wav" else None
    a = decode_audio(format_variants[name])
    expected_rate = {"wav_8k": 8000, "wav_48k": 48000, "wav_96k": 96000, "wav_stereo_44k": 44100,
                     "mp3": 44100, "ogg_opus": 48000, "m4a_aac": 44100}[name]
    assert a.source_sample_rate == expected_rate
    assert a.channels == (info.channels if info else 1)


def test_real_shared_recordings_decode_with_their_stated_durations(speech_dir):
    for fname in ("LJ001-0001.wav", "LJ001-0001.mp3", "jfk.flac"):
        path = speech_dir / fname
        a = decode_audio(path)
        assert a.sample_rate == 16000 and a.samples.ndim == 1
        if path.suffix != ".mp3":
            assert abs(a.duration_s - sf.info(str(path)).duration) < PCM_TOL_S
    assert decode_audio(speech_dir / "jfk.flac").channels == 2


def test_mp3_and_wav_of_the_same_recording_decode_to_the_same_sound(speech_dir):
    wav = decode_audio(speech_dir / "LJ001-0001.wav")
    mp3 = decode_audio(speech_dir / "LJ001-0001.mp3")
    assert abs(wav.duration_s - mp3.duration_s) < LOSSY_TOL_S
    assert _best_correlation(wav.samples, mp3.samples, max_lag=1600) > 0.9


def test_ravdess_clips_decode_unchanged(ravdess_clips):
    for clip in ravdess_clips[:3]:
        ref, sr = sf.read(str(clip.path), dtype="float32")
        a = decode_audio(clip.path)
        assert sr == 16000 and a.source_sample_rate == 16000
        np.testing.assert_allclose(a.samples, ref, atol=1e-4)


def test_decoding_accepts_a_pathlike_and_records_the_name(format_variants):
    a = decode_audio(str(format_variants["mp3"]))
    assert a.path == str(format_variants["mp3"])


def test_decoding_to_another_sample_rate_is_possible(format_variants, variant_source):
    a = decode_audio(format_variants["wav_48k"], sample_rate=8000)
    assert a.sample_rate == 8000
    assert abs(len(a.samples) / 8000 - variant_source[1]) <= PCM_TOL_S


def test_float_audio_beyond_full_scale_is_scaled_into_range_not_clipped(tmp_path):
    t = np.arange(16000) / 16000
    x = (1.8 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    sf.write(tmp_path / "hot.wav", x, 16000, subtype="FLOAT")
    a = decode_audio(tmp_path / "hot.wav")
    assert float(np.max(np.abs(a.samples))) <= 1.0
    np.testing.assert_allclose(a.samples, x / 1.8, atol=1e-3)  # a scaled sine, not a clipped one


def test_non_finite_samples_become_zero(tmp_path):
    x = np.full(1600, 0.25, dtype=np.float32)
    x[100] = np.nan
    x[200] = np.inf
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    a = decode_audio(tmp_path / "nan.wav")
    assert np.isfinite(a.samples).all()
    assert a.samples[100] == 0 and a.samples[200] == 0


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", sorted(BAD_REASONS))
def test_bad_input_raises_audio_error_with_the_file_name_and_a_plain_reason(name, bad_inputs):
    path = bad_inputs[name]
    with pytest.raises(AudioError) as err:
        decode_audio(path)
    assert err.value.path == str(path)
    assert BAD_REASONS[name] in err.value.reason
    assert err.value.kind == BAD_KINDS[name]
    assert str(path) in str(err.value)
    assert "Errno" not in err.value.reason and "Traceback" not in err.value.reason


@pytest.mark.parametrize("name", sorted(set(BAD_REASONS) - {"truncated_mp3"}))
def test_probe_rejects_non_audio_by_content(name, bad_inputs):
    with pytest.raises(AudioError) as err:
        probe_audio(bad_inputs[name])
    assert err.value.path == str(bad_inputs[name])


def test_a_folder_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="not a file"):
        decode_audio(tmp_path)


def test_a_truncated_flac_is_reported_as_truncated(tmp_path, format_variants):
    data = format_variants["flac_16k"].read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated"):
        decode_audio(tmp_path / "cut.flac")


def test_an_mp3_with_one_corrupt_stretch_still_decodes(tmp_path, format_variants):
    data = bytearray(format_variants["mp3"].read_bytes())
    mid = len(data) // 2
    data[mid:mid + 300] = bytes(300)  # a damaged frame or two in the middle
    (tmp_path / "scratched.mp3").write_bytes(bytes(data))
    a = decode_audio(tmp_path / "scratched.mp3")
    assert a.duration_s > 0.9 * decode_audio(format_variants["mp3"]).duration_s


def test_an_mp3_damaged_throughout_is_rejected_as_corrupt(tmp_path, format_variants):
    data = bytearray(format_variants["mp3"].read_bytes())
    rng = np.random.default_rng(0)
    for i in range(2000, len(data), 400):
        data[i:i + 150] = rng.bytes(150)
    (tmp_path / "garbled.mp3").write_bytes(bytes(data))
    with pytest.raises(AudioError, match="corrupt"):
        decode_audio(tmp_path / "garbled.mp3")


# ---------------------------------------------------------------------------------------- probe


@pytest.mark.parametrize("name", ["flac_16k", "wav_8k", "wav_96k", "wav_24bit", "wav_float32", "wav_8bit",
                                  "wav_stereo_44k", "mp3", "ogg_opus", "webm_opus", "m4a_aac"])
def test_probe_accepts_real_audio_of_every_format_and_reads_its_headers(name, format_variants, variant_source):
    info = probe_audio(format_variants[name])
    a = decode_audio(format_variants[name])
    assert info.sample_rate == a.source_sample_rate
    assert info.channels == a.channels
    assert info.duration_s is not None and abs(info.duration_s - variant_source[1]) < 0.05


def test_probe_does_not_read_to_the_end_so_truncation_is_found_by_decoding(bad_inputs):
    info = probe_audio(bad_inputs["truncated_mp3"])  # the first frames are real audio
    assert info.codec.startswith("mp3")
    with pytest.raises(AudioError, match="truncated"):
        decode_audio(bad_inputs["truncated_mp3"])


def test_probe_finds_audio_by_content_whatever_the_extension(tmp_path, format_variants):
    disguised = tmp_path / "recording.txt"
    disguised.write_bytes(format_variants["ogg_opus"].read_bytes())
    assert probe_audio(disguised).codec == "opus"


def test_probe_reads_only_the_start_of_the_file(format_variants, monkeypatch):
    packets = []
    real = audio_mod._demux

    def counting(container, stream, name):
        for p in real(container, stream, name):
            packets.append(p)
            yield p

    monkeypatch.setattr(audio_mod, "_demux", counting)
    probe_audio(format_variants["mp3"])
    n_probe = len(packets)
    packets.clear()
    decode_audio(format_variants["mp3"])
    assert n_probe <= 2 < len(packets)


# ---------------------------------------------------------------------------------------- bytes & hashing


def test_wav_bytes_decode_like_the_file(format_variants):
    data = format_variants["wav_48k"].read_bytes()
    a = decode_bytes(data, "upload.wav")
    b = decode_audio(format_variants["wav_48k"])
    assert a.path == "upload.wav"
    np.testing.assert_array_equal(a.samples, b.samples)


def test_compressed_bytes_decode_too(format_variants, variant_source):
    a = decode_bytes(format_variants["webm_opus"].read_bytes(), "mic.webm")
    assert abs(a.duration_s - variant_source[1]) <= LOSSY_TOL_S


@pytest.mark.parametrize("data, reason", [(b"", "file is empty"), (b"RIFF\x00\x00", "could not decode")])
def test_bad_bytes_raise_audio_error_naming_the_upload(data, reason):
    with pytest.raises(AudioError) as err:
        decode_bytes(data, "upload.wav")
    assert err.value.path == "upload.wav" and reason in err.value.reason


def test_file_sha256_matches_hashlib(format_variants):
    path = format_variants["wav_96k"]
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_sha256_of_a_missing_file_raises_audio_error(bad_inputs):
    with pytest.raises(AudioError, match="file not found"):
        file_sha256(bad_inputs["missing"])


# ---------------------------------------------------------------------------------------- memory


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory) -> tuple[str, float]:
    """A 20-minute 22.05 kHz FLAC (a gated tone, so that it is small), written block by block."""
    sr, minutes = 22050, 20
    path = tmp_path_factory.mktemp("long") / "long.flac"
    t = np.arange(10 * sr) / sr
    block = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(np.float32)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as fh:
        for _ in range(minutes * 6):
            fh.write(block)
    return str(path), minutes * 60.0


def _peak_traced_bytes(fn) -> tuple[int, object]:
    tracemalloc.start()
    try:
        result = fn()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_decoding_a_long_file_peaks_near_its_16k_float_size(long_flac):
    path, duration = long_flac
    peak, a = _peak_traced_bytes(lambda: decode_audio(path))
    assert abs(a.duration_s - duration) < PCM_TOL_S
    assert peak <= 1.25 * a.samples.nbytes  # one buffer sized from the header, shrunk in place


def test_decoding_a_long_file_without_a_stated_duration_stays_within_twice_its_size(long_flac, monkeypatch):
    monkeypatch.setattr(audio_mod, "_header_duration", lambda container, stream: None)
    path, duration = long_flac
    peak, a = _peak_traced_bytes(lambda: decode_audio(path))
    assert abs(a.duration_s - duration) < PCM_TOL_S
    assert peak <= 2.1 * a.samples.nbytes


def test_audio_error_keeps_its_kind_across_processes():
    import pickle

    err = pickle.loads(pickle.dumps(AudioError("a.wav", "truncated: the header says 3.00 s", kind="truncated")))
    assert (err.path, err.reason, err.kind, str(err)) == ("a.wav", "truncated: the header says 3.00 s", "truncated",
                                                          "a.wav: truncated: the header says 3.00 s")


def test_decode_time_is_decoding_only_not_model_loading(format_variants, monkeypatch):
    """timings['decode_s'] used to be 'everything not timed elsewhere', so it swallowed model loading."""
    import time

    from pipeline.analyze import Analyzer
    from pipeline.config import Config

    analyzer = Analyzer(Config().replace(whisper_model="none", explain="none"))
    real_emotion = Analyzer.emotion

    def slow_first_load(self):
        if self.emotion_model is None:
            time.sleep(1.5)  # what loading a real checkpoint costs, at least
        return real_emotion(self)

    monkeypatch.setattr(Analyzer, "emotion", slow_first_load)
    result = analyzer.analyze_file(format_variants["flac_16k"])
    assert result.timings["decode_s"] < 1.0
