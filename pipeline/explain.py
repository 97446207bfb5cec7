"""Explanations of an emotion model's output for one chunk: SHAP and LIME over time segments, acoustic-
feature attributions, attention maps and a deletion faithfulness check.

Public entry points:

- :func:`explain_chunk` — one chunk, one target label (default: the model's top label), tier 'fast' or
  'full'. Pass the chunk's ``frames`` (``model.frame_features``) when the analysis already computed them:
  the fast tier then costs no extra encoder pass.
- :func:`explain_features` — once per file (or batch of chunks): Shapley values over acoustic features of
  a surrogate fit to the model's outputs, with its held-out R². :func:`attach_feature_explanations`
  copies them into the chunks' :class:`~pipeline.types.Explanation` objects.
- :func:`explain_batch` — both of the above for all chunks of a file, sharing frames and feature tracks.

Interpretable units are n equal time segments of the chunk, n = min(max, max(min, round(duration_s)))
(``config.explain_min_segments`` .. ``config.explain_max_segments``; fewer when the model yields fewer
frames). Tiers: see :mod:`pipeline.explain_fast` and :mod:`pipeline.explain_full`; faithfulness:
:mod:`pipeline.faithfulness`; attention maps: :mod:`pipeline.attention`; the design and its limits:
docs/explanations.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pipeline.attention import attention_maps, frames_and_reduced_attention
from pipeline.blas import one_blas_thread
from pipeline.runtime import SAMPLE_RATE
from pipeline.types import EmotionModel, Explanation, SegmentWeight

logger = logging.getLogger(__name__)

TIERS = ("fast", "full")


# --------------------------------------------------------------------------------------------------
# segments and targets
# --------------------------------------------------------------------------------------------------

def n_segments(duration_s: float, config, n_frames: int | None = None) -> int:
    """Segments for a chunk: min(max, max(min, round(duration_s))), and no more than frames (>= 1)."""
    n = min(int(config.explain_max_segments), max(int(config.explain_min_segments), int(round(duration_s))))
    if n_frames is not None:
        n = min(n, int(n_frames))
    return max(1, n)


def segment_bounds(duration_s: float, n: int) -> list[tuple[float, float]]:
    """n equal (start_s, end_s) segments covering [0, duration_s]."""
    edges = np.linspace(0.0, float(duration_s), int(n) + 1)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def frame_segments(n_frames: int, hop_s: float, bounds: list[tuple[float, float]]) -> np.ndarray:
    """Segment index of each frame (by the frame's centre time (t + 0.5) * hop_s)."""
    centres = (np.arange(n_frames) + 0.5) * hop_s
    starts = np.array([b[0] for b in bounds])
    return np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(bounds) - 1)


def resolve_target(model: EmotionModel, proba: np.ndarray, target_label: str | None) -> tuple[int, str]:
    """(column, label) to explain: the top label when ``target_label`` is None.

    Raises:
        ValueError: ``target_label`` is not one of the model's outputs (named, with the model's labels).
    """
    labels = list(model.labels)
    if target_label is None:
        idx = int(np.argmax(proba))
        return idx, labels[idx]
    if target_label in labels:
        return labels.index(target_label), target_label
    from pipeline.taxonomy import to_canonical

    canon = to_canonical(target_label)
    if canon in labels:
        return labels.index(canon), canon
    raise ValueError(f"target label {target_label!r} is not an output of emotion model {model.name} "
                     f"(its labels: {', '.join(labels)})")


def _weights(bounds: list[tuple[float, float]], values: np.ndarray) -> list[SegmentWeight]:
    return [SegmentWeight(segment=i, start_s=round(a, 4), end_s=round(b, 4), value=float(v))
            for i, ((a, b), v) in enumerate(zip(bounds, values))]



# --------------------------------------------------------------------------------------------------
# one chunk
# --------------------------------------------------------------------------------------------------

def _empty(tier: str, target: str, reason: str, proba_t: float, note: str | None) -> Explanation:
    return Explanation(
        target_label=target, tier=tier, shap_method=f"not computed: {reason}", shap_segments=[],
        shap_base_value=proba_t, shap_full_value=proba_t, lime_method=f"not computed: {reason}",
        lime_segments=[], lime_score=None, attention_note=note,
    )


@one_blas_thread
def explain_chunk(model: EmotionModel, samples: np.ndarray, *, config, tier: str = "fast",
                  target_label: str | None = None, seed: int = 0, frames: np.ndarray | None = None,
                  faithfulness: bool | None = None, attention: bool = True,
                  sample_key: str = "",
                  attention_result: tuple | None = None) -> Explanation:
    """Explain the model's probability of ``target_label`` for one chunk.

    Args:
        model: any :class:`~pipeline.types.EmotionModel`.
        samples: the chunk, 16 kHz float32 mono.
        config: the :class:`~pipeline.config.Config` (segments, budget, attention size, faithfulness).
        tier: 'fast' (pooled head, one encoder pass, near free) or 'full' (input masking, real
            re-forwards under ``config.explain_budget``).
        target_label: a model label (or an alias of a canonical emotion); None: the top label.
        seed: seeds the sampling (LIME, permutations, KernelSHAP, random deletions) and decides which
            chunks the fast tier checks for faithfulness — pass the chunk index.
        frames: ``model.frame_features(samples)`` when already computed (saves the encoder pass).
        faithfulness: run the deletion check; None: always in the full tier, a seeded
            ``config.faithfulness_sample`` share of chunks in the fast tier.
        attention: compute attention maps for models that have attention (in the same forward pass as
            the frames when ``frames`` is None, else one extra pass, unless ``attention_result`` is given).
        attention_result: ``attention_maps(...)`` (maps, rollout, note) when already reduced (the
            analysis reduces each chunk's maps right after its forward pass, so a file's full-size maps
            never pile up in memory).
        sample_key: mixed with ``seed`` into the fast tier's faithfulness pick (pass the file's name or
            hash so that one-chunk files are sampled at the configured rate too).

    Returns:
        An :class:`~pipeline.types.Explanation`; ``shap_features`` stays empty (see
        :func:`explain_features`, which needs several chunks).

    Raises:
        ValueError: an unknown tier or target label.
    """
    from pipeline.explain_fast import (
        FAST_LIME_SAMPLES, lime_over_masks, pooled_head_game, random_masks, shapley_over_segments,
        silence_pooled,
    )
    from pipeline.faithfulness import deletion_faithfulness, faithfulness_selected

    if tier not in TIERS:
        raise ValueError(f"unknown explanation tier {tier!r} (use one of: {', '.join(TIERS)})")
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    sr = int(getattr(model, "sample_rate", SAMPLE_RATE))
    duration = x.size / sr
    size = int(config.attention_size)

    att, roll, note = (None, None, None)
    if x.size == 0:
        target = target_label or "?"
        return _empty(tier, target, "empty chunk", math.nan, "empty chunk: no attention maps")
    if (frames is None and attention and attention_result is None
            and getattr(model, "has_attention", False)):  # one forward pass for both
        (frames,), (attention_result,) = frames_and_reduced_attention(model, [x], size)
    if frames is None:
        frames = np.asarray(model.frame_features(x))
    frames = np.asarray(frames, dtype=np.float32)
    n_frames = frames.shape[0]
    if n_frames == 0:
        reason = "the model yields no frames for so short a chunk"
        return _empty(tier, target_label or "?", reason, math.nan, f"{reason}: no attention maps")
    if attention:
        att, roll, note = attention_result or attention_maps(model, x, size)
    else:
        note = "attention maps not requested"

    n = n_segments(duration, config, n_frames)
    bounds = segment_bounds(duration, n)
    seg_of_frame = frame_segments(n_frames, float(model.frame_hop_s), bounds)
    if tier == "fast":
        game = pooled_head_game(model, frames, seg_of_frame, n, silence_pooled(model))
        shap_res = shapley_over_segments(game, seed=seed)
        idx, label = resolve_target(model, shap_res.full, target_label)
        if shap_res.masks is not None and len(shap_res.masks) == 2**n:
            # LIME samples each segment on/off with p = 1/2, i.e. uniformly over masks: fitting on all 2^n
            # masks (already evaluated for the Shapley values) is its exact, noise-free limit
            lime_res = lime_over_masks(shap_res.masks, shap_res.outputs, idx, seed=seed)
            sample = f"all {len(shap_res.masks)} segment masks (the noise-free limit of LIME's uniform sampling)"
        else:
            rng = np.random.default_rng([int(seed), 31337])
            masks = random_masks(n, FAST_LIME_SAMPLES, rng)
            lime_res = lime_over_masks(masks, game(masks), idx, seed=seed)
            sample = f"{lime_res.samples} random segment masks (seed {seed})"
        shap_method = (f"fast tier: {shap_res.method} of the pooled head on the encoder's frames (one "
                       f"encoder pass; a segment left out = its frames dropped from the mean pooling; "
                       f"f(none) = head on the pooled frames of 1 s of digital silence)")
        lime_method = (f"fast tier: lime.lime_base.LimeBase, kernel-weighted ridge (kernel width 0.25 on cosine "
                       f"distance) on {sample} of the same pooled-head function")
        full_prob = float(shap_res.full[idx])  # head(mean of all frames) = the model's prediction
    else:
        from pipeline.explain_fast import silenced_frames_game
        from pipeline.explain_full import explain_full_tier

        # f(all) = head(mean of the frames): what predict_proba computes, from the frames we already have
        full_out = np.asarray(model.head_proba(frames.mean(axis=0, keepdims=True)), dtype=np.float64)[0]
        idx, label = resolve_target(model, full_out, target_label)
        control = silenced_frames_game(model, frames, seg_of_frame, n, silence_pooled(model))
        res = explain_full_tier(model, x, bounds, idx, budget=int(config.explain_budget),
                                batch_size=int(getattr(config, "batch_size", 8)), seed=seed,
                                full_output=full_out, control=control)
        shap_res, lime_res = res.shapley, res.lime
        shap_method = f"full tier: {shap_res.method}"
        lime_method = (f"full tier: lime.lime_base.LimeBase, kernel-weighted ridge (kernel width 0.25 on cosine "
                       f"distance) on the same {lime_res.samples} silenced-segment masks and re-forwards "
                       f"as KernelSHAP")
        full_prob = float(full_out[idx])

    values = shap_res.values[:, idx]
    exp = Explanation(
        target_label=label, tier=tier, shap_method=shap_method, shap_segments=_weights(bounds, values),
        shap_base_value=float(shap_res.base[idx]), shap_full_value=float(shap_res.full[idx]),
        lime_method=lime_method, lime_segments=_weights(bounds, lime_res.weights),
        lime_score=float(lime_res.score), attention=att, attention_rollout=roll, attention_note=note,
    )
    run_check = (faithfulness_selected(config, tier, seed, sample_key) if faithfulness is None
                 else bool(faithfulness))
    if run_check and n >= 2:
        try:
            exp.faithfulness = deletion_faithfulness(
                model, x, bounds, values, idx, k=int(config.faithfulness_top_k), seed=seed,
                batch_size=int(getattr(config, "batch_size", 8)), full_prob=full_prob,
            )
        except Exception as exc:  # a failed check must not lose the explanation
            logger.warning("faithfulness check failed: %s", exc)
    return exp


# --------------------------------------------------------------------------------------------------
# acoustic-feature attributions (surrogate, once per file / batch)
# --------------------------------------------------------------------------------------------------

MIN_SURROGATE_CHUNKS = 3
MIN_SURROGATE_SEGMENTS = 20
_LOG_FEATURES = {"rms_energy": 1e-5, "pitch_var_hz2": 1.0}
"""Features the surrogate reads as log(value + offset) (its Shapley values stay attributed to the feature)."""


@dataclass
class FeatureExplanations:
    """Shapley values over acoustic features for each chunk of a batch, and how they were obtained.

    Attributes:
        values: per chunk, {feature name: Shapley value of the surrogate for that chunk's target label};
            empty dicts when no trustworthy surrogate could be fit (``reason`` says why).
        target_labels: the label each chunk's values explain.
        method: what produced the numbers.
        methods: per chunk, the method string for ``Explanation.shap_features_method`` ("not computed:
            <why>" where that chunk's values are empty).
        r2: per chunk, the surrogate's held-out R² for that chunk's target label (None if not measured).
        r2_by_label: held-out R² per model label.
        n_chunks: chunks used; n_samples: segment samples used.
        reason: why values are empty, else None.
    """

    values: list[dict[str, float]]
    target_labels: list[str]
    method: str
    r2: list[float | None]
    r2_by_label: dict[str, float] = field(default_factory=dict)
    n_chunks: int = 0
    n_samples: int = 0
    reason: str | None = None
    methods: list[str] = field(default_factory=list)
    surrogate_value: list[float | None] = field(default_factory=list)
    """Per chunk: the surrogate's mean prediction over its segments, for its label."""
    surrogate_base: list[float | None] = field(default_factory=list)
    """Per chunk: the surrogate's mean prediction over the whole batch, for its label (values sum to
    ``surrogate_value - surrogate_base``)."""

    def method_for(self, chunk: int) -> str:
        return self.methods[chunk] if chunk < len(self.methods) else self.method


@one_blas_thread
def explain_features(model: EmotionModel, signals: Sequence[np.ndarray], *, config,
                     target_labels: Sequence[str | None] | None = None,
                     frames: Sequence[np.ndarray] | None = None, tracks: Sequence | None = None,
                     ) -> FeatureExplanations:
    """Shapley values over named acoustic features, of a surrogate fit across the chunks of a file/batch.

    Method: every chunk is cut into its explanation segments. For each segment we take (a) its acoustic
    features (:data:`pipeline.features.INTERPRETABLE_FEATURES`, from the chunk's feature tracks) and (b)
    the model's probabilities when the pooled head sees only that segment's frames (the fast tier's
    f({segment}) — no extra forward pass). A ridge regression on standardised features (RidgeCV; rms
    energy and pitch variance enter as logarithms) maps (a) to (b) for every label; its fidelity is the
    R² on *held-out chunks* (GroupKFold by chunk). Each chunk's attribution is the mean over its
    segments of the surrogate's exact linear Shapley values
    (``shap.LinearExplainer``, interventional, background = all segments of the batch), so the values
    of a chunk sum to (mean surrogate prediction over its segments) − (mean over the batch).

    No numbers are invented: with fewer than 3 chunks or 20 segments, a constant model output, or a
    held-out R² <= 0 for a label, that label's values stay empty and ``method`` / ``reason`` say why.

    Args:
        model: the emotion model.
        signals: the chunks (16 kHz float32).
        config: segments per chunk come from it.
        target_labels: label to explain per chunk (None entries / None: the chunk's top label).
        frames: ``model.frame_features`` of each chunk when already computed (else computed here).
        tracks: :func:`pipeline.features.feature_tracks` of each chunk when already computed.
    """
    from pipeline.explain_fast import pooled_head_game, silence_pooled
    from pipeline.features import INTERPRETABLE_FEATURES, feature_tracks

    m = len(signals)
    labels = list(model.labels)
    names = list(INTERPRETABLE_FEATURES)
    empty_vals: list[dict[str, float]] = [{} for _ in range(m)]

    def give_up(reason: str, targets: list[str], **kw) -> FeatureExplanations:
        logger.info("acoustic-feature attributions skipped: %s", reason)
        return FeatureExplanations(values=empty_vals, target_labels=targets,
                                   method=f"not computed: {reason}", r2=[None] * m, reason=reason,
                                   methods=[f"not computed: {reason}"] * m, **kw)

    sr = int(getattr(model, "sample_rate", SAMPLE_RATE))
    rows_x: list[list[float]] = []
    rows_y: list[np.ndarray] = []
    groups: list[int] = []
    chunk_full: list[np.ndarray] = []
    targets: list[str] = []
    used_chunks = 0
    for c, sig in enumerate(signals):
        x = np.asarray(sig, dtype=np.float32).reshape(-1)
        want = None if target_labels is None else target_labels[c]
        if x.size == 0:
            targets.append(want or "?")
            chunk_full.append(np.full(len(labels), np.nan))
            continue
        fr = np.asarray(frames[c] if frames is not None else model.frame_features(x), dtype=np.float32)
        if fr.shape[0] == 0:
            targets.append(want or "?")
            chunk_full.append(np.full(len(labels), np.nan))
            continue
        tr = tracks[c] if tracks is not None else feature_tracks(x, sr)
        duration = x.size / sr
        n = n_segments(duration, config, fr.shape[0])
        bounds = segment_bounds(duration, n)
        game = pooled_head_game(model, fr, frame_segments(fr.shape[0], float(model.frame_hop_s), bounds), n,
                                silence_pooled(model))
        out = game(np.vstack([np.eye(n), np.ones((1, n))]))  # each segment alone, then all
        full = out[-1]
        chunk_full.append(full)
        idx, lab = resolve_target(model, full, want)
        targets.append(lab)
        used_chunks += 1
        for s, (a, b) in enumerate(bounds):
            fs = tr.summarize(a, b).values
            rows_x.append([fs[k] for k in names])
            rows_y.append(out[s])
            groups.append(c)

    if used_chunks < MIN_SURROGATE_CHUNKS or len(rows_x) < MIN_SURROGATE_SEGMENTS:
        return give_up(f"too few chunks to fit and validate a surrogate ({used_chunks} chunks, {len(rows_x)} "
                       f"segments; need >= {MIN_SURROGATE_CHUNKS} chunks and >= {MIN_SURROGATE_SEGMENTS} "
                       f"segments)", targets, n_chunks=used_chunks, n_samples=len(rows_x))

    X = np.asarray(rows_x, dtype=np.float64)
    Y = np.asarray(rows_y, dtype=np.float64)
    for j, nm in enumerate(names):  # loudness and pitch spread act on a log scale
        if nm in _LOG_FEATURES:
            with np.errstate(invalid="ignore", divide="ignore"):
                X[:, j] = np.log(np.maximum(X[:, j], 0.0) + _LOG_FEATURES[nm])
    g = np.asarray(groups)
    # drop features measurable in under half the segments, impute the rest with the batch median
    keep = np.isfinite(X).mean(axis=0) >= 0.5
    dropped = [nm for nm, k in zip(names, keep) if not k]
    X, used_names = X[:, keep], [nm for nm, k in zip(names, keep) if k]
    keep2 = np.ones(len(used_names), dtype=bool)
    for j in range(X.shape[1]):
        col = X[:, j]
        med = np.nanmedian(col)
        col[~np.isfinite(col)] = med
        if np.ptp(col) == 0:
            keep2[j] = False
    dropped += [nm for nm, k in zip(used_names, keep2) if not k]
    X, used_names = X[:, keep2], [nm for nm, k in zip(used_names, keep2) if k]
    if X.shape[1] == 0:
        return give_up("no acoustic feature varies across the segments (silence?)", targets,
                       n_chunks=used_chunks, n_samples=len(rows_x))

    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold

    mu, sd = X.mean(axis=0), X.std(axis=0)
    Z = (X - mu) / sd
    alphas = np.logspace(-2, 3, 12)
    folds = GroupKFold(n_splits=min(5, used_chunks))
    pred = np.zeros_like(Y)
    for tr_idx, te_idx in folds.split(Z, Y, g):
        ridge = RidgeCV(alphas=alphas).fit(Z[tr_idx], Y[tr_idx])
        pred[te_idx] = ridge.predict(Z[te_idx])
    sst = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
    sse = ((Y - pred) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sst > 1e-12, 1.0 - sse / sst, np.nan)
    r2_by_label = {lab: float(v) for lab, v in zip(labels, r2)}
    final = RidgeCV(alphas=alphas).fit(Z, Y)

    import shap

    coef = np.atleast_2d(final.coef_)
    intercept = np.atleast_1d(final.intercept_)
    method = (f"Shapley values (shap.LinearExplainer, interventional) of a ridge surrogate "
              f"(standardised acoustic features of each explanation segment, rms energy and pitch variance "
              f"as logarithms -> the model's pooled-head "
              f"probability on that segment alone), fit on {len(Z)} segments of {used_chunks} chunks; "
              f"fidelity = R² on held-out chunks ({folds.get_n_splits()}-fold by chunk); a chunk's value is "
              f"the mean over its segments")
    if dropped:
        method += f"; features left out (unmeasurable or constant): {', '.join(dropped)}"
    masker = shap.maskers.Independent(Z, max_samples=len(Z))
    phi_by_label: dict[int, np.ndarray] = {}
    values: list[dict[str, float]] = []
    methods: list[str] = []
    sur_value: list[float | None] = []
    sur_base: list[float | None] = []
    r2_chunk: list[float | None] = []
    reasons: set[str] = set()
    for c in range(m):
        lab = targets[c]
        if lab not in labels or not np.any(g == c):
            values.append({})
            r2_chunk.append(None)
            methods.append("not computed: the chunk could not be segmented (empty or too short)")
            sur_value.append(None)
            sur_base.append(None)
            continue
        li = labels.index(lab)
        rv = r2[li]
        r2_chunk.append(None if not np.isfinite(rv) else float(rv))
        why = None
        if not np.isfinite(rv):
            why = f"the model's {lab} output does not vary across segments"
        elif rv <= 0:
            why = (f"the surrogate does not predict held-out chunks' {lab} output better than their mean "
                   f"(R²={rv:.2f}), so its Shapley values would explain nothing")
        if why:
            reasons.add(why)
            values.append({})
            methods.append(f"not computed: {why} (surrogate fit on {len(Z)} segments of {used_chunks} chunks)")
            sur_value.append(None)
            sur_base.append(None)
            continue
        if li not in phi_by_label:
            explainer = shap.LinearExplainer((coef[li], float(intercept[li])), masker)
            phi_by_label[li] = np.asarray(explainer.shap_values(Z), dtype=np.float64)
        phi = phi_by_label[li][g == c].mean(axis=0)
        values.append({nm: float(v) for nm, v in zip(used_names, phi)})
        methods.append(method)
        pred = Z @ coef[li] + intercept[li]
        sur_value.append(float(pred[g == c].mean()))
        sur_base.append(float(pred.mean()))

    return FeatureExplanations(values=values, target_labels=targets, method=method, r2=r2_chunk,
                               r2_by_label=r2_by_label, n_chunks=used_chunks, n_samples=len(Z),
                               reason="; ".join(sorted(reasons)) or None, methods=methods,
                               surrogate_value=sur_value, surrogate_base=sur_base)


def attach_feature_explanations(explanations: Sequence[Explanation | None], fx: FeatureExplanations) -> None:
    """Copy per-chunk feature attributions, method and R² into the chunks' explanations (in place).

    Values are attached only where the explanation's target label is the label they explain.
    """
    for c, (exp, vals, lab, r2) in enumerate(zip(explanations, fx.values, fx.target_labels, fx.r2)):
        if exp is None:
            continue
        exp.surrogate_r2 = r2
        if exp.target_label == lab:
            exp.shap_features = dict(vals)
            exp.shap_features_method = fx.method_for(c)
        else:
            exp.shap_features = {}
            exp.shap_features_method = f"not computed: the batch surrogate explained {lab}, not {exp.target_label}"


def explain_batch(model: EmotionModel, signals: Sequence[np.ndarray], *, config, tier: str | None = None,
                  frames: Sequence[np.ndarray] | None = None, tracks: Sequence | None = None,
                  seeds: Sequence[int] | None = None, target_label: str | None = None,
                  sample_key: str = "", attention: bool = True,
                  attention_results: Sequence[tuple | None] | None = None) -> list[Explanation]:
    """Explain every chunk of a file: :func:`explain_chunk` per chunk + :func:`explain_features` once.

    Args:
        model: the emotion model.
        signals: the file's chunks (16 kHz float32).
        config: the configuration (``config.explain`` is the tier unless ``tier`` is given).
        tier: 'fast' or 'full'.
        frames: per chunk ``model.frame_features`` from the analysis (computed here when None).
        tracks: per chunk :func:`pipeline.features.feature_tracks` from the analysis (computed when None).
        seeds: per chunk seed, default the chunk index (also picks the fast tier's faithfulness sample).
        target_label: one label for every chunk; None: each chunk's top label.
        sample_key: the file's name or hash, mixed into the fast tier's faithfulness pick.
        attention: compute attention maps (models with attention).
        attention_results: per chunk ``attention_maps(...)`` reduced from the analysis' own forward pass
            (None: computed here, in the same pass as the frames when those are missing too).
    """
    tier = tier or config.explain
    reduced = list(attention_results) if attention_results is not None else [None] * len(signals)
    if frames is None and attention and attention_results is None and getattr(model, "has_attention", False):
        frames, reduced = frames_and_reduced_attention(model, signals, int(config.attention_size))
    frames = list(frames) if frames is not None else [
        np.asarray(model.frame_features(s)) if np.asarray(s).size else np.zeros((0, 1), np.float32)
        for s in signals]
    seeds = list(seeds) if seeds is not None else list(range(len(signals)))
    exps = [explain_chunk(model, s, config=config, tier=tier, target_label=target_label, seed=sd, frames=fr,
                          sample_key=sample_key, attention=attention, attention_result=red)
            for s, fr, sd, red in zip(signals, frames, seeds, reduced)]
    fx = explain_features(model, signals, config=config, target_labels=[e.target_label for e in exps],
                          frames=frames, tracks=tracks)
    attach_feature_explanations(exps, fx)
    return exps
