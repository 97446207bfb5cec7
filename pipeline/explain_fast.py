"""Fast explanation tier: Shapley values and LIME of the pooled head over time segments.

The model's encoder runs once (``frame_features``). With mean pooling, hearing only the segments in a
coalition S is approximated by dropping the other segments' frames from the mean:

    f(S) = head(mean of the frames whose centre lies in a segment of S)

so thousands of coalitions cost one matrix product. f(∅) (no frames) is defined as the head applied to
the pooled frames of 1 s of digital silence (computed once per model) — "the model hearing nothing".

What this explains: how the classification head uses the encoder's *contextualised* frames of each
time segment. What it does not: input-level masking — a frame keeps the context it got from the whole
chunk, so information that leaked across segments through self-attention is still there. The full
tier (:mod:`pipeline.explain_full`) silences the audio and re-runs the model.

Shapley values are exact (every one of the 2^n coalitions, via ``shap.explainers.Exact``) for
n <= :data:`EXACT_MAX_SEGMENTS`, else estimated by ``shap.explainers.Permutation`` (antithetic
permutations; still exactly efficient: values sum to f(all) - f(∅)).
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np

logger = logging.getLogger(__name__)

EXACT_MAX_SEGMENTS = 14
PERMUTATION_MAX_EVALS = 4096
FAST_LIME_SAMPLES = 1000
LIME_KERNEL_WIDTH = 0.25
SILENCE_S = 1.0

_SILENCE_CACHE: "weakref.WeakKeyDictionary[object, np.ndarray]" = weakref.WeakKeyDictionary()
_EXACT_LOCK = threading.Lock()
_EXACT_CACHE: dict[int, tuple[object, dict]] = {}


def _exact_explainer(n: int):
    """A shap Exact explainer over n binary segment masks, reused across chunks (its gray-code table is
    cached per explainer); the game it evaluates is swapped in through ``slot['f']``."""
    import shap

    if n not in _EXACT_CACHE:
        slot: dict = {}
        masker = shap.maskers.Independent(np.zeros((1, n)), max_samples=1)
        _EXACT_CACHE[n] = (shap.explainers.Exact(lambda m: slot["f"](m), masker), slot)
    return _EXACT_CACHE[n]


def silence_pooled(model) -> np.ndarray:
    """Mean frame vector (D,) of 1 s of digital silence for ``model`` (cached per model object)."""
    try:
        cached = _SILENCE_CACHE.get(model)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    frames = np.asarray(model.frame_features(np.zeros(int(SILENCE_S * model.sample_rate), np.float32)))
    pooled = frames.mean(axis=0)
    try:
        _SILENCE_CACHE[model] = pooled
    except TypeError:
        pass
    return pooled


@dataclass
class SegmentGame:
    """A coalition value function over n segments: masks (m, n) of 0/1 -> outputs (m, L)."""

    n: int
    fn: Callable[[np.ndarray], np.ndarray]

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return self.fn(np.asarray(masks, dtype=np.float64).reshape(-1, self.n))


def segment_sums(frames: np.ndarray, frame_segment: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) sum of the frames of each segment and (n,) their counts (float64)."""
    frames = np.asarray(frames)
    sums = np.zeros((n, frames.shape[1]))
    counts = np.bincount(np.asarray(frame_segment, dtype=np.int64), minlength=n)[:n].astype(np.float64)
    for i in range(n):
        sel = frame_segment == i
        if counts[i]:
            sums[i] = frames[sel].sum(axis=0, dtype=np.float64)
    return sums, counts


class _PooledHead:
    """``model.head_proba`` over many pooled vectors, mixing (n, H) projections when the head starts affine.

    With ``model.head_affine()`` = (W, b, rest): ``head(sum_S / count_S) = rest((sum_S @ W.T) / count_S + b)``,
    so each segment's frame sum is projected once (``project``) and a coalition costs (n x H) mixing
    instead of a (D x H) product per coalition. Exact (W is linear); the head must be fp32 (it is: int8
    quantisation touches only the encoder)."""

    def __init__(self, model):
        self.model = model
        affine = getattr(model, "head_affine", None)
        parts = affine() if callable(affine) else None
        self.weight, self.bias, self.rest = parts if parts is not None else (None, None, None)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(..., D) sums or means of frames -> what ``__call__`` mixes ((..., H), or unchanged)."""
        vectors = np.asarray(vectors, dtype=np.float64)
        return vectors if self.weight is None else vectors @ self.weight.T

    def __call__(self, pooled: np.ndarray) -> np.ndarray:
        """(m, ·) means of projected vectors -> (m, L) probabilities (float64)."""
        out = []
        for i in range(0, len(pooled), 8192):
            part = pooled[i:i + 8192]
            out.append(np.asarray(self.model.head_proba(part.astype(np.float32)) if self.weight is None
                                  else self.rest(part + self.bias), dtype=np.float64))
        return np.concatenate(out) if out else np.zeros((0, len(self.model.labels)))


def pooled_head_game(model, frames: np.ndarray, frame_segment: np.ndarray, n: int,
                     empty_pooled: np.ndarray) -> SegmentGame:
    """The fast-tier game f(S) = head(mean of frames in segments S); f(∅) = head(``empty_pooled``).

    Args:
        model: an EmotionModel.
        frames: (T, D) frame vectors of the whole chunk.
        frame_segment: (T,) segment index of each frame.
        n: number of segments.
        empty_pooled: (D,) pooled vector used for the empty coalition.
    """
    head = _PooledHead(model)
    seg_sum, seg_count = segment_sums(frames, frame_segment, n)
    seg_sum = head.project(seg_sum)
    empty = head.project(empty_pooled)

    def fn(masks: np.ndarray) -> np.ndarray:
        counts = masks @ seg_count
        sums = masks @ seg_sum
        pooled = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1e-12)[:, None], empty[None, :])
        return head(pooled)

    return SegmentGame(n=n, fn=fn)


def silenced_frames_game(model, frames: np.ndarray, frame_segment: np.ndarray, n: int,
                         silence_frame: np.ndarray) -> SegmentGame:
    """A cheap stand-in for input-level silencing: g(S) = head(mean over all frames, where the frames of
    segments outside S are replaced by the mean frame of silence). g(all) = f(all).

    It ignores what silencing changes in the *context* of the other frames; the full tier uses it as a
    control variate (its exact Shapley values plus KernelSHAP of the real game minus it).
    """
    head = _PooledHead(model)
    seg_sum, seg_count = segment_sums(frames, frame_segment, n)
    seg_sum = head.project(seg_sum)
    sil = head.project(silence_frame)
    sil_sum = seg_count[:, None] * sil[None, :]  # (n, ·): silence in place of each segment
    total = max(float(seg_count.sum()), 1.0)

    def fn(masks: np.ndarray) -> np.ndarray:
        return head((masks @ seg_sum + (1.0 - masks) @ sil_sum) / total)

    return SegmentGame(n=n, fn=fn)


@dataclass
class ShapleyResult:
    values: np.ndarray
    """(n, L) Shapley values per segment and output."""
    base: np.ndarray
    """(L,) f(∅)."""
    full: np.ndarray
    """(L,) f(all)."""
    method: str
    evaluations: int
    masks: np.ndarray | None = None
    """Every coalition evaluated (all 2^n of them for n <= ``RECORD_MAX_SEGMENTS``), else None."""
    outputs: np.ndarray | None = None


RECORD_MAX_SEGMENTS = 10


def shapley_over_segments(game: SegmentGame, *, seed: int = 0) -> ShapleyResult:
    """Shapley values of every output of ``game`` with the shap library (exact for n <= 14).

    For n <= :data:`RECORD_MAX_SEGMENTS` the evaluated coalitions and outputs are returned too, so that
    LIME can be fitted on them without evaluating the game again.
    """
    import shap

    n = game.n
    calls = [0]
    record = n <= RECORD_MAX_SEGMENTS
    seen_masks: list[np.ndarray] = []
    seen_out: list[np.ndarray] = []

    def f(masks: np.ndarray) -> np.ndarray:
        calls[0] += len(masks)
        out = game(masks)
        if record:
            seen_masks.append(np.asarray(masks, dtype=np.float64).reshape(-1, n))
            seen_out.append(out)
        return out

    ones, zeros = np.ones((1, n)), np.zeros((1, n))
    full, base = f(ones)[0], f(zeros)[0]
    if n == 1:
        return ShapleyResult((full - base)[None, :], base, full, "Shapley value of a single segment "
                             "(f(all) - f(none))", calls[0])
    masker = shap.maskers.Independent(zeros, max_samples=1)
    if n <= EXACT_MAX_SEGMENTS:
        with _EXACT_LOCK:
            explainer, slot = _exact_explainer(n)
            slot["f"] = f
            try:
                res = explainer(ones, max_evals=2**n + 2, silent=True)
            finally:
                slot.clear()
        method = f"exact Shapley values over all 2^{n} segment coalitions (shap.explainers.Exact)"
    else:
        explainer = shap.explainers.Permutation(f, masker, seed=seed)
        res = explainer(ones, max_evals=PERMUTATION_MAX_EVALS, silent=True)
        method = (f"Shapley values estimated from antithetic permutations of {n} segments "
                  f"(shap.explainers.Permutation, max {PERMUTATION_MAX_EVALS} evaluations, seed {seed})")
    values = np.asarray(res.values, dtype=np.float64)[0]
    if values.ndim == 1:
        values = values[:, None]
    result = ShapleyResult(values=values, base=base, full=full, method=method, evaluations=calls[0])
    if record and seen_masks:
        masks = np.concatenate(seen_masks)
        outputs = np.concatenate(seen_out)
        masks, first = np.unique(masks > 0.5, axis=0, return_index=True)
        outputs = outputs[first]
        order = np.argsort(~masks.all(axis=1), kind="stable")  # the all-ones mask first (LIME's instance)
        result.masks, result.outputs = masks[order].astype(np.float64), outputs[order]
    return result


@dataclass
class LimeResult:
    weights: np.ndarray
    """(n,) ridge coefficients per segment."""
    intercept: float
    score: float
    """Weighted R² of the local linear fit on the perturbation sample (lime's ``score``)."""
    samples: int


def lime_distances(masks: np.ndarray) -> np.ndarray:
    """Cosine distance of each mask to the all-segments mask (as lime_image does); 1 for the empty mask."""
    masks = np.asarray(masks, dtype=np.float64)
    n = masks.shape[1]
    norms = np.sqrt(masks.sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = masks.sum(axis=1) / (norms * np.sqrt(n))
    return np.where(norms > 0, 1.0 - cos, 1.0)


def lime_over_masks(masks: np.ndarray, outputs: np.ndarray, label_idx: int, *, seed: int = 0) -> LimeResult:
    """LIME (``lime.lime_base.LimeBase``): kernel-weighted ridge of one output on binary segment masks.

    Args:
        masks: (m, n) 0/1 masks; row 0 must be the all-ones mask (the instance being explained).
        outputs: (m, L) model outputs for those masks.
        label_idx: which output column to explain.
    """
    from lime.lime_base import LimeBase

    masks = np.asarray(masks, dtype=np.float64)
    n = masks.shape[1]
    width = LIME_KERNEL_WIDTH

    def kernel(d: np.ndarray) -> np.ndarray:
        return np.sqrt(np.exp(-(d**2) / width**2))

    base = LimeBase(kernel, verbose=False, random_state=np.random.RandomState(seed))
    _intercept, exp, score, _local = base.explain_instance_with_data(
        masks, np.asarray(outputs, dtype=np.float64), lime_distances(masks), label_idx, n,
        feature_selection="none",
    )
    weights = np.zeros(n)
    for feat, w in exp:
        weights[int(feat)] = float(w)
    return LimeResult(weights=weights, intercept=float(_intercept), score=float(score), samples=len(masks))


def random_masks(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` masks with each segment kept with probability 1/2; row 0 is all ones."""
    masks = (rng.random((count, n)) < 0.5).astype(np.float64)
    masks[0] = 1.0
    return masks
