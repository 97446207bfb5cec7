"""Whisper transcription on a tiny random-weight checkpoint (fast; its text is noise, its mechanics are real)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Config
from pipeline.transcribe import (
    CPU_AUTO_MODEL,
    GPU_AUTO_MODEL,
    ChunkTranscript,
    decode_window,
    load_whisper,
    resolve_whisper_name,
    transcribe_chunks,
)
from pipeline.types import Chunk, ModelUnavailableError, Word
from pipeline.words import assign_words

CPU = Config(device="cpu")
#: Three speech regions of jfk.flac (11 s), with gaps between them.
JFK_CHUNKS = [Chunk(0.3, 3.4), Chunk(3.9, 7.4), Chunk(8.0, 10.8)]
#: A random decoder never emits end-of-text: cap its tokens per window to keep the tests quick.
FEW_TOKENS = 24


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model's matrices are too small to gain from threads; on a busy 2-core machine two
    OpenMP threads spin against other processes and decode ~10-20x slower. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tiny_whisper_path):
    return load_whisper(str(tiny_whisper_path), CPU)


def whisper_languages() -> set[str]:
    from whisper.tokenizer import LANGUAGES

    return set(LANGUAGES)


def test_the_fixture_checkpoint_loads_with_whisper_load_model(tiny_whisper_path):
    import whisper

    model = whisper.load_model(str(tiny_whisper_path), device="cpu")
    assert model.dims.n_text_state == 64 and model.is_multilingual


def test_a_checkpoint_path_loads_once_and_is_marked_untrained(tiny_whisper_path, tiny):
    assert tiny.emotivoice_trained is False
    assert load_whisper(str(tiny_whisper_path), CPU) is tiny


@pytest.fixture(scope="module", params=["windows", "per_chunk"])
def detected(request, tiny, jfk_16k):
    """(strategy, transcripts) of jfk.flac with a detected language, greedy, repetition loops kept."""
    out = transcribe_chunks(tiny, jfk_16k, JFK_CHUNKS, strategy=request.param, beam_size=1,
                            sample_len=FEW_TOKENS, max_compression_ratio=None)
    return request.param, out


def test_each_chunk_gets_one_transcript_with_a_detected_language(detected):
    _, out = detected
    assert len(out) == len(JFK_CHUNKS)
    assert all(isinstance(t, ChunkTranscript) for t in out)
    for t in out:
        assert t.language in whisper_languages()
        assert 0.0 <= t.language_probability <= 1.0


def test_words_of_each_chunk_lie_inside_the_chunk(detected):
    _, out = detected
    assert sum(len(t.words) for t in out) > 0
    for chunk, t in zip(JFK_CHUNKS, out):
        for w in t.words:
            assert chunk.start_s <= w.start_s <= w.end_s <= chunk.end_s, (chunk, w)
        assert t.text == "".join(w.word for w in t.words).strip()


@pytest.mark.parametrize("strategy", ["windows", "per_chunk"])
def test_a_given_language_is_used_for_every_chunk(tiny, jfk_16k, strategy):
    out = transcribe_chunks(tiny, jfk_16k, JFK_CHUNKS, language="de", strategy=strategy, beam_size=1,
                            sample_len=FEW_TOKENS)
    assert [t.language for t in out] == ["de"] * len(JFK_CHUNKS)
    assert all(t.language_probability is None for t in out)


def test_beam_search_decodes_text(tiny, jfk_16k):
    # Greedy search (beam 1) is what the `detected` runs above use.
    out = transcribe_chunks(tiny, jfk_16k, JFK_CHUNKS, language="en", beam_size=5, sample_len=FEW_TOKENS,
                            max_compression_ratio=None)
    assert len(out) == len(JFK_CHUNKS)
    assert any(t.text for t in out)


@pytest.mark.timeout(300)
def test_an_untrained_models_repetition_loop_is_dropped_with_the_default_settings(tiny, jfk_16k):
    # As the pipeline calls it (beam 5, language detected, Whisper's 224 tokens per window): the
    # random decoder loops on one token; that window is skipped once, not re-decoded word by word.
    out = transcribe_chunks(tiny, jfk_16k, JFK_CHUNKS)
    assert len(out) == len(JFK_CHUNKS)
    assert [t.text for t in out] == [""] * len(JFK_CHUNKS)


def test_the_faster_beam_search_decodes_the_same_tokens_as_whisper(tiny, jfk_16k):
    import whisper

    mel = whisper.pad_or_trim(whisper.log_mel_spectrogram(jfk_16k, tiny.dims.n_mels), whisper.audio.N_FRAMES)
    options = whisper.DecodingOptions(language="en", beam_size=5, sample_len=FEW_TOKENS, fp16=False)
    ours, theirs = decode_window(tiny, mel, options), tiny.decode(mel, options)
    assert len(ours.tokens) > 0
    assert ours.tokens == theirs.tokens
    assert ours.avg_logprob == pytest.approx(theirs.avg_logprob, abs=1e-4)


def test_words_go_to_the_chunk_holding_their_midpoint():
    chunks = [Chunk(0.0, 2.0), Chunk(3.0, 5.0)]
    words = [
        Word(" straddles", 1.5, 3.1),  # midpoint 2.3: in the gap, 0.3 s from the first chunk
        Word(" late", 2.9, 3.5),  # midpoint 3.2: second chunk, start clipped to 3.0
        Word(" lost", 2.4, 2.6),  # midpoint 2.5: 0.5 s from both chunks, dropped
    ]
    first, second = assign_words(words, chunks)
    assert [w.word for w in first] == [" straddles"] and first[0].end_s == 2.0
    assert [(w.word, w.start_s) for w in second] == [(" late", 3.0)]


def test_a_missing_size_raises_model_unavailable_naming_it(monkeypatch, tmp_path):
    # 'small' has no packaged faster-whisper weights: only openai-whisper's .pt would do.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        load_whisper("small", CPU)
    assert err.value.model == "small"
    assert "--whisper-model none" in str(err.value) and str(tmp_path) in str(err.value)


def test_a_missing_checkpoint_file_raises_model_unavailable(tmp_path):
    with pytest.raises(ModelUnavailableError, match="no checkpoint file"):
        load_whisper(str(tmp_path / "absent.pt"), CPU)


def test_none_turns_transcription_off(jfk_16k):
    assert resolve_whisper_name("none", CPU) is None
    assert load_whisper("none", CPU) is None
    out = transcribe_chunks(None, jfk_16k, JFK_CHUNKS)
    assert [(t.text, t.language, t.words) for t in out] == [("", None, [])] * len(JFK_CHUNKS)


@pytest.fixture
def no_packaged_weights(monkeypatch):
    """As on a machine where the weights extra was not installed (and nothing was assembled before)."""
    from pipeline import whisper_weights

    monkeypatch.setattr(whisper_weights, "package_file", lambda part: None)


def test_auto_on_cpu_is_faster_whisper_base_with_the_packaged_weights(fw_config, fw_base):
    assert resolve_whisper_name("auto", fw_config) == "faster-whisper base (int8)"
    model = load_whisper("auto", fw_config)
    assert model is fw_base and model.emotivoice_name == "faster-whisper base (int8)"
    assert model.emotivoice_trained is True and model.is_multilingual


def test_auto_on_a_gpu_prefers_large_v3_when_its_weights_are_on_disk(tmp_path, monkeypatch):
    import os

    import whisper

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / os.path.basename(whisper._MODELS[GPU_AUTO_MODEL])).write_bytes(b"x")
    assert resolve_whisper_name("auto", Config(device="cuda")) == GPU_AUTO_MODEL == "large-v3"
    assert resolve_whisper_name(None, Config(device="cpu", whisper_model="tiny")) == "tiny"


def test_auto_on_a_gpu_without_large_v3_falls_back_to_faster_whisper_and_says_why(tmp_path, monkeypatch, fw_config):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    label = resolve_whisper_name("auto", fw_config.replace(device="cuda"))
    assert label.startswith("faster-whisper base (")
    assert "fallback: Whisper large-v3 is not in" in label and str(tmp_path) in label


def test_auto_without_packaged_weights_uses_a_cached_openai_base_and_says_why(tmp_path, monkeypatch,
                                                                              no_packaged_weights):
    import os

    import whisper

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / os.path.basename(whisper._MODELS[CPU_AUTO_MODEL])).write_bytes(b"x")
    label = resolve_whisper_name("auto", Config(device="cpu", data_dir=str(tmp_path / "data")))
    assert label.startswith("base — fallback (openai-whisper): ") and "make install" in label


def test_auto_without_any_weights_offline_means_no_transcription_and_says_why(tmp_path, monkeypatch,
                                                                             no_packaged_weights):
    from pipeline.analyze import Analyzer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = Config(device="cpu", data_dir=str(tmp_path / "data"), emotion_model="compact")
    label = resolve_whisper_name("auto", config)
    assert label.startswith("none: ") and "not installed" in label and "make install" in label
    assert load_whisper("auto", config) is None
    # What a result records (and the CLI and dashboard show): the reason, not a bare "off".
    assert Analyzer(config).model_info().whisper == label


def test_an_explicit_packaged_size_without_its_weights_is_refused_naming_it(tmp_path, no_packaged_weights,
                                                                           monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        load_whisper("tiny.en", Config(device="cpu", data_dir=str(tmp_path / "data")))
    assert err.value.model == "tiny.en" and "make install" in str(err.value)


def test_an_unknown_language_is_refused_by_name(tiny, jfk_16k):
    with pytest.raises(ValueError, match="klingon"):
        transcribe_chunks(tiny, jfk_16k, JFK_CHUNKS, language="klingon")


# --------------------------------------------------------------------------- packaged weights: sha256 before use


def test_packaged_weights_are_assembled_verified_and_rehashed_only_when_the_file_changes(tmp_path, monkeypatch):
    import hashlib
    import os

    from pipeline import whisper_weights as W

    config = Config(device="cpu", whisper_dir=str(tmp_path))
    hashed: list[str] = []
    real_sha = W.sha256_of
    monkeypatch.setattr(W, "sha256_of", lambda paths: hashed.append(paths[0].name) or real_sha(paths))

    folder = W.ensure_weights("tiny.en", config)
    model_bin = folder / "model.bin"
    assert hashlib.sha256(model_bin.read_bytes()).hexdigest() == W.SPECS["tiny.en"].model_sha256
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in folder.iterdir()}

    hashed.clear()
    assert W.ensure_weights("tiny.en", config) == folder
    assert "model.bin" not in hashed  # the marker (size + mtime) spares re-hashing 75 MB

    st = model_bin.stat()
    os.utime(model_bin, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new mtime: hashed again
    W.ensure_weights("tiny.en", config)
    assert "model.bin" in hashed

    with open(model_bin, "r+b") as fh:  # a changed byte: re-assembled from the packages
        fh.seek(1000)
        fh.write(bytes([fh.read(1)[0] ^ 0xFF]))
    W.ensure_weights("tiny.en", config)
    assert hashlib.sha256(model_bin.read_bytes()).hexdigest() == W.SPECS["tiny.en"].model_sha256


def test_weights_whose_sha256_does_not_match_are_refused_by_name(tmp_path, monkeypatch):
    import dataclasses

    from pipeline import whisper_weights as W

    expected = "0" * 64
    monkeypatch.setitem(W.SPECS, "tiny.en", dataclasses.replace(W.SPECS["tiny.en"], model_sha256=expected))
    config = Config(device="cpu", whisper_dir=str(tmp_path))
    with pytest.raises(W.WeightsError, match=f"model.bin .* has sha256 [0-9a-f]{{64}}, expected {expected}: refused"):
        W.ensure_weights("tiny.en", config)
    assert not (tmp_path / "faster-whisper-tiny.en" / "model.bin").exists()
    with pytest.raises(ModelUnavailableError, match="tiny.en.*refused"):
        load_whisper("tiny.en", config)


def test_auto_refuses_mismatching_weights_and_runs_without_words_saying_why(tmp_path, monkeypatch):
    import dataclasses

    from pipeline import whisper_weights as W

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(W.SPECS, "base", dataclasses.replace(W.SPECS["base"], model_sha256="f" * 64))
    label = resolve_whisper_name("auto", Config(device="cpu", whisper_dir=str(tmp_path / "w")))
    assert label.startswith("none: faster-whisper base weights: model.bin") and "refused" in label


# --------------------------------------------------------------------------- real words (real weights)


def test_base_transcribes_jfk_with_words_inside_each_chunk(fw_base, jfk_16k):
    from bench.whisper_fw import word_error_rate

    out = transcribe_chunks(fw_base, jfk_16k, JFK_CHUNKS)
    assert [t.language for t in out] == ["en"] * 3
    assert out[0].language_probability > 0.8
    for chunk, t in zip(JFK_CHUNKS, out):
        assert t.words, chunk
        for w in t.words:
            assert chunk.start_s <= w.start_s <= w.end_s <= chunk.end_s, (chunk, w)
    text = " ".join(t.text for t in out)
    ref = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    assert word_error_rate([ref], [text]) <= 0.1, text


def test_tiny_en_is_english_only_and_measures_no_language_probability(fw_tiny_en, jfk_16k):
    assert not fw_tiny_en.is_multilingual and fw_tiny_en.emotivoice_name == "faster-whisper tiny.en (int8)"
    out = transcribe_chunks(fw_tiny_en, jfk_16k, JFK_CHUNKS, beam_size=1)
    assert [(t.language, t.language_probability) for t in out] == [("en", None)] * 3
    assert "country" in out[-1].text.lower()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("which", ["fw_base", "fw_tiny_en"])
def test_word_error_rate_on_read_speech(request, which, speech_clips):
    # Measured 4.7 % (base) and 2.7 % (tiny.en) with Whisper's English normaliser (bench.whisper_fw).
    from bench.whisper_fw import transcribe_clips, word_error_rate

    model = request.getfixturevalue(which)
    outs = transcribe_clips(model, speech_clips)
    wer = word_error_rate([ref for _, _, ref in speech_clips], [t.text for t in outs])
    assert wer <= 0.10, [(name, t.text) for (name, _, _), t in zip(speech_clips, outs)]


@pytest.mark.timeout(900)
def test_a_long_file_keeps_its_tail(fw_base, speech_clips):
    # The clips back to back (>= 60 s, > 2 of Whisper's 30 s windows), one chunk per clip, the beam
    # analysis runs: the last clip's words are there, with times in the last clip, up to its end.
    from bench.whisper_fw import long_file, word_error_rate

    samples, spans = long_file(speech_clips)
    assert len(samples) / 16000 >= 60.0
    chunks = [c for c, _ in spans]
    out = transcribe_chunks(fw_base, samples, chunks, beam_size=Config().beam_size)
    (last, ref), tail = spans[-1], out[-1]
    assert word_error_rate([ref], [tail.text]) <= 0.25, tail.text
    assert all(last.start_s <= w.start_s <= w.end_s <= last.end_s for w in tail.words)
    assert max(w.end_s for w in tail.words) >= last.end_s - 1.5, (last, tail.words[-3:])
    # Nor does any clip in the middle go missing (a window merged into one segment loses its words).
    missing = [c for c, t in zip(chunks, out) if not t.words]
    assert not missing, missing


def test_wordless_stretches_are_whole_wordless_chunks_and_long_gaps_between_words():
    from pipeline.words import wordless_stretches

    chunks = [Chunk(0.0, 1.8), Chunk(3.0, 3.3), Chunk(5.0, 10.0)]
    words = [[], [], [Word(" one", 5.1, 5.5, 0.9), Word(" two", 8.0, 8.4, 0.9)]]
    # a 1.8 s chunk without a word, not the 0.3 s one; in the third, the 2.5 s gap between its words
    assert wordless_stretches(chunks, words) == [(0.0, 1.8), (5.5, 8.0)]


@pytest.mark.timeout(600)
def test_every_utterance_of_a_recorded_session_gets_its_words(fw_base):
    # examples/audio/session_actor03.flac: one actor says "Dogs are sitting by the door" four times with
    # pauses; Whisper decoding the file in one window skipped the 2nd and 4th utterance.
    from pathlib import Path

    from pipeline.audio import decode_audio
    from pipeline.chunking import chunk_speech

    audio = decode_audio(Path(__file__).resolve().parents[1] / "examples" / "audio" / "session_actor03.flac")
    chunks = chunk_speech(audio.samples, audio.sample_rate, Config()).chunks
    assert len(chunks) == 4
    out = transcribe_chunks(fw_base, audio.samples, chunks, beam_size=Config().beam_size)
    for chunk, t in zip(chunks, out):
        assert "sitting by the door" in t.text.lower(), (chunk, t.text)
        assert all(chunk.start_s <= w.start_s <= w.end_s <= chunk.end_s for w in t.words)


def test_packed_speech_shortens_long_pauses_and_maps_words_back_to_their_chunk():
    from pipeline.words import PACK_GAP_S, pack_speech

    sr = 16000
    samples = np.arange(100 * sr, dtype=np.float32) / (100 * sr)
    chunks = [Chunk(1.0, 3.0), Chunk(3.5, 5.0), Chunk(60.0, 62.0)]
    packed = pack_speech(samples, chunks)
    # a 0.5 s pause is kept; the 55 s one is cut to PACK_GAP_S of silence
    assert packed.starts.tolist() == pytest.approx([0.0, 2.5, 4.0 + PACK_GAP_S])
    assert len(packed.audio) == pytest.approx((2.0 + 0.5 + 1.5 + PACK_GAP_S + 2.0) * sr, abs=2)
    assert packed.audio[int(2.5 * sr)] == samples[int(3.5 * sr)]
    assert not packed.audio[int(4.1 * sr):int((4.0 + PACK_GAP_S) * sr) - 1].any()
    heard = [Word(" a", 0.2, 0.5, 0.9), Word(" b", 2.6, 3.0, 0.9), Word(" c", 4.0 + PACK_GAP_S + 0.5, 4.0 + PACK_GAP_S + 1.0, 0.9),
             Word(" d", 4.0 + PACK_GAP_S - 0.3, 4.0 + PACK_GAP_S + 0.1, 0.9)]  # starts in the silence, as Whisper's words do
    out = packed.to_file_time(heard)
    assert [(w.word, w.start_s, w.end_s) for w in out] == [
        (" a", 1.2, 1.5), (" b", 3.6, 4.0), (" c", 60.5, 61.0), (" d", 60.0, 60.1)]


@pytest.mark.timeout(600)
def test_a_long_pause_costs_no_window_and_detection_shares_the_first_windows_frames_and_encoder_pass(fw_base, jfk_16k):
    # jfk's three phrases with 45 s of silence after the first: the speech fits one 30 s window, so
    # detection and decoding encode once, and every word is timed inside its own chunk.
    from bench.whisper_fw import word_error_rate

    pause = 45.0
    cut = int(3.6 * 16000)
    samples = np.concatenate([jfk_16k[:cut], np.zeros(int(pause * 16000), np.float32), jfk_16k[cut:]])
    chunks = [JFK_CHUNKS[0]] + [Chunk(c.start_s + pause, c.end_s + pause) for c in JFK_CHUNKS[1:]]
    class Counting:  # the extractor, counting its calls
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, x, **kw):
            self.calls += 1
            return self.inner(x, **kw)

    memo, mels = fw_base.model.encode, fw_base.model.feature_extractor
    encodes, inner, inner_mel = [], memo._fn, mels._fn
    memo._fn = lambda f: encodes.append(f.shape) or inner(f)
    mels._fn = counting = Counting(inner_mel)
    try:
        out = transcribe_chunks(fw_base, samples, chunks)
    finally:
        memo._fn, mels._fn = inner, inner_mel
    assert len(encodes) == 1 and counting.calls == 1, (encodes, counting.calls)
    assert out[0].language == "en" and out[0].language_probability > 0.8
    for chunk, t in zip(chunks, out):
        assert t.words, chunk
        assert all(chunk.start_s <= w.start_s <= w.end_s <= chunk.end_s for w in t.words), (chunk, t.words)
    ref = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    assert word_error_rate([ref], [" ".join(t.text for t in out)]) <= 0.1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.2, 1.0]), st.sampled_from([0.1, 1.0])), max_size=6),
       st.floats(-1.0, 15.0))
def test_the_nearest_chunk_search_agrees_with_looking_at_every_chunk(steps, t):
    # chunks in time order, touching or apart, as the chunker makes them; the earlier chunk wins a tie
    from pipeline.words import nearest_chunk

    starts, ends, x = [], [], 0.0
    for gap, length in steps:
        starts.append(x + gap)
        ends.append(x + gap + length)
        x = ends[-1]
    for probe in [t, *starts, *ends]:
        dist = [0.0 if a <= probe <= b else min(abs(probe - a), abs(probe - b)) for a, b in zip(starts, ends)]
        expected = (dist.index(min(dist)), min(dist)) if dist else (-1, float("inf"))
        got = nearest_chunk(probe, starts, ends)
        assert got[0] == expected[0] and got[1] == pytest.approx(expected[1])
