"""Whisper transcription on a tiny random-weight checkpoint (fast; its text is noise, its mechanics are real)."""

from __future__ import annotations

import pytest

from pipeline.config import Config
from pipeline.transcribe import (
    CPU_AUTO_MODEL,
    GPU_AUTO_MODEL,
    ChunkTranscript,
    assign_words,
    decode_window,
    load_whisper,
    resolve_whisper_name,
    transcribe_chunks,
)
from pipeline.types import Chunk, ModelUnavailableError, Word

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
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        load_whisper("base", CPU)
    assert err.value.model == "base"
    assert "--whisper-model none" in str(err.value) and str(tmp_path) in str(err.value)


def test_a_missing_checkpoint_file_raises_model_unavailable(tmp_path):
    with pytest.raises(ModelUnavailableError, match="no checkpoint file"):
        load_whisper(str(tmp_path / "absent.pt"), CPU)


def test_none_turns_transcription_off(jfk_16k):
    assert resolve_whisper_name("none", CPU) is None
    assert load_whisper("none", CPU) is None
    out = transcribe_chunks(None, jfk_16k, JFK_CHUNKS)
    assert [(t.text, t.language, t.words) for t in out] == [("", None, [])] * len(JFK_CHUNKS)


def test_auto_picks_the_size_by_device_when_its_weights_are_on_disk(tmp_path, monkeypatch):
    import os

    import whisper

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "whisper").mkdir()
    for size in (CPU_AUTO_MODEL, GPU_AUTO_MODEL):
        (tmp_path / "whisper" / os.path.basename(whisper._MODELS[size])).write_bytes(b"x")
    assert resolve_whisper_name("auto", Config(device="cpu")) == CPU_AUTO_MODEL
    assert resolve_whisper_name("auto", Config(device="cuda")) == GPU_AUTO_MODEL == "large-v3"
    assert resolve_whisper_name(None, Config(device="cpu", whisper_model="tiny")) == "tiny"


def test_auto_without_weights_offline_means_no_transcription(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_whisper_name("auto", Config(device="cpu")) is None


def test_an_unknown_language_is_refused_by_name(tiny, jfk_16k):
    with pytest.raises(ValueError, match="klingon"):
        transcribe_chunks(tiny, jfk_16k, JFK_CHUNKS, language="klingon")
