"""Faithfulness of segment explanations: does deleting the top segments really hurt the prediction?

Deletion test with real forward passes: segments are silenced in the audio and the model is re-run.

For a chunk with n segments, attribution values a (SHAP of the target label), target probability p(x):

- ``drop_i = p(x) - p(x without segment i)`` for every single segment i (n passes);
- ``aopc_top = 1/k * sum_{j=1..k} [p(x) - p(x without the j top-ranked segments)]`` — segments ranked
  by attribution, most positive first, deleted cumulatively (AOPC, Samek et al. 2017, without the
  j = 0 term which is always 0);
- ``aopc_random``: the same along a random order of segments (seeded; one order per chunk, the
  dataset-level average is the baseline);
- ``top_is_most_harmful``: 1.0 when the top-ranked segment is (one of) the single segment(s) whose
  deletion lowers p the most, else 0.0;
- ``topk_overlap``: share of the k top-ranked segments among the k most harmful single deletions;
- ``rank_agreement``: Spearman correlation between attributions and single-deletion drops.

Cost: n + 2(k - 1) forward passes per chunk (batched).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from pipeline.explain_full import mask_signal


def faithfulness_selected(config, tier: str, seed: int, key: str = "") -> bool:
    """Whether a chunk gets a deletion check: always in the full tier, a seeded sample in the fast tier.

    The fast-tier choice depends only on (``key``, ``seed``, ``config.faithfulness_sample``): the same
    chunk is picked again on a re-run. ``seed`` is the chunk index; ``key`` (e.g. the file's name or hash)
    varies the pick between files, so a corpus of one-chunk files is still sampled at the right rate.
    """
    if tier == "full":
        return True
    frac = float(config.faithfulness_sample)
    if frac <= 0:
        return False
    if frac >= 1:
        return True
    u = zlib.crc32(f"faithfulness:{key}:{int(seed)}".encode()) / 2**32
    return u < frac


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def deletion_faithfulness(model, samples: np.ndarray, bounds: list[tuple[float, float]],
                          attributions: np.ndarray, label_idx: int, *, k: int, seed: int = 0,
                          batch_size: int = 8, full_prob: float | None = None) -> dict[str, float]:
    """Deletion AOPC of the top-k attributed segments against random segments (real re-forwards).

    Args:
        model: an EmotionModel.
        samples: the chunk (16 kHz float32).
        bounds: (start_s, end_s) per segment.
        attributions: (n,) attribution per segment (higher = more support for the label).
        label_idx: the explained output column.
        k: segments deleted cumulatively (clipped to n).
        seed: seeds the random order.
        batch_size: signals per forward call.
        full_prob: p(label) on the untouched chunk when known (saves one pass).

    Returns:
        dict with aopc_top, aopc_random, k, top_is_most_harmful, topk_overlap, rank_agreement,
        top1_drop, max_single_drop, segments (n), forward_passes (see the module doc).
    """
    a = np.asarray(attributions, dtype=np.float64)
    n = len(bounds)
    k = int(max(1, min(k, n)))
    rng = np.random.default_rng([int(seed), 1729])
    top_order = np.argsort(-a, kind="stable")
    rand_order = rng.permutation(n)

    masks: list[np.ndarray] = []
    if full_prob is None:
        masks.append(np.ones(n))
    for i in range(n):
        m = np.ones(n)
        m[i] = 0
        masks.append(m)
    extra: dict[tuple, int] = {}
    for order in (top_order, rand_order):
        for j in range(2, k + 1):
            key = tuple(sorted(order[:j].tolist()))
            if key not in extra:
                m = np.ones(n)
                m[list(key)] = 0
                extra[key] = len(masks)
                masks.append(m)
    probs = []
    for i in range(0, len(masks), max(1, batch_size)):
        sigs = [mask_signal(samples, bounds, m) for m in masks[i:i + batch_size]]
        probs.append(np.asarray(model.predict_proba(sigs), dtype=np.float64)[:, label_idx])
    p = np.concatenate(probs)
    off = 0
    if full_prob is None:
        full_prob, off = float(p[0]), 1
    single = p[off:off + n]
    drops = full_prob - single

    def deleted_prob(order: np.ndarray, j: int) -> float:
        if j == 1:
            return float(single[order[0]])
        return float(p[extra[tuple(sorted(order[:j].tolist()))]])

    aopc_top = float(np.mean([full_prob - deleted_prob(top_order, j) for j in range(1, k + 1)]))
    aopc_rand = float(np.mean([full_prob - deleted_prob(rand_order, j) for j in range(1, k + 1)]))
    top = int(top_order[0])
    most = float(np.max(drops))
    harm_order = np.argsort(-drops, kind="stable")
    return {
        "aopc_top": aopc_top,
        "aopc_random": aopc_rand,
        "k": float(k),
        "top_is_most_harmful": float(drops[top] >= most - 1e-9),
        "topk_overlap": float(len(set(top_order[:k].tolist()) & set(harm_order[:k].tolist())) / k),
        "rank_agreement": _spearman(a, drops),
        "top1_drop": float(drops[top]),
        "max_single_drop": most,
        "segments": float(n),
        "forward_passes": float(len(masks)),
    }


@dataclass
class FaithfulnessSummary:
    """How often explanations point at the segments whose deletion hurts most, over many chunks."""

    chunks: int
    top_is_most_harmful_rate: float
    """Share of chunks whose top segment is the most harmful single deletion (chance: about 1/n)."""
    chance_rate: float
    """Expected rate of a random segment choice: mean of 1/n over the chunks."""
    topk_overlap_mean: float
    rank_agreement_mean: float
    aopc_top_mean: float
    aopc_random_mean: float
    top_beats_random_rate: float
    """Share of chunks where aopc_top > aopc_random."""


def faithfulness_summary(explanations: Iterable) -> FaithfulnessSummary:
    """Aggregate the ``faithfulness`` dicts of explanations (those without one are skipped).

    Args:
        explanations: :class:`pipeline.types.Explanation` objects or faithfulness dicts.
    """
    rows = []
    chance = []
    for e in explanations:
        f = e if isinstance(e, dict) else getattr(e, "faithfulness", None)
        if not f:
            continue
        rows.append(f)
        n = f.get("segments", math.nan)
        chance.append(1.0 / n if n and math.isfinite(n) else math.nan)
    if not rows:
        nan = math.nan
        return FaithfulnessSummary(0, nan, nan, nan, nan, nan, nan, nan)

    def mean(key: str) -> float:
        vals = np.array([r.get(key, math.nan) for r in rows], dtype=np.float64)
        return float(np.nanmean(vals)) if np.any(np.isfinite(vals)) else math.nan

    beats = float(np.mean([r["aopc_top"] > r["aopc_random"] for r in rows]))
    ch = np.array(chance, dtype=np.float64)
    return FaithfulnessSummary(
        chunks=len(rows),
        top_is_most_harmful_rate=mean("top_is_most_harmful"),
        chance_rate=float(np.nanmean(ch)) if np.any(np.isfinite(ch)) else math.nan,
        topk_overlap_mean=mean("topk_overlap"),
        rank_agreement_mean=mean("rank_agreement"),
        aopc_top_mean=mean("aopc_top"),
        aopc_random_mean=mean("aopc_random"),
        top_beats_random_rate=beats,
    )
