"""Label aliases, granular and complex emotions: the seed's fixed algorithms, with their tables as data.

Granular (per chunk, from the six base probabilities):
  1. dominant = argmax over the present base emotions; s = its probability.
  2. if s >= THRESHOLDS[dominant]: every name in GRANULAR[dominant]["primary"], confidence s.
  3. if 0.3 <= s < 0.7: every name in GRANULAR[dominant]["secondary"], confidence s * 0.7.
Complex: the top two present base emotions; if they form a pair in COMPLEX_PAIRS and their mean > 0.3,
report that complex emotion with the mean as confidence.

Ties (exactly equal scores) are broken by the canonical order BASE_EMOTIONS, so results are deterministic.
Boundaries are compared with a tolerance of BOUNDARY_TOL (1e-6): scores arrive as float32 model outputs
(float32(0.7) is 0.69999999 as a Python float) and means are float sums ((0.4 + 0.2) / 2 is 0.30000000000000004),
so a value within the tolerance of a boundary counts as exactly on it.
"""

from __future__ import annotations

from typing import Mapping

from pipeline.types import BASE_EMOTIONS, ComplexEmotion, GranularEmotion

#: Model labels (lower-cased) -> canonical base emotion. One table for inference and training.
ALIASES: dict[str, str] = {
    **{e: e for e in BASE_EMOTIONS},
    "ang": "anger", "angry": "anger", "anger": "anger", "mad": "anger",
    "fea": "fear", "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "hap": "happiness", "happy": "happiness", "happiness": "happiness", "joy": "happiness", "exc": "happiness",
    "sad": "sadness", "sadness": "sadness",
    "sur": "surprise", "surprised": "surprise", "surprise": "surprise", "ps": "surprise",
    "neu": "neutral", "neutral": "neutral",
}

#: Primary-emotion thresholds on the dominant score.
THRESHOLDS: dict[str, float] = {
    "anger": 0.3, "fear": 0.3, "happiness": 0.3, "sadness": 0.3, "surprise": 0.3, "neutral": 0.4,
}
SECONDARY_RANGE: tuple[float, float] = (0.3, 0.7)
SECONDARY_FACTOR: float = 0.7
COMPLEX_MIN_MEAN: float = 0.3
#: Values this close to a threshold count as equal to it (float32 outputs, float sums).
BOUNDARY_TOL: float = 1e-6

#: 24 granular names across the six base emotions.
GRANULAR: dict[str, dict[str, tuple[str, ...]]] = {
    "anger": {"primary": ("Rage", "Frustration"), "secondary": ("Irritation", "Annoyance")},
    "fear": {"primary": ("Anxiety", "Terror"), "secondary": ("Nervousness", "Worry")},
    "happiness": {"primary": ("Joy", "Amusement"), "secondary": ("Satisfaction", "Optimism")},
    "sadness": {"primary": ("Grief", "Sorrow"), "secondary": ("Disappointment", "Melancholy")},
    "surprise": {"primary": ("Astonishment", "Amazement"), "secondary": ("Curiosity", "Confusion")},
    "neutral": {"primary": ("Calm", "Composure"), "secondary": ("Indifference", "Boredom")},
}

COMPLEX_PAIRS: dict[frozenset[str], str] = {
    frozenset({"happiness", "surprise"}): "Elation",
    frozenset({"sadness", "anger"}): "Bitterness",
    frozenset({"fear", "sadness"}): "Desperation",
    frozenset({"happiness", "neutral"}): "Contentment",
    frozenset({"anger", "fear"}): "Panic",
    frozenset({"sadness", "neutral"}): "Resignation",
}


def to_canonical(label: str) -> str | None:
    """Map a model or dataset label onto one of the six canonical names; None when it is outside them."""
    return ALIASES.get(str(label).strip().lower())


def _ranked(base: Mapping[str, float | None]) -> list[tuple[str, float]]:
    present = [(e, float(base[e])) for e in BASE_EMOTIONS if base.get(e) is not None]
    # Stable sort keeps canonical order among exactly-equal scores.
    return sorted(present, key=lambda kv: -kv[1])


def dominant_emotion(base: Mapping[str, float | None]) -> str | None:
    """The highest-scoring present base emotion (ties: canonical order); None when none is present."""
    ranked = _ranked(base)
    return ranked[0][0] if ranked else None


def granular_emotions(base: Mapping[str, float | None]) -> list[GranularEmotion]:
    ranked = _ranked(base)
    if not ranked:
        return []
    dom, score = ranked[0]
    out: list[GranularEmotion] = []
    if score >= THRESHOLDS[dom] - BOUNDARY_TOL:
        out += [GranularEmotion(n, score, "primary") for n in GRANULAR[dom]["primary"]]
    lo, hi = SECONDARY_RANGE
    if lo - BOUNDARY_TOL <= score < hi - BOUNDARY_TOL:
        out += [GranularEmotion(n, score * SECONDARY_FACTOR, "secondary") for n in GRANULAR[dom]["secondary"]]
    return out


def complex_emotions(base: Mapping[str, float | None]) -> list[ComplexEmotion]:
    ranked = _ranked(base)
    if len(ranked) < 2:
        return []
    (a, sa), (b, sb) = ranked[0], ranked[1]
    name = COMPLEX_PAIRS.get(frozenset({a, b}))
    mean = (sa + sb) / 2
    if name and mean > COMPLEX_MIN_MEAN + BOUNDARY_TOL:
        return [ComplexEmotion(name, mean)]
    return []


def all_granular_names() -> list[str]:
    return [n for kinds in GRANULAR.values() for names in kinds.values() for n in names]
