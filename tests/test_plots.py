"""Pictures: real PNGs that show the explanation they are given, and say so in their alt text."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pipeline.config import Config
from pipeline.explain import explain_batch, explain_chunk
from pipeline.plots import (
    plot_attention,
    plot_emotion_distribution,
    plot_lime_waveform,
    plot_shap_features,
    plot_shap_segments,
)
from tests.test_explain import SR, ToyModel, noise, with_loud_second


def image(png: bytes):
    from PIL import Image

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(image(png).convert("L"), dtype=np.float32)


@pytest.fixture(scope="module")
def explained():
    """Chunks of one file explained in the fast tier (loud second = anger evidence), with feature SHAP."""
    model = ToyModel()
    rng = np.random.default_rng(3)
    chunks = []
    for i in range(6):
        x = noise(6, amp=float(rng.uniform(0.005, 0.05)), seed=i)
        x *= np.repeat(rng.uniform(0.3, 3.0, size=6), SR).astype(np.float32)
        chunks.append(x)
    chunks[0] = with_loud_second(6, 4)
    exps = explain_batch(model, chunks, config=Config(faithfulness_sample=0.0), target_label="anger")
    return chunks, exps


def test_emotion_distribution_is_a_png_that_names_absent_classes_and_flags_an_untrained_model():
    base = {"anger": 0.6, "fear": 0.1, "happiness": 0.2, "sadness": 0.1, "surprise": None, "neutral": None}
    trained = image(plot_emotion_distribution(base))
    untrained = image(plot_emotion_distribution(base, trained=False))
    assert trained.size[0] > 300 and trained.size[1] > 150
    assert "absent from the model: surprise, neutral" in trained.text["Description"]
    assert "anger 0.60" in trained.text["Description"]
    assert "not emotions" not in trained.text["Title"]
    assert "not emotions" in untrained.text["Title"]


def test_emotion_distribution_draws_taller_bars_for_higher_probabilities():
    low = pixels(plot_emotion_distribution({"anger": 0.1, "fear": 0.1}))
    high = pixels(plot_emotion_distribution({"anger": 0.9, "fear": 0.1}))
    # more dark bar pixels when a bar is taller
    assert (high < 200).sum() > (low < 200).sum() * 1.5


def test_segment_shap_bars_describe_the_segment_with_most_support(explained):
    _, exps = explained
    png = plot_shap_segments(exps[0])
    desc = image(png).text["Description"]
    assert "segment 4 (4.0-5.0 s)" in desc
    assert f"f(all) = {exps[0].shap_full_value:.3f}" in desc


def test_acoustic_shap_bars_show_values_with_their_fidelity_or_why_there_are_none(explained):
    _, exps = explained
    with_values = next(e for e in exps if e.shap_features)
    desc = image(plot_shap_features(with_values)).text["Description"]
    assert f"R² on held-out chunks {with_values.surrogate_r2:.2f}" in desc
    assert "rms_energy" in desc
    alone = explain_chunk(ToyModel(), noise(3), config=Config(faithfulness_sample=0.0))
    desc = image(plot_shap_features(alone)).text["Description"]
    assert desc.startswith("not available")


def test_lime_waveform_shades_the_supporting_segment_red(explained):
    chunks, exps = explained
    img = np.asarray(image(plot_lime_waveform(chunks[0], exps[0])).convert("RGB"), dtype=np.int32)
    reddish = (img[..., 0] - img[..., 2]) > 60
    cols = np.flatnonzero(reddish.any(axis=0))
    width = img.shape[1]
    assert cols.size > 0
    # the loud second 4-5 s of a 6 s chunk sits in the right third of the plot
    assert 0.55 * width < np.median(cols) < 0.9 * width
    assert "segment 4" in image(plot_lime_waveform(chunks[0], exps[0])).text["Description"]


def test_attention_heatmaps_have_a_panel_per_layer_plus_rollout_or_say_there_is_no_attention(explained):
    _, exps = explained
    desc = image(plot_attention(exps[0])).text["Description"]
    assert "2 layer map(s) and the rollout" in desc
    none = explain_chunk(ToyModel(attention=False), noise(3), config=Config(faithfulness_sample=0.0))
    assert "has no attention" in image(plot_attention(none)).text["Description"]


def test_plots_of_an_explanation_that_could_not_be_computed_are_messages_not_errors():
    exp = explain_chunk(ToyModel(), np.zeros(0, np.float32), config=Config())
    for png in (plot_shap_segments(exp), plot_lime_waveform(np.zeros(0), exp), plot_attention(exp)):
        assert "not available" in image(png).text["Description"] or "no attention" in image(png).text["Description"]
