"""Training the emotion head on Whisper encoder frames (``emotivoice train --arch whisper``).

The encoder is frozen, so training is: (1) run the Whisper encoder once per clip and keep its pooled
frame statistics (mean of h and of h^2, cached per clip under the decoded-audio cache), (2) fit a
multinomial logistic regression on the standardised statistics, (3) calibrate it by temperature scaling
on speakers the head never trained on.

Everything that is chosen is chosen on the training speakers only: the inverse regularisation ``C`` is
picked from ``HeadRecipe.c_grid`` by inner leave-speaker-groups-out cross-validation (UAR), and the
temperature is fitted on those same inner out-of-fold logits (speakers held out from the inner model).
The final head is then fitted on every training speaker with the chosen ``C`` and given that
temperature. ``bench.whisper_head_cv`` wraps all of this in the outer leave-actors-out folds.

Library API:
    :func:`encoder_stats` (pooled statistics per clip, cached), :func:`fit_head` -> :class:`HeadFit`,
    :func:`fit_temperature`, :func:`expected_calibration_error`, :func:`nll`,
    :func:`train_whisper_arrays` (what ``pipeline.training.train`` dispatches ``arch='whisper'`` to).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.types import BASE_EMOTIONS

log = logging.getLogger(__name__)

ECE_BINS = 15


# ----------------------------------------------------------------------------------------- calibration

def nll(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes ``y`` (indices) under ``proba`` (n, C)."""
    p = np.asarray(proba, dtype=np.float64)[np.arange(len(y)), np.asarray(y, dtype=np.int64)]
    return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy - confidence| averaged over ``bins`` equal-width confidence bins, weighted
    by the share of clips in each bin (Guo et al. 2017)."""
    p = np.asarray(proba, dtype=np.float64)
    if len(p) == 0:
        return 0.0
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` for labels ``y`` (indices).

    A bounded one-dimensional search over log T (the NLL is smooth and unimodal in T for fixed logits).
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(z) == 0:
        return 1.0
    res = minimize_scalar(lambda lt: nll(_softmax(z / np.exp(lt)), y), bounds=tuple(np.log(bounds)),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


# ------------------------------------------------------------------------------------------- features

def _wave_key(wave: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest()[:24]


def encoder_stats(waves: Sequence[np.ndarray], encoder: Any, *, cache_dir: str | Path | None = None,
                  min_duration_s: float = 0.25, progress: bool = False) -> np.ndarray:
    """(n, 2 * dim) pooled frame statistics [mean h, mean h^2] of each clip's Whisper encoder frames.

    Cached per clip (a hash of its samples and the encoder's label) as ``.npy`` under ``cache_dir``, so
    cross-validation and re-training pay the encoder once.
    """
    from pipeline.training.waves import progress_iter
    from pipeline.whisper_emotion import frame_vectors, pad_signal

    label = getattr(encoder, "label", type(encoder).__name__)
    tag = hashlib.sha1(f"{label}|{min_duration_s}".encode()).hexdigest()[:10]
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    fn = encoder.frames if hasattr(encoder, "frames") else encoder
    rows = []
    for w in progress_iter(waves, progress, desc="whisper encoder"):
        f = cache / f"wstats_{tag}_{_wave_key(w)}.npy" if cache is not None else None
        if f is not None and f.is_file():
            try:
                rows.append(np.load(f))
                continue
            except (OSError, ValueError):
                pass
        h = np.asarray(fn(pad_signal(w, min_duration_s)), dtype=np.float32)
        row = frame_vectors(h, "meanstd").mean(axis=0).astype(np.float32)
        if f is not None:
            np.save(f, row)
        rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def augmented_stats(waves: Sequence[np.ndarray], encoder: Any, copies: int, *,
                    cache_dir: str | Path | None = None, progress: bool = False) -> list[np.ndarray]:
    """:func:`encoder_stats` of ``copies`` random channel-augmented copies of every clip
    (:func:`pipeline.training.augment.augment`; copy ``k`` of clip ``i`` is seeded by ``(k, i)``, so the copies,
    and their cache entries, are the same from run to run)."""
    from pipeline.training.augment import augment

    return [encoder_stats([augment(w, seed=1_000_003 * (k + 1) + i) for i, w in enumerate(waves)], encoder,
                          cache_dir=cache_dir, progress=progress) for k in range(copies)]


def stats_for(pooled_meanstd: np.ndarray, pooling: str) -> np.ndarray:
    """Cached [mean h, mean h^2] rows -> the statistics a head with ``pooling`` reads."""
    from pipeline.whisper_emotion import pooled_stats

    p = np.asarray(pooled_meanstd, dtype=np.float64)
    dim = p.shape[1] // 2
    return p[:, :dim] if pooling == "mean" else pooled_stats(p, "meanstd", dim)


def speaker_centred(stats: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """``stats`` with each speaker's mean replaced by the overall mean (per-speaker normalisation)."""
    stats = np.asarray(stats, dtype=np.float64)
    out = stats.copy()
    ref = stats.mean(axis=0)
    spk = np.asarray(list(speakers))
    for s in np.unique(spk):
        sel = spk == s
        out[sel] = stats[sel] - stats[sel].mean(axis=0) + ref
    return out


# ----------------------------------------------------------------------------------------------- head

@dataclass
class HeadRecipe:
    """How the head is fitted.

    Attributes:
        pooling: 'meanstd' (mean and standard deviation of the frames) or 'mean'.
        c_grid: candidate inverse L2 strengths of the logistic regression (chosen by inner CV).
        inner_groups: speaker groups of the inner cross-validation (C choice and temperature).
        speaker_norm: train on per-speaker centred statistics (needs several chunks per speaker at use).
        augment: random channel-augmented copies of each clip trained on besides the clean one (band limits,
            noise, gain: :mod:`pipeline.training.augment`); each copy keeps its clip's speaker, so inner CV
            never sees a speaker's copy while holding that speaker out.
        class_weight: 'balanced' (each class weighs the same in the loss) or None.
        max_iter: L-BFGS iterations.
        seed: inner speaker grouping.
    """

    pooling: str = "meanstd"
    c_grid: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3)
    inner_groups: int = 5
    speaker_norm: bool = False
    augment: int = 0
    class_weight: str | None = "balanced"
    max_iter: int = 2000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["c_grid"] = list(self.c_grid)
        return d


@dataclass
class HeadFit:
    """A fitted head: ``softmax(((stats - center) / scale) @ weight.T + bias) / temperature)``.

    Attributes:
        labels: class order.
        c: the chosen inverse regularisation; inner: per-C inner-CV UAR (and ECE/NLL of the chosen C
            before/after temperature scaling, on speakers held out from the inner models).
    """

    labels: list[str]
    weight: np.ndarray
    bias: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    temperature: float
    c: float
    inner: dict[str, Any] = field(default_factory=dict)

    def logits(self, stats: np.ndarray) -> np.ndarray:
        return ((np.asarray(stats, np.float64) - self.center) / self.scale) @ self.weight.T + self.bias

    def proba(self, stats: np.ndarray, calibrated: bool = True) -> np.ndarray:
        z = self.logits(stats)
        return _softmax(z / self.temperature if calibrated else z)


def _fit_lr(z: np.ndarray, y: np.ndarray, c: float, recipe: HeadRecipe, n_classes: int):
    """Multinomial logistic regression with an L2 penalty (sklearn's objective: ``c * sum of (weighted)
    cross-entropies + |W|^2 / 2``, bias not penalised), by L-BFGS on the exact gradient.

    sklearn's LogisticRegression minimises the same objective (coefficients agreed to 1e-2, predictions
    100%) but took about 10 s per fit on 1080 x 1024 statistics on the shared CPU; this takes about 1 s. Classes absent from ``y`` get bias -30
    (never predicted)."""
    from scipy.optimize import minimize

    z = np.asarray(z, dtype=np.float64)
    present = np.unique(y)
    k = len(present)
    yi = np.searchsorted(present, y)
    onehot = np.eye(k)[yi]
    if recipe.class_weight == "balanced":
        counts = np.bincount(yi, minlength=k).astype(np.float64)
        sw = len(yi) / (k * counts[yi])
    else:
        sw = np.ones(len(yi))
    n, d = z.shape

    def objective(theta):
        w = theta[: k * d].reshape(k, d)
        b = theta[k * d:]
        logits = z @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -c * np.sum(sw * logp[np.arange(n), yi]) + 0.5 * np.sum(w * w)
        g = c * sw[:, None] * (np.exp(logp) - onehot)  # (n, k)
        return loss, np.concatenate([(g.T @ z + w).ravel(), g.sum(axis=0)])

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # tiny products: more BLAS threads only wait on each other (5x slower measured)
        res = minimize(objective, np.zeros(k * d + k), jac=True, method="L-BFGS-B",
                       options={"maxiter": recipe.max_iter, "gtol": 1e-6})
    w = np.zeros((n_classes, d))
    b = np.full(n_classes, -30.0)
    w[present] = res.x[: k * d].reshape(k, d)
    b[present] = res.x[k * d:]
    return w, b


def _standardise(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = stats.mean(axis=0)
    scale = stats.std(axis=0)
    return center, np.where(scale > 1e-8, scale, 1.0)


def _uar(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    rec = [np.mean(pred[y == k] == k) for k in range(n_classes) if np.any(y == k)]
    return float(np.mean(rec)) if rec else 0.0


def fit_head(stats: np.ndarray, y: np.ndarray, speakers: Sequence[str], labels: Sequence[str],
             recipe: HeadRecipe | None = None, scored: np.ndarray | None = None) -> HeadFit:
    """Fit the head on training speakers only: C and the temperature from inner speaker-independent CV.

    Args:
        stats: (n, S) statistics (already speaker-centred when ``recipe.speaker_norm``).
        y: (n,) class indices into ``labels``.
        speakers: (n,) speaker ids; the inner folds split speakers, never a speaker's clips.
        scored: (n,) bool, the rows the inner CV scores (C) and calibrates on (T); None = all. Augmented
            copies are trained on but not scored: C and T are chosen on the recordings as they are.
    """
    from pipeline.training.validation import speaker_groups

    recipe = recipe or HeadRecipe()
    stats = np.asarray(stats, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    spk = np.asarray([str(s) for s in speakers])
    k = len(labels)
    groups = speaker_groups(list(spk), min(recipe.inner_groups, len(set(spk))), recipe.seed)
    inner: dict[str, Any] = {"groups": groups, "uar_by_c": {}}
    oof_by_c: dict[float, np.ndarray] = {}
    keep = np.ones(len(y), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    y_all = y
    if len(groups) >= 2:
        for c in recipe.c_grid:
            oof = np.zeros((len(y), k))
            for g in groups:
                te = np.isin(spk, g)
                center, scale = _standardise(stats[~te])
                w, b = _fit_lr((stats[~te] - center) / scale, y[~te], c, recipe, k)
                oof[te] = ((stats[te] - center) / scale) @ w.T + b
            oof_by_c[c] = oof[keep]
            inner["uar_by_c"][str(c)] = round(_uar(y[keep], oof[keep].argmax(1), k), 4)
        best_c = max(recipe.c_grid, key=lambda c: (inner["uar_by_c"][str(c)], -c))
        oof, y = oof_by_c[best_c], y[keep]
        temperature = fit_temperature(oof, y)
        inner.update(
            uar=inner["uar_by_c"][str(best_c)],
            ece_raw=round(expected_calibration_error(_softmax(oof), y), 4),
            ece_calibrated=round(expected_calibration_error(_softmax(oof / temperature), y), 4),
            nll_raw=round(nll(_softmax(oof), y), 4), nll_calibrated=round(nll(_softmax(oof / temperature), y), 4))
    else:  # one speaker: nothing to hold out; no calibration possible
        best_c, temperature = recipe.c_grid[len(recipe.c_grid) // 2], 1.0
        inner["note"] = "a single speaker: C not tuned, temperature 1 (uncalibrated)"
        log.warning("whisper head: one training speaker only; C not tuned and the scores are not calibrated")
    center, scale = _standardise(stats)
    w, b = _fit_lr((stats - center) / scale, y_all, best_c, recipe, k)
    return HeadFit(labels=list(labels), weight=w, bias=b, center=center, scale=scale, temperature=temperature,
                   c=float(best_c), inner=inner)


# ------------------------------------------------------------------------------------------- training

def train_whisper_arrays(waves: Sequence[np.ndarray], data, out_dir: str | Path | None, *, settings=None,
                         encoder_name: str = "base", recipe: HeadRecipe | None = None, config=None,
                         encoder: Any = None, cache_dir: str | Path | None = None, progress: bool = False,
                         command: str | None = None):
    """Train a whisper-head model on decoded clips (``data``: a ``pipeline.training.LabelledSet``).

    Returns a ``pipeline.training.TrainResult`` whose ``model`` is a ``WhisperHeadModel``; saved to
    ``out_dir`` (weights, config.json with the recipe and inner-CV figures, training.json) unless None.
    """
    import json

    from pipeline.config import Config
    from pipeline.training.settings import MemberResult, TrainResult, TrainSettings
    from pipeline.training.waves import default_cache_dir
    from pipeline.whisper_emotion import WhisperHeadConfig, WhisperHeadModel, load_encoder

    settings = settings or TrainSettings()
    recipe = recipe or HeadRecipe(seed=settings.seed)
    config = config or Config()
    t0 = time.perf_counter()
    present = [e for e in BASE_EMOTIONS if e in set(data.labels)]
    if len(present) < 2:
        raise ValueError(f"--arch whisper needs clips of at least 2 of the six emotions (got {present})")
    compute = "int8"
    encoder = encoder if encoder is not None else load_encoder(encoder_name, config, compute_type=compute)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    raw = encoder_stats(waves, encoder, cache_dir=cache, progress=progress)
    copies = 1 + int(recipe.augment)
    if recipe.augment:
        raw = np.concatenate([raw, *augmented_stats(waves, encoder, recipe.augment, cache_dir=cache,
                                                    progress=progress)])
    speakers = list(data.speakers) * copies
    stats = stats_for(raw, recipe.pooling)
    if recipe.speaker_norm:
        stats = speaker_centred(stats, speakers)
    y = np.array([present.index(lab) for lab in data.labels] * copies)
    fit = fit_head(stats, y, speakers, present, recipe, scored=np.arange(len(y)) < len(data))
    dim = raw.shape[1] // 2
    cfg = WhisperHeadConfig(encoder=encoder_name, compute_type=compute, pooling=recipe.pooling, dim=dim,
                            labels=tuple(present), temperature=fit.temperature, speaker_norm=recipe.speaker_norm)
    model = WhisperHeadModel(cfg, fit.weight, fit.bias, fit.center, fit.scale, encoder=encoder,
                             metadata={"recipe": recipe.to_dict(), "c": fit.c, "inner_cv": fit.inner})
    member = MemberResult(member=0, train_speakers=data.speaker_set(), val_speakers=[], best_epoch=0,
                          best_val_uar=fit.inner.get("uar"), epochs_run=0, history=[])
    result = TrainResult(
        out_dir=str(out_dir) if out_dir is not None else "", arch="whisper", labels=list(present),
        train_labels=list(present), n_clips=len(data), class_counts={lab: data.labels.count(lab) for lab in present},
        speakers=data.speaker_set(), skipped=dict(data.skipped), members=[member], val_uar=fit.inner.get("uar"),
        seconds=time.perf_counter() - t0, settings={**settings.to_dict(), "whisper_head": recipe.to_dict()},
        command=command, model=model)
    if out_dir is not None:
        out = Path(out_dir)
        training = result.to_json_dict()
        model.save(out, extra={"training": training})
        (out / "training.json").write_text(json.dumps(training, indent=2) + "\n")
        log.info("saved whisper-head model to %s", out)
    return result
