"""The compact emotion model: the shipped weights load and recognise emotions; the pooled structure is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.compact import (
    COMPACT_DIR,
    CONFIG_FILE,
    WEIGHTS_FILE,
    CompactConfig,
    CompactEmotionModel,
    build_net,
    load_compact,
)
from pipeline.types import BASE_EMOTIONS, EmotionModel, ModelUnavailableError


@pytest.fixture(scope="module")
def shipped():
    return load_compact()


@pytest.fixture(scope="module")
def clip_3s(ravdess_dir):
    from pipeline.audio import decode_audio

    x = decode_audio(ravdess_dir / "Actor_02" / "03-01-05-02-01-01-02.flac").samples  # angry, strong
    return x[: 3 * 16000]


def test_shipped_model_files_are_in_the_package_with_licence_and_card():
    assert (COMPACT_DIR / WEIGHTS_FILE).stat().st_size <= 20 * 1024 * 1024
    card = (COMPACT_DIR / "MODEL_CARD.md").read_text()
    assert "CC BY-NC-SA 4.0" in card and "RAVDESS" in card
    assert "CC BY-NC-SA 4.0" in (COMPACT_DIR / "LICENSE").read_text()


def test_shipped_model_is_a_trained_emotion_model_with_the_six_emotions(shipped):
    assert isinstance(shipped, EmotionModel)
    assert shipped.trained is True
    assert shipped.name == "compact"
    assert tuple(shipped.labels) == BASE_EMOTIONS
    assert shipped.absent_labels == ()


def test_shipped_model_records_its_training_command_and_cross_validated_accuracy():
    doc = json.loads((COMPACT_DIR / CONFIG_FILE).read_text())
    assert doc["labels"] == list(BASE_EMOTIONS)
    assert doc["training"]["command"].startswith("emotivoice train --arch compact")
    assert doc["training"]["speakers"] == [str(i) for i in range(1, 19)]
    card = (COMPACT_DIR / "MODEL_CARD.md").read_text()
    assert doc["training"]["command"] in card
    assert "leave-actors-out" in card.lower() and "UAR" in card


def test_inference_on_a_3s_clip_gives_probabilities_over_six_emotions(shipped, clip_3s):
    proba = shipped.predict_proba([clip_3s])
    assert proba.shape == (1, 6)
    assert np.all(proba >= 0)
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5)


def test_prediction_is_the_head_of_the_mean_frame_vector(shipped, clip_3s):
    frames = shipped.frame_features(clip_3s)
    direct = shipped.head_proba(frames.mean(0, keepdims=True))
    assert np.allclose(direct, shipped.predict_proba([clip_3s]), atol=1e-6)


def test_frames_come_every_frame_hop(shipped, clip_3s):
    frames = shipped.frame_features(clip_3s)
    assert frames.ndim == 2
    assert abs(frames.shape[0] - 3.0 / shipped.frame_hop_s) <= 2


def test_dropping_frames_from_the_mean_changes_the_prediction(shipped, clip_3s):
    frames = shipped.frame_features(clip_3s)
    half = shipped.head_proba(frames[: len(frames) // 2].mean(0, keepdims=True))
    full = shipped.head_proba(frames.mean(0, keepdims=True))
    assert half.shape == full.shape == (1, 6)
    assert not np.allclose(half, full)


def test_batched_head_scores_each_pooled_row_on_its_own(shipped, clip_3s):
    frames = shipped.frame_features(clip_3s)
    pooled = np.stack([frames[:20].mean(0), frames.mean(0)])
    both = shipped.head_proba(pooled)
    assert np.allclose(both[1], shipped.head_proba(frames.mean(0, keepdims=True))[0], atol=1e-6)
    assert np.allclose(both.sum(1), 1.0, atol=1e-5)


def test_prediction_does_not_depend_on_the_recording_level(shipped, clip_3s):
    loud, quiet = shipped.predict_proba([clip_3s, clip_3s * 0.05])
    assert np.abs(loud - quiet).max() < 0.02


def test_very_short_and_long_signals_are_scored(shipped, clip_3s):
    short = clip_3s[:800]  # 50 ms
    long = np.tile(clip_3s, 10)  # 30 s
    proba = shipped.predict_proba([short, long])
    assert proba.shape == (2, 6)
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5)


def test_empty_signal_is_refused_with_a_reason(shipped):
    with pytest.raises(ValueError, match="empty"):
        shipped.frame_features(np.zeros(0, dtype=np.float32))


def test_shipped_model_recognises_one_actors_emotions_well_above_chance(shipped, ravdess_dir):
    # Actor 1 is part of the shipped model's training data (it is trained on all 18 actors), so this only
    # checks that the right weights load and run; the unseen-actor evidence is bench/compact_cv.py.
    from pipeline.training import evaluate
    from tests.fixtures_datasets import manifest_emotions, six_count

    result = evaluate(shipped, ravdess_dir, ravdess_dir / "manifest.csv", speakers=["1"])
    assert result.n == six_count(manifest_emotions(ravdess_dir / "manifest.csv", {1}))  # 44 in the full corpus
    assert result.uar > 0.35  # chance is 1/6


def test_saved_model_reloads_with_identical_outputs(tmp_path, clip_3s):
    import torch

    from pipeline.compact import save_compact

    torch.manual_seed(0)
    cfg = CompactConfig(members=("tdnn", "cnn2d", "stats"), channels=(4, 8), tdnn_channels=8, embed_dim=16)
    net = build_net(cfg).eval()
    before = CompactEmotionModel(net, cfg, trained=False).predict_proba([clip_3s])
    save_compact(net, cfg, tmp_path, trained=False)
    again = load_compact(tmp_path)
    assert again.trained is False
    assert np.allclose(again.predict_proba([clip_3s]), before, atol=1e-6)


def test_missing_model_folder_is_reported_as_unavailable(tmp_path):
    with pytest.raises(ModelUnavailableError, match="lacks"):
        load_compact(tmp_path / "nowhere")


def test_auxiliary_training_classes_are_dropped_at_inference(clip_3s):
    cfg = CompactConfig(tdnn_channels=8, embed_dim=16, train_labels=BASE_EMOTIONS + ("calm", "disgust"))
    model = CompactEmotionModel(build_net(cfg), cfg)
    proba = model.predict_proba([clip_3s])
    assert proba.shape == (1, 6)
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5)


def test_analysis_with_the_compact_model_explains_every_chunk_and_says_it_has_no_attention(ravdess_dir):
    from pipeline.analyze import Analyzer
    from pipeline.config import Config

    analyzer = Analyzer(Config(emotion_model="compact", whisper_model="none", explain="fast",
                               faithfulness_sample=0.0))
    result = analyzer.analyze_file(ravdess_dir / "Actor_02" / "03-01-05-02-01-01-02.flac")
    assert result.chunks
    for c in result.chunks:
        exp = c.explanation
        assert exp.shap_segments and exp.lime_segments
        assert exp.attention is None and exp.attention_rollout is None
        assert "has no attention (not a transformer)" in exp.attention_note
