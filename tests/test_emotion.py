"""pipeline.emotion: loading checkpoints of each supported form and running them on real RAVDESS clips."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import types

import numpy as np
import pytest

from pipeline.config import Config
from pipeline.emotion import (
    HFEmotionModel,
    clear_model_cache,
    load_emotion_model,
)
from pipeline.model_resolution import resolve_emotion_spec
from pipeline.types import EmotionModel, ModelUnavailableError
from tests.fixtures_models import build_tiny_checkpoint

CPU = Config(device="cpu", quantize="none", batch_size=4)
FORMS = ["tiny_hubert_dir", "tiny_superb_dir", "tiny_extra_label_dir"]


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.fixture(scope="module")
def clips(ravdess_dir) -> list[np.ndarray]:
    """Four real RAVDESS clips (16 kHz mono float32) of different lengths and emotions."""
    import soundfile as sf

    names = ["Actor_01/03-01-01-01-01-01-01.flac", "Actor_02/03-01-05-02-01-01-02.flac",
             "Actor_03/03-01-04-01-02-02-03.flac", "Actor_04/03-01-06-02-02-01-04.flac"]
    out = []
    for name in names:
        samples, sr = sf.read(ravdess_dir / name, dtype="float32", always_2d=True)
        assert sr == 16000
        out.append(samples.mean(axis=1))
    assert len({c.size for c in out}) == len(out), "the clips are meant to differ in length"
    return out


def _load(request, fixture_name: str, config: Config = CPU) -> HFEmotionModel:
    return load_emotion_model(str(request.getfixturevalue(fixture_name)), config)


# ---------------------------------------------------------------- loading and labels

def test_seed_checkpoint_loads_with_canonical_labels_in_model_order(tiny_hubert_dir):
    model = load_emotion_model(str(tiny_hubert_dir), CPU)
    assert isinstance(model, HFEmotionModel) and isinstance(model, EmotionModel)
    assert model.architecture == "seed"
    assert model.labels == ("anger", "fear", "happiness", "neutral", "sadness", "surprise")
    assert model.absent_labels == ()


def test_seed_checkpoint_uses_the_public_head_weight_names(tiny_hubert_dir):
    from safetensors import safe_open

    config = json.loads((tiny_hubert_dir / "config.json").read_text())
    assert config["architectures"] == ["HubertForSpeechClassification"]
    assert config["pooling_mode"] == "mean"
    with safe_open(str(tiny_hubert_dir / "model.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
            "classifier.out_proj.bias"} <= keys
    assert any(k.startswith("hubert.encoder.") for k in keys)


def test_superb_checkpoint_reports_fear_and_surprise_absent(tiny_superb_dir):
    model = load_emotion_model(str(tiny_superb_dir), CPU)
    assert model.architecture == "sequence"
    assert model.raw_labels == ("neu", "hap", "ang", "sad")
    assert model.labels == ("neutral", "happiness", "anger", "sadness")
    assert model.absent_labels == ("fear", "surprise")


def test_label_outside_the_six_is_kept_under_the_models_own_name(tiny_extra_label_dir, clips):
    model = load_emotion_model(str(tiny_extra_label_dir), CPU)
    assert model.labels == ("neutral", "happiness", "anger", "sadness", "dis")
    assert model.extra_labels == ("dis",)
    proba = model.predict_proba(clips[:1])
    assert proba.shape == (1, 5) and proba[0, 4] > 0


def test_labels_mapping_to_the_same_emotion_are_merged_by_summing(tmp_path, clips):
    labels = ("neu", "hap", "exc", "ang", "sad")  # IEMOCAP: excited counts as happiness
    merged = load_emotion_model(str(build_tiny_checkpoint(tmp_path / "m", form="superb", labels=labels)), CPU)
    assert merged.labels == ("neutral", "happiness", "anger", "sadness")
    raw = merged.model
    import torch

    with torch.no_grad():
        inputs = merged.feature_extractor(clips[0], sampling_rate=16000, return_tensors="pt")
        full = torch.softmax(raw(inputs.input_values).logits, dim=-1)[0].numpy()
    got = merged.predict_proba(clips[:1])[0]
    np.testing.assert_allclose(got, [full[0], full[1] + full[2], full[3], full[4]], atol=1e-5)


# ---------------------------------------------------------------- predictions

@pytest.mark.parametrize("form", FORMS)
def test_probabilities_sum_to_one_for_every_clip(request, form, clips):
    proba = _load(request, form).predict_proba(clips)
    assert proba.shape[0] == len(clips)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (proba >= 0).all()


@pytest.mark.parametrize("form", FORMS)
def test_clips_get_different_probabilities(request, form, clips):
    proba = _load(request, form).predict_proba(clips)
    assert np.abs(proba[0] - proba[1]).max() > 1e-3  # so the equality tests below are not vacuous


@pytest.mark.parametrize("form", FORMS)
def test_clip_alone_equals_the_same_clip_in_a_batch_with_a_longer_clip(request, form, clips):
    model = _load(request, form)
    short, long_ = sorted(clips, key=len)[0], sorted(clips, key=len)[-1]
    alone = model.predict_proba([short])
    batched = model.predict_proba([long_, short, long_])
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-6)
    np.testing.assert_allclose(batched[0], batched[2], atol=1e-6)


def test_masked_model_batches_different_lengths_together(tiny_extra_label_dir, tiny_superb_dir, clips):
    masked = load_emotion_model(str(tiny_extra_label_dir), Config(device="cpu", quantize="none", batch_size=8))
    unmasked = load_emotion_model(str(tiny_superb_dir), Config(device="cpu", quantize="none", batch_size=8))
    assert masked.pads_with_mask and not unmasked.pads_with_mask
    prepared = [masked._prepare(c) for c in clips]
    batches = masked._batches(prepared)
    assert any(len({prepared[i].size for i in b}) > 1 for b in batches)  # padded together
    assert sorted(i for b in batches for i in b) == list(range(len(clips)))
    assert len(unmasked._batches(prepared)) == len(clips)  # all lengths differ: no padding, no mixing


@pytest.mark.parametrize("seconds, per_pass", [(1.0, [8, 2]), (3.0, [2, 2, 2, 2, 2]), (10.0, [1] * 3)])
def test_on_cpu_a_forward_pass_takes_at_most_eight_seconds_of_audio(tiny_hubert_dir, seconds, per_pass):
    from pipeline.emotion import CPU_BATCH_SAMPLES

    model = load_emotion_model(str(tiny_hubert_dir), Config(device="cpu", quantize="none", batch_size=8))
    signals = [np.zeros(int(seconds * 16000), np.float32)] * sum(per_pass)
    batches = model._batches(signals)
    assert [len(b) for b in batches] == per_pass
    assert all(len(b) * int(seconds * 16000) <= max(CPU_BATCH_SAMPLES, int(seconds * 16000)) for b in batches)


def test_batch_size_bounds_each_forward_pass(tiny_hubert_dir, clips):
    model = load_emotion_model(str(tiny_hubert_dir), Config(device="cpu", quantize="none", batch_size=2))
    same_length = [clips[0]] * 5
    assert [len(b) for b in model._batches([model._prepare(c) for c in same_length])] == [2, 2, 1]


@pytest.mark.parametrize("form", FORMS)
def test_mean_of_frame_features_through_head_reproduces_predict_proba(request, form, clips):
    model = _load(request, form)
    for clip in clips[:2]:
        frames = model.frame_features(clip)
        via_head = model.head_proba(frames.mean(axis=0, keepdims=True))[0]
        np.testing.assert_allclose(via_head, model.predict_proba([clip])[0], atol=1e-5)


@pytest.mark.parametrize("form", ["tiny_superb_dir", "tiny_extra_label_dir", "tiny_hubert_dir"])
def test_predictions_reproduce_the_checkpoints_own_forward(request, form, clips):
    import torch

    model = _load(request, form)
    fe = model.feature_extractor
    # A model whose feature extractor returns a mask is checked on a padded batch; the others take one clip.
    n = 2 if fe.return_attention_mask else 1
    inputs = fe(clips[:n], sampling_rate=16000, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model.model(**inputs).logits
    expected = torch.softmax(logits, dim=-1).numpy()
    np.testing.assert_allclose(model.predict_proba(clips[: len(expected)]), expected, atol=1e-5)


def test_frame_features_have_one_frame_per_20_ms(tiny_hubert_dir, clips):
    model = load_emotion_model(str(tiny_hubert_dir), CPU)
    frames = model.frame_features(clips[0])
    assert model.frame_hop_s == pytest.approx(0.02)
    assert frames.shape == ((clips[0].size - 400) // 320 + 1, 32)
    assert frames.dtype == np.float32


def test_head_proba_maps_k_pooled_vectors_to_k_distributions(tiny_superb_dir, clips):
    model = load_emotion_model(str(tiny_superb_dir), CPU)
    frames = model.frame_features(clips[0])
    pooled = np.stack([frames[:10].mean(0), frames[10:].mean(0), frames.mean(0)])
    proba = model.head_proba(pooled)
    assert proba.shape == (3, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_signal_shorter_than_one_frame_is_padded_to_one_frame(tiny_hubert_dir):
    model = load_emotion_model(str(tiny_hubert_dir), CPU)
    tiny = np.random.default_rng(0).normal(0, 0.1, 100).astype(np.float32)
    assert model.frame_features(tiny).shape == (1, 32)
    assert model.predict_proba([tiny]).shape == (1, 6)


def test_empty_signal_is_rejected_with_the_model_name(tiny_hubert_dir):
    model = load_emotion_model(str(tiny_hubert_dir), CPU)
    with pytest.raises(ValueError, match="empty signal"):
        model.predict_proba([np.zeros(0, dtype=np.float32)])


# ---------------------------------------------------------------- attention

@pytest.mark.parametrize("form", ["tiny_hubert_dir", "tiny_extra_label_dir"])
def test_attentions_are_layers_by_frames_with_rows_summing_to_one(request, form, clips):
    model = _load(request, form)
    maps = model.attentions(clips[0])
    n_frames = model.frame_features(clips[0]).shape[0]
    assert model.has_attention
    assert maps.shape == (2, n_frames, n_frames)
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, atol=1e-4)


def test_attentions_leave_the_fast_attention_kernel_in_place(tiny_hubert_dir, clips):
    model = load_emotion_model(str(tiny_hubert_dir), CPU)
    before_impl = model.model.config._attn_implementation
    before = model.predict_proba(clips[:1])
    model.attentions(clips[0])
    assert model.model.config._attn_implementation == before_impl
    np.testing.assert_allclose(model.predict_proba(clips[:1]), before, atol=1e-6)


def test_frames_and_attention_come_from_one_forward_pass_matching_the_separate_calls(tiny_hubert_dir, clips):
    model = load_emotion_model(str(tiny_hubert_dir), CPU)
    calls = []
    hook = model.model.hubert.register_forward_hook(lambda *a: calls.append(1))
    try:
        frames, maps = model.frames_and_attentions(clips[0])
    finally:
        hook.remove()
    assert len(calls) == 1
    np.testing.assert_allclose(frames, model.frame_features(clips[0]), atol=1e-5)
    np.testing.assert_allclose(maps, model.attentions(clips[0]), atol=1e-6)


def _reference_attention(model_dir, signal):
    """Mean-over-heads maps from transformers' own eager attention with ``output_attentions`` (no
    EmotiVoice code in the path but input normalisation)."""
    import torch

    model = load_emotion_model(str(model_dir), CPU.replace(quantize="none"))
    raw = type(model.model).from_pretrained(str(model_dir), attn_implementation="eager").eval()
    x = torch.from_numpy(model._prepare(signal))[None]
    with torch.no_grad():
        out = raw.hubert(x, output_attentions=True)
    return np.stack([a[0].mean(dim=0).numpy() for a in out.attentions])


@pytest.mark.parametrize("form", ["tiny_hubert_dir", "tiny_extra_label_dir"])
def test_captured_attention_equals_transformers_eager_attention(request, form, clips):
    model = _load(request, form, CPU.replace(quantize="none"))
    frames, maps = model.frames_and_attentions(clips[0])
    assert model._capture_ok is True  # the capturing kernel ran, not the eager fallback
    np.testing.assert_allclose(maps, _reference_attention(request.getfixturevalue(form), clips[0]), atol=1e-5)
    np.testing.assert_allclose(frames, model.frame_features(clips[0]), atol=1e-5)


def test_attention_falls_back_to_eager_attention_without_attention_interface(tiny_hubert_dir, clips, monkeypatch):
    from pipeline import attention

    model = load_emotion_model(str(tiny_hubert_dir), CPU.replace(quantize="none"))
    expected = _reference_attention(tiny_hubert_dir, clips[0])
    monkeypatch.setattr(attention, "capture_registered", lambda: False)
    frames, maps = model.frames_and_attentions(clips[0])
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    assert model.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("form", ["tiny_hubert_dir", "tiny_superb_dir", "tiny_extra_label_dir"])
def test_head_affine_reproduces_head_proba(request, form):
    model = _load(request, form)
    weight, bias, rest = model.head_affine()
    pooled = np.random.default_rng(0).normal(size=(7, weight.shape[1])).astype(np.float32)
    np.testing.assert_allclose(rest(pooled.astype(np.float64) @ weight.T + bias), model.head_proba(pooled),
                               atol=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_fast_tier_head_shortcut_gives_the_values_of_the_head_on_every_coalition(request, form, clips, monkeypatch):
    from pipeline.explain import explain_chunk

    import torch

    model = _load(request, form)
    cfg = Config(faithfulness_sample=0.0)
    clf = model.model.classifier
    first = clf.dense if hasattr(clf, "dense") else clf
    saved = first.bias.detach().clone()
    try:
        with torch.no_grad():  # a bias other than the init's zeros, so that the shortcut must carry it
            first.bias.copy_(torch.linspace(-1.0, 1.0, saved.numel()))
        shortcut = explain_chunk(model, clips[0], config=cfg, attention=False)
        monkeypatch.setattr(model, "head_affine", lambda: None)
        direct = explain_chunk(model, clips[0], config=cfg, attention=False)
    finally:
        with torch.no_grad():
            first.bias.copy_(saved)
    for attr in ("shap_segments", "lime_segments"):
        got = np.array([s.value for s in getattr(shortcut, attr)])
        want = np.array([s.value for s in getattr(direct, attr)])
        assert np.abs(want).max() > 1e-5  # not a trivially flat explanation
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("form", FORMS)
def test_both_segment_games_give_the_head_of_each_coalitions_pooled_frames(request, form, clips):
    from pipeline.explain_fast import pooled_head_game, silenced_frames_game, silence_pooled

    model = _load(request, form)
    frames = model.frame_features(clips[0]).astype(np.float64)
    n = 6
    seg = np.minimum(np.arange(len(frames)) * n // len(frames), n - 1)
    sil = silence_pooled(model).astype(np.float64)
    masks = (np.random.default_rng(1).random((40, n)) < 0.5).astype(float)
    masks[0], masks[1] = 0.0, 1.0
    pooled, silenced = [], []
    for m in masks:
        keep = m[seg] > 0
        pooled.append(frames[keep].mean(0) if keep.any() else sil)
        silenced.append(np.where(keep[:, None], frames, sil[None, :]).mean(0))
    for game, want in ((pooled_head_game(model, frames, seg, n, sil), pooled),
                       (silenced_frames_game(model, frames, seg, n, sil), silenced)):
        np.testing.assert_allclose(game(masks), model.head_proba(np.asarray(want, np.float32)), atol=2e-6)


def test_analysis_with_explanations_runs_the_encoder_once_per_chunk(tiny_hubert_dir, clips):
    from pipeline.analyze import Analyzer
    from pipeline.config import Config

    analyzer = Analyzer(Config().replace(emotion_model=str(tiny_hubert_dir), whisper_model="none",
                                         explain="fast", faithfulness_sample=0.0, quantize="none"))
    model = analyzer.emotion()
    analyzer.analyze_signal(clips[1], name="warm-up")  # once per model: the silence reference (1 s)
    calls = []
    hook = model.model.hubert.register_forward_hook(lambda *a: calls.append(1))
    try:
        result = analyzer.analyze_signal(clips[0], name="clip")
    finally:
        hook.remove()
    assert len(result.chunks) >= 1
    assert len(calls) == len(result.chunks)
    assert all(c.explanation.attention is not None for c in result.chunks)


def test_a_failing_attention_pass_costs_the_maps_only_not_the_analysis(tiny_hubert_dir, clips, monkeypatch):
    from pipeline.analyze import Analyzer
    from pipeline.config import Config

    analyzer = Analyzer(Config().replace(emotion_model=str(tiny_hubert_dir), whisper_model="none",
                                         explain="fast", faithfulness_sample=0.0, quantize="none"))
    model = analyzer.emotion()
    tries = []

    def broken(signal):
        tries.append(1)
        raise MemoryError("eager attention ran out of memory")

    monkeypatch.setattr(model, "frames_with_attention", lambda signal, sink: broken(signal))
    monkeypatch.setattr(model, "frames_and_attentions", broken)
    monkeypatch.setattr(model, "attentions", broken)
    result = analyzer.analyze_signal(clips[0], name="clip")
    assert result.chunks and all(c.dominant is not None for c in result.chunks)
    for c in result.chunks:
        assert c.explanation.attention is None and c.explanation.shap_segments
        assert "attention maps could not be computed: eager attention ran out of memory" in c.explanation.attention_note
    assert len(tries) == len(result.chunks)  # one try per chunk, no second pass


@pytest.mark.parametrize("request_, applied", [("auto", "int8"), ("none", "none")])
def test_results_record_the_quantisation_actually_applied(tiny_hubert_dir, clips, request_, applied):
    from pipeline.analyze import Analyzer
    from pipeline.config import Config

    analyzer = Analyzer(Config().replace(emotion_model=str(tiny_hubert_dir), whisper_model="none",
                                         explain="none", quantize=request_, device="cpu"))
    result = analyzer.analyze_signal(clips[0], name="clip")
    assert result.settings["quantize"] == applied == analyzer.settings()["quantize"]


# ---------------------------------------------------------------- trained flag

def test_random_init_flag_marks_the_model_untrained_with_a_warning(tiny_hubert_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.emotion"):
        model = load_emotion_model(str(tiny_hubert_dir), CPU)
    assert model.trained is False
    assert any("NOT trained" in r.message and str(tiny_hubert_dir) in r.message for r in caplog.records)


def test_checkpoint_without_head_weights_is_untrained(tmp_path):
    path = build_tiny_checkpoint(tmp_path / "headless", form="seed", random_init_flag=False, headless=True)
    model = load_emotion_model(str(path), CPU)
    assert model.architecture == "seed"
    assert model.trained is False


def test_complete_checkpoint_without_the_flag_is_trained(tmp_path):
    path = build_tiny_checkpoint(tmp_path / "complete", form="superb", labels=("neu", "hap", "ang", "sad"),
                                 random_init_flag=False)
    assert load_emotion_model(str(path), CPU).trained is True


# ---------------------------------------------------------------- availability and resolution

def test_missing_hub_model_offline_raises_model_unavailable_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as info:
        load_emotion_model("emotivoice-tests/no-such-model", CPU)
    message = str(info.value)
    assert info.value.model == "emotivoice-tests/no-such-model"
    assert "emotivoice-tests/no-such-model" in message
    assert "huggingface-cli download emotivoice-tests/no-such-model" in message
    assert "--emotion-model compact" in message and "EMOTIVOICE_EMOTION_MODEL" in message


def test_missing_local_folder_raises_model_unavailable_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(ModelUnavailableError, match="no such directory") as info:
        load_emotion_model(str(missing), CPU)
    assert str(missing) in str(info.value)


def _fake_compact(monkeypatch) -> list[int]:
    calls: list[int] = []

    class FakeCompact(EmotionModel):
        name = "compact"

    def load_compact(path=None):
        calls.append(1)
        return FakeCompact()

    monkeypatch.setitem(sys.modules, "pipeline.compact",
                        types.SimpleNamespace(load_compact=load_compact, __name__="pipeline.compact"))
    return calls


def test_auto_prefers_the_whisper_head_when_the_whisper_base_weights_are_installed(tmp_path, monkeypatch):
    import pipeline.whisper_weights as ww

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    config = CPU.replace(hubert_checkpoint="superb/hubert-base-superb-er")
    monkeypatch.setattr(ww, "is_available", lambda name, cfg: name == "base")
    assert resolve_emotion_spec("auto", config) == "whisper-head"
    monkeypatch.setattr(ww, "is_available", lambda name, cfg: False)
    assert resolve_emotion_spec("auto", config) == "compact"


def test_auto_falls_back_to_compact_when_the_checkpoint_is_not_cached(tmp_path, monkeypatch):
    import pipeline.whisper_weights as ww

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(ww, "is_available", lambda name, cfg: False)  # no Whisper weights: no whisper-head
    calls = _fake_compact(monkeypatch)
    config = CPU.replace(hubert_checkpoint="superb/hubert-base-superb-er")
    assert resolve_emotion_spec("auto", config) == "compact"
    assert calls == []  # resolving loads nothing
    assert load_emotion_model("auto", config).name == "compact"
    assert calls == [1]


def _populate_hf_cache(cache, repo_id: str, source) -> None:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_auto_picks_the_configured_checkpoint_from_the_hf_cache(tmp_path, monkeypatch, tiny_superb_dir, clips):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _fake_compact(monkeypatch)
    _populate_hf_cache(tmp_path, "superb/hubert-base-superb-er", tiny_superb_dir)
    assert resolve_emotion_spec("auto", CPU) == "superb/hubert-base-superb-er"
    model = load_emotion_model("auto", CPU)
    assert model.name == "superb/hubert-base-superb-er"
    assert model.absent_labels == ("fear", "surprise")
    assert model.predict_proba(clips[:1]).shape == (1, 4)


def test_auto_prefers_a_local_checkpoint_folder(tiny_hubert_dir):
    config = CPU.replace(hubert_checkpoint=str(tiny_hubert_dir))
    assert resolve_emotion_spec("auto", config) == str(tiny_hubert_dir.resolve())


def test_compact_spec_loads_the_compact_model(monkeypatch):
    calls = _fake_compact(monkeypatch)
    assert resolve_emotion_spec("compact", CPU) == "compact"
    assert load_emotion_model("compact", CPU).name == "compact"
    assert calls == [1]


def test_loaded_models_are_reused_per_spec_device_and_quantisation(tiny_hubert_dir):
    first = load_emotion_model(str(tiny_hubert_dir), CPU)
    assert load_emotion_model(str(tiny_hubert_dir), CPU.replace(batch_size=2)) is first
    quantized = load_emotion_model(str(tiny_hubert_dir), CPU.replace(quantize="int8"))
    assert quantized is not first
    assert (first.quantized, quantized.quantized) == ("none", "int8")


def test_int8_model_keeps_the_fp32_top_class(tiny_extra_label_dir, clips):
    fp32 = load_emotion_model(str(tiny_extra_label_dir), CPU).predict_proba(clips)
    int8 = load_emotion_model(str(tiny_extra_label_dir), CPU.replace(quantize="int8")).predict_proba(clips)
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-5)
    assert (int8.argmax(1) == fp32.argmax(1)).all()


def test_unknown_quantize_setting_is_rejected_by_name(tiny_hubert_dir):
    with pytest.raises(ValueError, match="quantize"):
        load_emotion_model(str(tiny_hubert_dir), CPU.replace(quantize="int4"))



def test_auto_quantisation_on_cpu_follows_the_benchmarked_choice(tiny_hubert_dir):
    from pipeline.model_resolution import AUTO_INT8_ON_CPU

    model = load_emotion_model(str(tiny_hubert_dir), CPU.replace(quantize="auto"))
    assert model.quantized == ("int8" if AUTO_INT8_ON_CPU else "none")


# --- no requests to the hub when the model is local, or when the hub cannot be reached (issue 15 §1)


@pytest.fixture
def hub_unreachable(monkeypatch):
    """HF_HUB_OFFLINE unset and every TCP connection refused (recorded), as on a machine without network."""
    import socket

    from pipeline import model_resolution

    attempts: list = []

    def refuse(address, *a, **k):
        attempts.append(address)
        raise OSError("network unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model_resolution.hub_reachable.cache_clear()
    yield attempts
    model_resolution.hub_reachable.cache_clear()


def test_auto_without_network_falls_back_to_compact_after_one_quick_connection_attempt(hub_unreachable, tmp_path,
                                                                                     monkeypatch):
    import time

    from pipeline.model_resolution import resolve_emotion_spec
    from pipeline.types import ModelUnavailableError

    import pipeline.whisper_weights as ww

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(ww, "is_available", lambda name, cfg: False)
    t = time.perf_counter()
    assert resolve_emotion_spec("auto", CPU) == "compact"
    with pytest.raises(ModelUnavailableError, match="hub is not reachable"):
        load_emotion_model("superb/hubert-base-superb-er", CPU)
    assert time.perf_counter() - t < 10
    assert len(hub_unreachable) == 1  # checked once per process, not per file


def test_a_cached_hub_checkpoint_loads_from_the_cache_only(monkeypatch):
    from pipeline import emotion, model_resolution

    seen: dict = {}

    def from_pretrained(spec, **kw):
        seen.update(kw)
        raise OSError("stop here")

    import transformers

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(model_resolution, "is_cached", lambda spec: True)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", from_pretrained)
    with pytest.raises(Exception):
        emotion._load_transformers("some-org/some-model", "cpu", "none")
    assert seen.get("local_files_only") is True
