"""pipeline.taxonomy: label aliases, dominant/granular/complex emotions and every boundary of their rules."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.taxonomy import (
    COMPLEX_PAIRS,
    all_granular_names,
    complex_emotions,
    dominant_emotion,
    granular_emotions,
    to_canonical,
)
from pipeline.types import BASE_EMOTIONS


def scores(**given: float | None) -> dict[str, float | None]:
    """Six base scores: the given ones, the rest spread evenly over what is left (all below 0.3)."""
    out: dict[str, float | None] = dict(given)
    rest = [e for e in BASE_EMOTIONS if e not in given]
    left = 1.0 - sum(v for v in given.values() if v is not None)
    for e in rest:
        out[e] = left / len(rest) if rest else None
    return out


def names(result) -> list[str]:
    return [g.name for g in result]


# ---------------------------------------------------------------- aliases

@pytest.mark.parametrize("label, canonical", [
    ("neu", "neutral"), ("hap", "happiness"), ("ang", "anger"), ("sad", "sadness"),  # superb / IEMOCAP
    ("exc", "happiness"),
    ("Anger", "anger"), ("Fear", "fear"), ("Happiness", "happiness"), ("Neutral", "neutral"),  # seed
    ("Sadness", "sadness"), ("Surprise", "surprise"),
    ("angry", "anger"), ("fearful", "fear"), ("happy", "happiness"), ("surprised", "surprise"),  # RAVDESS
    ("ps", "surprise"),
    ("  HAPPY ", "happiness"),
])
def test_model_and_dataset_labels_map_onto_the_six(label, canonical):
    assert to_canonical(label) == canonical


@pytest.mark.parametrize("label", ["calm", "disgust", "dis", "contempt", "LABEL_0", ""])
def test_labels_outside_the_six_map_to_none(label):
    assert to_canonical(label) is None


# ---------------------------------------------------------------- dominant

def test_dominant_is_the_highest_present_score():
    assert dominant_emotion(scores(sadness=0.6, fear=0.2)) == "sadness"


@pytest.mark.parametrize("a, b", [("anger", "neutral"), ("sadness", "surprise"), ("fear", "happiness")])
def test_exactly_equal_top_scores_go_to_the_earlier_canonical_emotion(a, b):
    assert dominant_emotion(scores(**{b: 0.4, a: 0.4})) == a


def test_absent_classes_never_dominate():
    base = {"anger": 0.1, "fear": None, "happiness": 0.2, "sadness": 0.3, "surprise": None, "neutral": 0.4}
    assert dominant_emotion(base) == "neutral"


def test_missing_keys_count_as_absent():
    assert dominant_emotion({"sadness": 0.2, "anger": 0.1}) == "sadness"


def test_no_present_emotion_has_no_dominant_or_derived_emotions():
    empty = dict.fromkeys(BASE_EMOTIONS)
    assert dominant_emotion(empty) is None
    assert granular_emotions(empty) == []
    assert complex_emotions(empty) == []


# ---------------------------------------------------------------- granular

def test_dominant_score_just_below_0_3_gives_no_granular_emotion():
    assert granular_emotions(scores(anger=0.299, fear=0.29, happiness=0.2)) == []


def test_dominant_score_exactly_0_3_gives_primary_and_secondary():
    result = granular_emotions(scores(anger=0.3, fear=0.28, happiness=0.22))
    assert [(g.name, g.kind) for g in result] == [
        ("Rage", "primary"), ("Frustration", "primary"), ("Irritation", "secondary"), ("Annoyance", "secondary")]
    assert [g.confidence for g in result] == pytest.approx([0.3, 0.3, 0.21, 0.21])


def test_secondary_confidence_is_the_score_times_0_7():
    result = granular_emotions(scores(fear=0.5))
    assert {g.name: g.confidence for g in result if g.kind == "secondary"} == pytest.approx(
        {"Nervousness": 0.35, "Worry": 0.35})
    assert {g.name: g.confidence for g in result if g.kind == "primary"} == pytest.approx(
        {"Anxiety": 0.5, "Terror": 0.5})


def test_dominant_score_just_below_0_7_still_gets_secondary():
    assert names(granular_emotions(scores(happiness=0.699))) == ["Joy", "Amusement", "Satisfaction", "Optimism"]


def test_dominant_score_exactly_0_7_gets_primary_only():
    assert names(granular_emotions(scores(happiness=0.7))) == ["Joy", "Amusement"]


def test_float32_probabilities_on_a_boundary_count_as_the_boundary():
    """Model outputs are float32: float32(0.7) is 0.69999999 as a Python float, yet it means 0.7."""
    at_07 = {e: float(np.float32(v)) for e, v in scores(happiness=0.7).items()}
    assert names(granular_emotions(at_07)) == ["Joy", "Amusement"]
    at_04 = {e: float(np.float32(v)) for e, v in scores(neutral=0.4, anger=0.35).items()}
    assert "Calm" in names(granular_emotions(at_04))


def test_neutral_needs_0_4_for_its_primary_emotions():
    assert names(granular_emotions(scores(neutral=0.4, sadness=0.35))) == [
        "Calm", "Composure", "Indifference", "Boredom"]


def test_neutral_between_0_3_and_0_4_gets_secondary_only():
    result = granular_emotions(scores(neutral=0.39, sadness=0.35))
    assert [(g.name, g.kind) for g in result] == [("Indifference", "secondary"), ("Boredom", "secondary")]
    assert result[0].confidence == pytest.approx(0.39 * 0.7)


def test_neutral_exactly_0_3_gets_secondary_only():
    assert names(granular_emotions(scores(neutral=0.3, sadness=0.29, anger=0.21))) == ["Indifference", "Boredom"]


@pytest.mark.parametrize("emotion, primary", [
    ("anger", ["Rage", "Frustration"]), ("fear", ["Anxiety", "Terror"]), ("happiness", ["Joy", "Amusement"]),
    ("sadness", ["Grief", "Sorrow"]), ("surprise", ["Astonishment", "Amazement"]),
    ("neutral", ["Calm", "Composure"]),
])
def test_each_base_emotion_has_its_own_primary_names(emotion, primary):
    assert names(granular_emotions(scores(**{emotion: 0.8}))) == primary


def test_tied_top_scores_take_the_granular_names_of_the_earlier_canonical_emotion():
    assert names(granular_emotions(scores(surprise=0.45, fear=0.45))) == ["Anxiety", "Terror", "Nervousness", "Worry"]


def test_granular_emotions_ignore_absent_classes():
    base = {"anger": 0.05, "fear": None, "happiness": 0.15, "sadness": 0.62, "surprise": None, "neutral": 0.18}
    assert names(granular_emotions(base)) == ["Grief", "Sorrow", "Disappointment", "Melancholy"]


def test_there_are_24_distinct_granular_names():
    assert len(set(all_granular_names())) == len(all_granular_names()) == 24


# ---------------------------------------------------------------- complex

@pytest.mark.parametrize("pair, name", [(tuple(sorted(p)), n) for p, n in COMPLEX_PAIRS.items()])
def test_each_complex_pair_is_named_when_its_mean_exceeds_0_3(pair, name):
    a, b = pair
    result = complex_emotions(scores(**{a: 0.45, b: 0.35}))
    assert [(c.name, c.confidence) for c in result] == [(name, pytest.approx(0.4))]


def test_complex_emotion_with_mean_exactly_0_3_is_not_reported():
    assert complex_emotions(scores(happiness=0.4, surprise=0.2, anger=0.15)) == []
    assert complex_emotions(scores(happiness=0.35, surprise=0.25, anger=0.15)) == []


def test_complex_emotion_with_mean_just_above_0_3_is_reported():
    assert [c.name for c in complex_emotions(scores(happiness=0.31, surprise=0.3))] == ["Elation"]


def test_top_two_that_form_no_pair_give_no_complex_emotion():
    assert complex_emotions(scores(anger=0.5, happiness=0.4)) == []


def test_a_pair_outside_the_top_two_is_not_reported():
    assert complex_emotions(scores(happiness=0.5, anger=0.3, surprise=0.2)) == []


def test_tie_for_second_place_is_broken_by_canonical_order():
    # surprise precedes neutral canonically: happiness+surprise = Elation, not Contentment.
    assert [c.name for c in complex_emotions(scores(happiness=0.5, neutral=0.2, surprise=0.2))] == ["Elation"]


def test_absent_classes_are_skipped_when_picking_the_top_two():
    base = {"anger": 0.05, "fear": None, "happiness": 0.5, "sadness": 0.1, "surprise": None, "neutral": 0.35}
    assert [c.name for c in complex_emotions(base)] == ["Contentment"]


def test_a_single_present_emotion_has_no_complex_emotion():
    base = dict.fromkeys(BASE_EMOTIONS)
    base["sadness"] = 1.0
    assert complex_emotions(base) == []
