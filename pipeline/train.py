"""Training and speaker-independent evaluation of emotion models (``emotivoice train`` / ``evaluate``).

Library API:
    :func:`read_manifest` -> :class:`LabelledSet` (labels mapped by ``pipeline.taxonomy.to_canonical``)
    :func:`load_waves` (decode + cache at 16 kHz)
    :func:`train` -> :class:`TrainResult` (``arch='compact'``, ``'hubert'`` or ``'whisper'``: a head on Whisper
    encoder frames, :mod:`pipeline.train_whisper_head`; several manifests: :mod:`pipeline.train_data`)
    :func:`evaluate` / :func:`compute_metrics` -> :class:`EvalResult` (UAR, WA, macro-F1, per-class recall,
    confusion matrix), :func:`plot_confusion`
CLI delegation: :func:`add_train_arguments` / :func:`run_train`, :func:`add_evaluate_arguments` /
:func:`run_evaluate`.

Validation is always speaker-independent: a speaker's clips are never split between sets.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from pipeline.taxonomy import to_canonical
from pipeline.types import BASE_EMOTIONS, EmotionModel

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: Fallback column names (the RAVDESS manifest has ``emotion`` and ``actor``).
LABEL_FALLBACKS = ("label", "emotion")
SPEAKER_FALLBACKS = ("speaker", "actor")


# ----------------------------------------------------------------------------------------------- data


@dataclass
class LabelledSet:
    """Labelled clips read from a manifest.

    Attributes:
        paths: absolute audio paths.
        labels: training labels (canonical emotions, or auxiliary labels when asked for).
        speakers: speaker ids as strings ("" when the manifest has no speaker column).
        skipped: original label -> number of rows skipped because it maps onto no class.
        label_column / speaker_column: the manifest columns used (speaker_column None when absent).
    """

    paths: list[str]
    labels: list[str]
    speakers: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    label_column: str = "label"
    speaker_column: str | None = "speaker"

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: Sequence[int]) -> "LabelledSet":
        return LabelledSet([self.paths[i] for i in idx], [self.labels[i] for i in idx],
                           [self.speakers[i] for i in idx], dict(self.skipped), self.label_column,
                           self.speaker_column)

    def speaker_set(self) -> list[str]:
        return sorted(set(self.speakers), key=_speaker_key)


def _speaker_key(s: str) -> tuple[int, Any]:
    try:
        return (0, float(s))
    except ValueError:
        return (1, s)


def _norm_speaker(value: str) -> str:
    """'01' and '1' name the same actor."""
    v = str(value).strip()
    try:
        f = float(v)
        return str(int(f)) if f.is_integer() else v
    except ValueError:
        return v


def read_manifest(data_dir: str | os.PathLike, manifest: str | os.PathLike, *,
                  label_column: str | None = None, speaker_column: str | None = None,
                  label_map: dict[str, str] | None = None,
                  extra_labels: Sequence[str] = ()) -> LabelledSet:
    """Read a ``path,label[,speaker]`` CSV (paths relative to ``data_dir``).

    Labels map onto the six canonical emotions with ``pipeline.taxonomy.to_canonical``; ``label_map``
    (lower-case original -> canonical) is applied first (e.g. ``{'calm': 'neutral'}``); labels listed in
    ``extra_labels`` are kept as they are (auxiliary training classes); other rows are skipped and counted.

    Args:
        label_column: default 'label', falling back to 'emotion' when there is no 'label' column.
        speaker_column: default 'speaker', falling back to 'actor'; without either, speakers are "".

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: the manifest lacks a path or label column, naming the columns it has.
    """
    mpath = Path(manifest)
    if not mpath.is_file():
        raise FileNotFoundError(f"manifest {mpath} does not exist")
    root = Path(data_dir)
    with open(mpath, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    if "path" not in cols:
        raise ValueError(f"manifest {mpath}: no 'path' column (columns: {', '.join(cols)})")
    lab_col = _pick_column(cols, label_column, LABEL_FALLBACKS)
    if lab_col is None:
        raise ValueError(f"manifest {mpath}: no label column {label_column or 'label'!r} "
                         f"(columns: {', '.join(cols)}; use --label-column)")
    spk_col = _pick_column(cols, speaker_column, SPEAKER_FALLBACKS)
    if speaker_column and spk_col is None:
        raise ValueError(f"manifest {mpath}: no speaker column {speaker_column!r} (columns: {', '.join(cols)})")
    lmap = {k.lower(): v for k, v in (label_map or {}).items()}
    extras = {e.lower() for e in extra_labels}
    out = LabelledSet([], [], [], {}, lab_col, spk_col)
    for row in rows:
        raw = row[lab_col].strip()
        key = raw.lower()
        label = to_canonical(lmap.get(key, key))
        if label is None and key in extras:
            label = key
        if label is None:
            out.skipped[raw] = out.skipped.get(raw, 0) + 1
            continue
        out.paths.append(str(root / row["path"].strip()))
        out.labels.append(label)
        out.speakers.append(_norm_speaker(row[spk_col]) if spk_col else "")
    if out.skipped:
        log.info("manifest %s: skipped %d rows with labels outside the classes: %s", mpath,
                 sum(out.skipped.values()), dict(sorted(out.skipped.items())))
    return out


def _pick_column(cols: list[str], wanted: str | None, fallbacks: Sequence[str]) -> str | None:
    if wanted:
        return wanted if wanted in cols else None
    return next((c for c in fallbacks if c in cols), None)


def default_cache_dir() -> Path:
    """``$EMOTIVOICE_CACHE`` or ``<tmp>/emotivoice_cache``."""
    return Path(os.environ.get("EMOTIVOICE_CACHE") or Path(tempfile.gettempdir()) / "emotivoice_cache")


def load_waves(paths: Sequence[str], *, cache_dir: str | os.PathLike | None = None,
               progress: bool = False) -> list[np.ndarray]:
    """Decode each file to float32 mono 16 kHz, caching int16 copies as ``.npy`` under ``cache_dir``.

    The cache key is the absolute path, size and modification time, so edited files are re-decoded.

    Raises:
        pipeline.types.AudioError: a file that cannot be decoded (named).
    """
    from pipeline.audio import decode_audio

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    out: list[np.ndarray] = []
    for p in _progress(paths, progress, desc="decoding"):
        st = os.stat(p) if os.path.exists(p) else None
        key = hashlib.sha1(f"{os.path.abspath(p)}|{st.st_size if st else 0}|{st.st_mtime_ns if st else 0}"
                           .encode()).hexdigest()[:20]
        f = cache / f"wave16k_{key}.npy"
        if f.is_file():
            try:
                out.append(np.load(f).astype(np.float32) / 32767.0)
                continue
            except (OSError, ValueError):
                pass
        x = decode_audio(p, sample_rate=SAMPLE_RATE).samples
        np.save(f, np.round(np.clip(x, -1, 1) * 32767.0).astype(np.int16))
        out.append(np.asarray(x, dtype=np.float32))
    return out


def speech_bounds(wave: np.ndarray, top_db: float = 35.0) -> tuple[int, int]:
    """Sample range of the non-silent part (librosa trim at ``top_db`` below the peak)."""
    import librosa

    if wave.size == 0 or not np.any(wave):
        return 0, wave.size
    _, (a, b) = librosa.effects.trim(wave, top_db=top_db, frame_length=512, hop_length=160)
    return (int(a), int(b)) if b > a else (0, wave.size)


def _progress(it: Iterable, enabled: bool, **kw):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, **kw)


# ------------------------------------------------------------------------------------------- metrics


@dataclass
class EvalResult:
    """Classification metrics over the classes a model has.

    Attributes:
        uar: unweighted average recall (balanced accuracy) over ``labels``.
        wa: weighted accuracy (plain accuracy).
        macro_f1: mean F1 over ``labels``.
        per_class: recall per canonical emotion; None for a class the model lacks or the data lacks.
        confusion: rows = true class, columns = predicted class, both in ``labels`` order.
        labels: the classes scored (the model's canonical classes present in the data).
        n: clips scored (the confusion matrix sums to it).
        absent: canonical emotions the model does not have.
        skipped: rows not scored -> count, by reason/label.
        model: the model's name.
    """

    uar: float
    wa: float
    macro_f1: float
    per_class: dict[str, float | None]
    confusion: list[list[int]]
    labels: list[str]
    n: int
    absent: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    model: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A plain-text report (what ``emotivoice evaluate`` prints without --json)."""
        lines = [f"model {self.model}: {self.n} clips",
                 f"UAR (balanced accuracy) {self.uar:.3f}   WA (accuracy) {self.wa:.3f}   macro-F1 {self.macro_f1:.3f}",
                 "per-class recall:"]
        for e in BASE_EMOTIONS:
            v = self.per_class.get(e)
            lines.append(f"  {e:<10} {'absent from model' if e in self.absent else ('no clips' if v is None else f'{v:.3f}')}")
        width = max(len(x) for x in self.labels) if self.labels else 5
        lines.append("confusion (rows true, columns predicted):")
        lines.append(" " * (width + 2) + " ".join(f"{x[:5]:>5}" for x in self.labels))
        for lab, row in zip(self.labels, self.confusion):
            lines.append(f"  {lab:<{width}}" + " ".join(f"{v:>5d}" for v in row))
        if self.skipped:
            lines.append("not scored: " + ", ".join(f"{k} ({v})" for k, v in sorted(self.skipped.items())))
        return "\n".join(lines)


def compute_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], *,
                    absent: Sequence[str] = (), model: str = "",
                    skipped: dict[str, int] | None = None) -> EvalResult:
    """UAR, WA, macro-F1, per-class recall and the confusion matrix over ``labels``.

    Classes of ``labels`` with no true clip get recall None and are left out of UAR/macro-F1.
    """
    labels = list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    conf = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        conf[index[t], index[p]] += 1
    n = int(conf.sum())
    support = conf.sum(1)
    predicted = conf.sum(0)
    recalls: dict[str, float | None] = {e: None for e in BASE_EMOTIONS}
    f1s = []
    for i, lab in enumerate(labels):
        if support[i] == 0:
            recalls[lab] = None
            continue
        r = conf[i, i] / support[i]
        prec = conf[i, i] / predicted[i] if predicted[i] else 0.0
        recalls[lab] = float(r)
        f1s.append(0.0 if r + prec == 0 else 2 * r * prec / (r + prec))
    present = [recalls[lab] for lab in labels if recalls.get(lab) is not None]
    return EvalResult(
        uar=float(np.mean(present)) if present else 0.0,
        wa=float(np.trace(conf) / n) if n else 0.0,
        macro_f1=float(np.mean(f1s)) if f1s else 0.0,
        per_class=recalls,
        confusion=conf.tolist(),
        labels=labels,
        n=n,
        absent=list(absent),
        skipped=dict(skipped or {}),
        model=model,
    )


def scored_labels(model_labels: Sequence[str]) -> list[str]:
    """The canonical classes a model has, in canonical order."""
    return [e for e in BASE_EMOTIONS if e in model_labels]


def predictions(model: EmotionModel, waves: Sequence[np.ndarray], *, batch_size: int = 8,
                progress: bool = False) -> np.ndarray:
    """(n, len(model.labels)) probabilities, computed in batches."""
    rows = []
    for i in _progress(range(0, len(waves), batch_size), progress, desc="scoring"):
        rows.append(np.asarray(model.predict_proba(list(waves[i:i + batch_size]))))
    return np.concatenate(rows) if rows else np.zeros((0, len(model.labels)))


def metrics_from_proba(proba: np.ndarray, y_true: Sequence[str], model_labels: Sequence[str], *,
                       model: str = "", skipped: dict[str, int] | None = None) -> EvalResult:
    """Metrics from probabilities: the prediction is the argmax over the model's canonical classes.

    Clips whose true class the model lacks are not scored (counted in ``skipped``).
    """
    labels = scored_labels(model_labels)
    if not labels:
        raise ValueError(f"model {model!r} has none of the six canonical emotions (labels: {list(model_labels)})")
    cols = [list(model_labels).index(lab) for lab in labels]
    skipped = dict(skipped or {})
    keep = [i for i, t in enumerate(y_true) if t in labels]
    for t in y_true:
        if t not in labels:
            skipped[f"{t} (absent from model)"] = skipped.get(f"{t} (absent from model)", 0) + 1
    pred = [labels[int(np.argmax(proba[i, cols]))] for i in keep]
    absent = [e for e in BASE_EMOTIONS if e not in model_labels]
    return compute_metrics([y_true[i] for i in keep], pred, labels, absent=absent, model=model, skipped=skipped)


def evaluate(model: EmotionModel, data_dir: str | os.PathLike, manifest: str | os.PathLike, *,
             label_column: str | None = None, speaker_column: str | None = None,
             speakers: Sequence[str] | None = None, cache_dir: str | os.PathLike | None = None,
             batch_size: int = 8, progress: bool = False) -> EvalResult:
    """Score an emotion model on a labelled manifest (any ``EmotionModel``).

    Args:
        speakers: only these speakers' clips (e.g. held-out actors); default all.

    Returns:
        Metrics over the canonical classes the model has; rows with labels outside the six and rows
        whose class the model lacks are counted in ``skipped``.
    """
    data = read_manifest(data_dir, manifest, label_column=label_column, speaker_column=speaker_column)
    if speakers is not None:
        wanted = {_norm_speaker(s) for s in speakers}
        data = data.subset([i for i, s in enumerate(data.speakers) if s in wanted])
    if len(data) == 0:
        raise ValueError(f"manifest {manifest}: no clip with one of the six emotions to evaluate")
    waves = load_waves(data.paths, cache_dir=cache_dir, progress=progress)
    proba = predictions(model, waves, batch_size=batch_size, progress=progress)
    skipped = {f"{k} (not one of the six)": v for k, v in data.skipped.items()}
    return metrics_from_proba(proba, data.labels, model.labels, model=getattr(model, "name", ""), skipped=skipped)


def plot_confusion(result: EvalResult, path: str | os.PathLike) -> Path:
    """Save the confusion matrix (row-normalised colours, counts written) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(result.confusion, dtype=float)
    rows = conf.sum(1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    k = len(result.labels)
    fig, ax = plt.subplots(figsize=(1.1 * k + 2, 1.1 * k + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), result.labels, rotation=45, ha="right")
    ax.set_yticks(range(k), result.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result.model}: UAR {result.uar:.3f}, WA {result.wa:.3f}, n={result.n}")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(conf[i, j]), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------------------ training


@dataclass
class TrainSettings:
    """Training knobs (units in the names). Defaults are the shipped compact model's recipe.

    Attributes:
        epochs: maximum epochs per ensemble member.
        patience: stop a member after this many epochs without a better validation UAR (None: never).
        batch_size, lr, weight_decay: AdamW with a one-cycle (warm-up + cosine) schedule.
        label_smoothing: cross-entropy label smoothing.
        members: compact ensemble members' kinds ('tdnn', 'cnn2d', 'stats'; see CompactConfig), each
            trained on its own; their probabilities are averaged.
        val_group_size: speakers per validation group with --val-speakers auto.
        stats_views: 'stats' member: augmented views per training clip (besides the clip itself).
        stats_steps: 'stats' member: full-batch Adam steps of its MLP head.
        crop_s: (min, max) length of the random training crops in seconds (one length per batch).
        speech_crop_prob: probability that a crop's centre lies in the speech region (else anywhere in the
            clip); 1.0 keeps speech in every crop (a silent crop would teach noise as an emotion).
        speed: (min, max) speed-perturbation factor (tempo and pitch together).
        noise_prob / snr_db: probability of additive white/pink/brown noise and its SNR range (dB).
        gain_db: random gain range +-dB.
        freq_masks / freq_mask_bins / time_masks / time_mask_frac: SpecAugment.
        mixup: Beta(mixup, mixup) mixing of examples and targets (0: off).
        seed: seeds Python, NumPy and torch.
        threads: torch CPU threads.
        device: where the compact members' networks run during training ('cpu', 'cuda', 'cuda:1');
            augmentation and the 'stats' member's MLP fit stay on the CPU, and the saved model is always a
            CPU model. GPU and CPU runs of one seed differ by floating-point non-determinism, not by
            recipe. Compact only (``--arch hubert`` trains on the CPU).
        norm, n_mels, channels, tdnn_channels, embed_dim, n_mfcc, stats_pitch, stats_hidden, pool_std,
            dropout: compact architecture
            (see CompactConfig).
        hubert_lr, freeze_encoder, max_len_s: HuBERT fine-tuning.
    """

    epochs: int = 100
    patience: int | None = 12
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.05
    members: tuple[str, ...] = ("tdnn", "tdnn", "tdnn", "stats")
    val_group_size: int = 3
    stats_views: int = 4
    stats_steps: int = 600
    crop_s: tuple[float, float] = (1.0, 3.0)
    speech_crop_prob: float = 1.0
    speed: tuple[float, float] = (0.9, 1.1)
    noise_prob: float = 0.3
    snr_db: tuple[float, float] = (10.0, 40.0)
    gain_db: float = 10.0
    freq_masks: int = 1
    freq_mask_bins: int = 8
    time_masks: int = 1
    time_mask_frac: float = 0.1
    mixup: float = 0.0
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    norm: str = "bin"
    n_mels: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 64)
    tdnn_channels: int = 128
    embed_dim: int = 128
    n_mfcc: int = 20
    stats_pitch: bool = True
    stats_hidden: int = 64
    pool_std: bool = False
    dropout: float = 0.2
    hubert_lr: float = 5e-5
    freeze_encoder: bool = False
    max_len_s: float = 4.0

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_uar: float | None
    val_wa: float | None
    seconds: float


@dataclass
class MemberResult:
    """One trained network (an ensemble member, or the HuBERT model)."""

    member: int
    train_speakers: list[str]
    val_speakers: list[str]
    best_epoch: int
    best_val_uar: float | None
    epochs_run: int
    history: list[EpochLog]


@dataclass
class TrainResult:
    """What ``train`` produced (also saved as ``training`` inside the model's config.json)."""

    out_dir: str
    arch: str
    labels: list[str]
    train_labels: list[str]
    n_clips: int
    class_counts: dict[str, int]
    speakers: list[str]
    skipped: dict[str, int]
    members: list[MemberResult]
    val_uar: float | None
    """Mean of the members' best validation UARs (each on speakers that member never trained on)."""
    seconds: float
    settings: dict[str, Any]
    command: str | None = None
    model: Any = field(default=None, repr=False, compare=False)
    """The trained model itself (an EmotionModel for 'compact', the transformers model for 'hubert')."""

    def to_json_dict(self) -> dict[str, Any]:
        """Everything but the model, as JSON-ready values."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "model"}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return value


def speaker_groups(speakers: Sequence[str], n_groups: int, seed: int) -> list[list[str]]:
    """Split speakers into ``n_groups`` disjoint groups (seeded shuffle, round robin)."""
    spk = sorted(set(speakers), key=_speaker_key)
    rng = random.Random(seed)
    rng.shuffle(spk)
    groups = [sorted(spk[i::n_groups], key=_speaker_key) for i in range(n_groups)]
    return [g for g in groups if g]


def plan_validation(data: LabelledSet, val_speakers: Sequence[str] | str | None, n_members: int,
                    seed: int, val_group_size: int = 3) -> list[list[str]]:
    """Validation speakers for each member.

    ``None``/'auto': the speakers are split into groups of about ``val_group_size`` (at least 2 groups)
    and member i holds out group i (cycling), so with several members the ensemble as a whole learns
    from every speaker; 'none': no validation (fixed epochs); a list: every member validates on those
    speakers.

    Raises:
        ValueError: named speakers that are not in the data, or too few speakers to hold any out.
    """
    speakers = data.speaker_set()
    if isinstance(val_speakers, str):
        if val_speakers.lower() == "none":
            return [[] for _ in range(n_members)]
        if val_speakers.lower() != "auto":
            val_speakers = [s for s in val_speakers.split(",") if s.strip()]
        else:
            val_speakers = None
    if val_speakers is not None:
        wanted = [_norm_speaker(s) for s in val_speakers]
        missing = [s for s in wanted if s not in speakers]
        if missing:
            raise ValueError(f"validation speakers {missing} are not in the manifest (speakers: {speakers})")
        if len(set(wanted)) >= len(speakers):
            raise ValueError("validation speakers cover every speaker: nothing left to train on")
        return [sorted(set(wanted), key=_speaker_key) for _ in range(n_members)]
    if len(speakers) < 2:
        raise ValueError("speaker-independent validation needs at least 2 speakers "
                         "(add a speaker column, or pass --val-speakers none)")
    n_groups = max(2, round(len(speakers) / max(1, val_group_size)))
    groups = speaker_groups(speakers, min(n_groups, len(speakers)), seed)
    return [groups[i % len(groups)] for i in range(n_members)]


def train(data_dir: str | os.PathLike, manifest: str | os.PathLike, out_dir: str | os.PathLike, *,
          arch: str = "compact", base: str | None = None, settings: TrainSettings | None = None,
          val_speakers: Sequence[str] | str | None = None, label_column: str | None = None,
          speaker_column: str | None = None, label_map: dict[str, str] | None = None,
          extra_labels: Sequence[str] = (), cache_dir: str | os.PathLike | None = None,
          progress: bool = True, command: str | None = None, encoder: str = "base",
          head_recipe: Any = None, config: Any = None) -> TrainResult:
    """Train an emotion model with cross-entropy on labelled speech and save the best checkpoint.

    Args:
        arch: 'compact' (no pretrained weights; an ensemble of small log-mel CNNs) or 'hubert'
            (fine-tunes ``pipeline.emotion.HubertForSpeechClassification`` from ``base``).
        base: HuBERT base checkpoint (hub id or local path); required for 'hubert'.
        val_speakers: see :func:`plan_validation` ('auto' default, 'none', or a list).
        label_map: original label (lower case) -> canonical name, e.g. ``{'calm': 'neutral'}``.
        extra_labels: original labels kept as auxiliary training classes (compact only; dropped at
            inference).
        command: the command line, recorded with the model.
        data_dir, manifest: one each, or lists (several manifests; :func:`pipeline.train_data.read_manifests`).
        encoder, head_recipe, config: 'whisper' only (Whisper size or CTranslate2 folder; a
            ``pipeline.train_whisper_head.HeadRecipe``; where the packaged weights are assembled).

    Returns:
        A :class:`TrainResult`; the model folder holds the weights, ``config.json`` (config, label map,
        training metrics) and ``training.json``.
    """
    settings = settings or TrainSettings()
    if arch not in {"compact", "hubert", "whisper"}:
        raise ValueError(f"unknown --arch {arch!r} (compact, hubert or whisper)")
    _check_device(settings.device)  # before decoding anything
    if arch in ("hubert", "whisper") and extra_labels:
        raise ValueError("extra (auxiliary) labels are only supported by --arch compact")
    if arch == "hubert" and not base:
        raise ValueError("--arch hubert needs --base (a HuBERT checkpoint id or local path)")
    from pipeline.train_data import read_manifests

    data = read_manifests(data_dir, manifest, label_column=label_column, speaker_column=speaker_column,
                          label_map=label_map, extra_labels=extra_labels)
    if len(data) == 0:
        raise ValueError(f"manifest {manifest}: no row has one of the six emotions")
    waves = load_waves(data.paths, cache_dir=cache_dir, progress=progress)
    if arch == "whisper":
        from pipeline.train_whisper_head import train_whisper_arrays

        return train_whisper_arrays(waves, data, out_dir, settings=settings, encoder_name=encoder,
                                    recipe=head_recipe, config=config, cache_dir=cache_dir, progress=progress,
                                    command=command)
    return train_arrays(waves, data, out_dir, arch=arch, base=base, settings=settings,
                        val_speakers=val_speakers, extra_labels=extra_labels, progress=progress,
                        command=command)


def train_arrays(waves: Sequence[np.ndarray], data: LabelledSet, out_dir: str | os.PathLike | None, *,
                 arch: str = "compact", base: str | None = None, settings: TrainSettings | None = None,
                 val_speakers: Sequence[str] | str | None = None, extra_labels: Sequence[str] = (),
                 progress: bool = False, command: str | None = None) -> TrainResult:
    """:func:`train` on already decoded 16 kHz signals (what the cross-validation bench calls).

    ``out_dir`` None keeps the model in memory only (``TrainResult.out_dir`` is '').
    The trained model is ``TrainResult.model``.
    """
    import torch

    settings = settings or TrainSettings()
    _check_device(settings.device)
    torch.set_num_threads(max(1, settings.threads))
    _seed_everything(settings.seed)
    t0 = time.perf_counter()
    present = [e for e in BASE_EMOTIONS if e in set(data.labels)]
    extras = [e.lower() for e in extra_labels if e.lower() in set(data.labels)]
    n_members = len(settings.members) if arch == "compact" else 1
    plans = plan_validation(data, val_speakers, n_members, settings.seed, settings.val_group_size)
    if arch == "compact":
        model, members = _train_compact(waves, data, present, extras, plans, settings, progress)
    else:
        model, members = _train_hubert(waves, data, present, plans[0], settings, base, progress)
    vals = [m.best_val_uar for m in members if m.best_val_uar is not None]
    result = TrainResult(
        out_dir=str(out_dir) if out_dir is not None else "",
        arch=arch,
        labels=list(present),
        train_labels=list(present) + extras,
        n_clips=len(data),
        class_counts={lab: data.labels.count(lab) for lab in list(present) + extras},
        speakers=data.speaker_set(),
        skipped=dict(data.skipped),
        members=members,
        val_uar=float(np.mean(vals)) if vals else None,
        seconds=time.perf_counter() - t0,
        settings=settings.to_dict(),
        command=command,
        model=model,
    )
    if out_dir is not None:
        _save(model, arch, result, Path(out_dir))
    return result


def _check_device(device: str) -> None:
    """Refuse a training device torch cannot use here (e.g. 'cuda' with a CPU-only torch), naming it."""
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise ValueError(f"training device {device!r} is not available here: {exc}") from exc


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _save(model: Any, arch: str, result: TrainResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    training = result.to_json_dict()
    if arch == "compact":
        model.save(out, extra={"training": training})
    else:
        model.save_pretrained(out, safe_serialization=True)
        fe = getattr(model, "_emotivoice_feature_extractor", None)
        if fe is not None:
            fe.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    log.info("saved %s model to %s", arch, out)


# ------------------------------------------------------------------------------- compact training


class _Augmenter:
    """Random crops, speed perturbation, gain and noise on waveforms (NumPy, per example)."""

    def __init__(self, waves: Sequence[np.ndarray], bounds: Sequence[tuple[int, int]], s: TrainSettings,
                 rng: np.random.Generator):
        self.waves, self.bounds, self.s, self.rng = waves, bounds, s, rng
        self._bank: list[np.ndarray] | None = None

    def batch(self, idx: Sequence[int]) -> np.ndarray:
        s, rng = self.s, self.rng
        sr = SAMPLE_RATE
        speeds = rng.uniform(*s.speed, size=len(idx)) if s.speed[1] > s.speed[0] else np.full(len(idx), s.speed[0])
        # One crop length per batch (no padding); never longer than the shortest (speed-changed) clip.
        avail = min(len(self.waves[i]) / sp for i, sp in zip(idx, speeds))
        n = int(min(rng.uniform(*s.crop_s) * sr, avail))
        n = max(n, min(int(0.5 * sr), int(avail)))
        out = np.empty((len(idx), n), dtype=np.float32)
        for row, (i, sp) in enumerate(zip(idx, speeds)):
            out[row] = self._example(i, sp, n)
        return out

    def _example(self, i: int, speed: float, n: int) -> np.ndarray:
        s, rng = self.s, self.rng
        w = self.waves[i]
        a, b = self.bounds[i]
        src_n = int(math.ceil(n * speed)) + 1
        src_n = min(src_n, len(w))
        if rng.random() < s.speech_crop_prob and b - a > 0:
            centre = rng.uniform(a, b)
            start = int(np.clip(centre - src_n / 2, 0, len(w) - src_n))
        else:
            start = int(rng.integers(0, len(w) - src_n + 1))
        seg = w[start:start + src_n]
        # Speed perturbation by linear-interpolation resampling (tempo and pitch change together).
        pos = np.arange(n, dtype=np.float64) * speed
        pos = np.minimum(pos, len(seg) - 1)
        x = np.interp(pos, np.arange(len(seg)), seg).astype(np.float32)
        x *= np.float32(10 ** (rng.uniform(-s.gain_db, s.gain_db) / 20))
        if rng.random() < s.noise_prob:
            x = x + self._noise(x, rng.uniform(*s.snr_db))
        return x

    def _noise(self, x: np.ndarray, snr_db: float) -> np.ndarray:
        """White, pink (1/f) or brown (1/f^2) noise at ``snr_db`` below the crop's power."""
        rng = self.rng
        if self._bank is None:
            self._bank = _noise_bank(np.random.default_rng(int(rng.integers(2 ** 31))))
        bank = self._bank[int(rng.integers(0, len(self._bank)))]
        n = len(x)
        if n > len(bank):
            bank = np.tile(bank, n // len(bank) + 1)
        start = int(rng.integers(0, len(bank) - n + 1))
        noise = bank[start:start + n]
        p_sig = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
        p_noise = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-20
        return (noise * math.sqrt(p_sig / p_noise / 10 ** (snr_db / 10))).astype(np.float32)


def _noise_bank(rng: np.random.Generator, seconds: float = 20.0) -> list[np.ndarray]:
    """20 s each of white, pink and brown noise (coloured in the frequency domain)."""
    n = int(seconds * SAMPLE_RATE)
    out = []
    for colour in range(3):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / f ** (0.5 * colour), n)
        out.append((x / (x.std() + 1e-12)).astype(np.float32))
    return out


def _spec_augment(feats, s: TrainSettings, gen):
    """Zero (= the utterance mean after normalisation) random frequency bands and time spans, in place."""
    import torch

    b, m, t = feats.shape
    for _ in range(s.freq_masks):
        w = torch.randint(0, s.freq_mask_bins + 1, (b,), generator=gen)
        f0 = (torch.rand(b, generator=gen) * (m - w)).long()
        ar = torch.arange(m)
        mask = (ar[None] >= f0[:, None]) & (ar[None] < (f0 + w)[:, None])
        feats.masked_fill_(mask[:, :, None].to(feats.device), 0.0)
    tw_max = max(1, int(s.time_mask_frac * t))
    for _ in range(s.time_masks):
        w = torch.randint(0, tw_max + 1, (b,), generator=gen)
        t0 = (torch.rand(b, generator=gen) * (t - w).clamp(min=0)).long()
        ar = torch.arange(t)
        mask = (ar[None] >= t0[:, None]) & (ar[None] < (t0 + w)[:, None])
        feats.masked_fill_(mask[:, None, :].to(feats.device), 0.0)
    return feats


def _compact_config(present: list[str], extras: list[str], s: TrainSettings, members: Sequence[str]):
    from pipeline.compact import CompactConfig

    # The architecture knobs TrainSettings carries (same names as CompactConfig's fields) pass through.
    arch = {f.name: getattr(s, f.name) for f in fields(CompactConfig) if hasattr(s, f.name)}
    return CompactConfig(**{**arch, "channels": tuple(s.channels), "members": tuple(members),
                            "labels": tuple(present), "train_labels": tuple(present) + tuple(extras)})


def _val_uar_compact(net, waves: Sequence[np.ndarray], y: np.ndarray, n_out: int) -> tuple[float, float]:
    """UAR and WA of a one-member net on full clips (eval mode, one clip at a time)."""
    import torch

    from pipeline.compact import pad_signal

    net.eval()
    preds = []
    dev = next(net.parameters()).device
    with torch.inference_mode():
        for w in waves:
            x = torch.from_numpy(pad_signal(w, net.cfg))[None].to(dev)
            preds.append(int(net.proba(net.wave_frames(x).mean(2)).argmax(1)))
    net.train()
    preds = np.asarray(preds)
    mask = y < n_out
    recalls = [float(np.mean(preds[mask & (y == c)] == c)) for c in range(n_out) if np.any(mask & (y == c))]
    return float(np.mean(recalls)), float(np.mean(preds[mask] == y[mask]))


def _train_compact(waves, data: LabelledSet, present, extras, plans, s: TrainSettings, progress: bool):
    from pipeline.compact import CompactEmotionModel, build_net

    classes = list(present) + list(extras)
    y_all = np.array([classes.index(lab) for lab in data.labels])
    bounds = [speech_bounds(w) for w in waves]
    members: list[MemberResult] = []
    states = []
    for m, val_spk in enumerate(plans):
        seed = s.seed * 1000 + m
        _seed_everything(seed)
        val_set = set(val_spk)
        tr = np.array([i for i, sp in enumerate(data.speakers) if sp not in val_set])
        va = np.array([i for i, sp in enumerate(data.speakers) if sp in val_set])
        kind = s.members[m]
        net = build_net(_compact_config(present, extras, s, (kind,)))
        fit = _fit_stats_member if kind == "stats" else _fit_member
        state, result = fit(net, waves, y_all, bounds, tr, va, len(present), s, seed,
                            desc=f"member {m + 1}/{len(plans)} ({kind})", progress=progress)
        result.member = m
        result.train_speakers = sorted({data.speakers[i] for i in tr}, key=_speaker_key)
        result.val_speakers = sorted(val_set, key=_speaker_key)
        members.append(result)
        states.append(state)
    # Stack the members into one ensemble network.
    cfg = _compact_config(present, extras, s, s.members)
    ens = build_net(cfg)
    merged = {}
    for m, st in enumerate(states):
        for k, v in st.items():
            if k.startswith("trunks.0."):
                merged[f"trunks.{m}." + k[len("trunks.0."):]] = v
            elif k.startswith("heads.0."):
                merged[f"heads.{m}." + k[len("heads.0."):]] = v
            else:
                merged[k] = v
    ens.load_state_dict(merged)
    return CompactEmotionModel(ens, cfg, name="compact", trained=True), members


class _BestCheckpoint:
    """Keeps the state of the best validation UAR so far (the latest one when there is no validation) and
    says when ``patience`` checkpoints have passed without a better one."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.uar: float | None = None
        self.index = 0
        self.state: dict | None = None
        self._since = 0

    def update(self, index: int, uar: float | None, module) -> bool:
        """Record checkpoint ``index``; True when training should stop early."""
        if uar is None or self.uar is None or uar > self.uar:
            self.uar, self.index, self._since = uar, index, 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            return False
        self._since += 1
        return self.patience is not None and self._since >= self.patience


def _fit_member(net, waves, y_all, bounds, tr, va, n_out, s: TrainSettings, seed: int, *, desc: str,
                progress: bool):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    aug = _Augmenter(waves, bounds, s, rng)
    n_cls = len(net.cfg.train_labels)
    counts = np.bincount(y_all[tr], minlength=n_cls).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_cls, 0.0)
    dev = torch.device(s.device)
    net.to(dev)
    class_w = torch.tensor(weights, dtype=torch.float32, device=dev)
    steps_per_epoch = max(1, math.ceil(len(tr) / s.batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.epochs * steps_per_epoch,
                                                pct_start=0.15, anneal_strategy="cos")
    history: list[EpochLog] = []
    best = _BestCheckpoint(s.patience)
    va_waves = [waves[i] for i in va]
    va_y = y_all[va] if len(va) else np.zeros(0, dtype=int)
    net.train()
    for epoch in range(1, s.epochs + 1):
        t_ep = time.perf_counter()
        order = rng.permutation(tr)
        total, count = 0.0, 0
        batches = [order[i:i + s.batch_size] for i in range(0, len(order), s.batch_size)]
        bar = _progress(batches, progress, desc=f"{desc} epoch {epoch}/{s.epochs}", leave=False)
        for idx in bar:
            x = torch.from_numpy(aug.batch(idx)).to(dev)
            target = torch.from_numpy(y_all[idx]).to(dev)
            feats, db = net.features(x)
            feats = _spec_augment(feats, s, gen)
            if s.mixup > 0 and len(idx) > 1:
                lam = float(rng.beta(s.mixup, s.mixup))
                perm = torch.randperm(len(idx), generator=gen).to(dev)
                feats = lam * feats + (1 - lam) * feats[perm]
            logits = net.member_logits(net.frames(feats, db, x).mean(2))[0]
            loss = F.cross_entropy(logits, target, weight=class_w, label_smoothing=s.label_smoothing)
            if s.mixup > 0 and len(idx) > 1:
                loss = lam * loss + (1 - lam) * F.cross_entropy(logits, target[perm], weight=class_w,
                                                                label_smoothing=s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        train_loss = total / max(count, 1)
        if len(va):
            uar, wa = _val_uar_compact(net, va_waves, va_y, n_out)
        else:
            uar = wa = None
        history.append(EpochLog(epoch, train_loss, uar, wa, time.perf_counter() - t_ep))
        log.info("%s epoch %d: loss %.4f val UAR %s", desc, epoch, train_loss,
                 "-" if uar is None else f"{uar:.3f}")
        if progress:
            _progress_write(f"{desc} epoch {epoch}/{s.epochs}: loss {train_loss:.4f}"
                            + ("" if uar is None else f", val UAR {uar:.3f}, WA {wa:.3f}"))
        if best.update(epoch, uar, net):
            break
    net.to("cpu").eval()
    return best.state, MemberResult(0, [], [], best.index, best.uar,
                                    len(history), history)


def _fit_stats_member(net, waves, y_all, bounds, tr, va, n_out, s: TrainSettings, seed: int, *, desc: str,
                      progress: bool):
    """Fit a 'stats' member: centre/scale its frame features, then train its MLP head full-batch.

    Each training clip contributes its full-length pooled vector plus ``stats_views`` augmented crops
    (same augmentation as the neural members, minus SpecAugment).
    """
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    aug = _Augmenter(waves, bounds, s, rng)
    trunk, head = net.trunks[0], net.heads[0]
    n_cls = len(net.cfg.train_labels)
    t0 = time.perf_counter()

    dev = torch.device(s.device)  # the trunk's signal processing may run on a GPU; the MLP fit stays here
    net.to(dev)

    def pooled_z(batch_waves):
        with torch.inference_mode():
            return [trunk.z(net.features(torch.from_numpy(w)[None].to(dev))[1])[0].cpu() for w in batch_waves]

    # 1) centring/scaling of z from the training clips' frames.
    from pipeline.compact import pad_signal

    zs = pooled_z([pad_signal(waves[i], net.cfg) for i in tr])
    allz = torch.cat(zs, dim=1)
    with torch.no_grad():
        trunk.z_center.copy_(allz.mean(1))
        trunk.z_scale.copy_(allz.std(1) + 1e-3)

    def pooled(wave_list):
        out = []
        with torch.inference_mode():
            for w in wave_list:
                x = torch.from_numpy(pad_signal(w, net.cfg))[None].to(dev)
                out.append(net.wave_frames(x).mean(2)[0].cpu())
        return torch.stack(out)

    views, ys = [pooled([waves[i] for i in tr])], [y_all[tr]]
    for _ in range(s.stats_views):
        for start in range(0, len(tr), s.batch_size):
            idx = tr[start:start + s.batch_size]
            views.append(pooled(list(aug.batch(idx))))
            ys.append(y_all[idx])
    x_va = pooled([waves[i] for i in va]) if len(va) else None
    net.to("cpu")
    x_tr = torch.cat(views)
    y_tr = torch.from_numpy(np.concatenate(ys))
    with torch.no_grad():
        head.feat_mean.zero_()
        head.feat_std.fill_(1.0)
        feats = head.features(x_tr)
        head.feat_mean.copy_(feats.mean(0))
        head.feat_std.copy_(feats.std(0) + 1e-3)
    counts = np.bincount(y_tr.numpy(), minlength=n_cls).astype(np.float64)
    class_w = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_cls, 0.0),
                           dtype=torch.float32)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=s.weight_decay * 10)
    history: list[EpochLog] = []
    best = _BestCheckpoint(None)
    chunk = max(1, s.stats_steps // 20)  # 20 checkpoints ("epochs") over the steps
    head.train()
    for step in range(1, s.stats_steps + 1):
        loss = F.cross_entropy(head(x_tr), y_tr, weight=class_w, label_smoothing=s.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % chunk == 0 or step == s.stats_steps:
            uar = wa = None
            if x_va is not None:
                head.eval()
                with torch.no_grad():
                    pred = head(x_va)[:, :n_out].argmax(1).numpy()
                head.train()
                yv = y_all[va]
                mask = yv < n_out
                uar = float(np.mean([np.mean(pred[mask & (yv == c)] == c) for c in range(n_out)
                                     if np.any(mask & (yv == c))]))
                wa = float(np.mean(pred[mask] == yv[mask]))
            history.append(EpochLog(len(history) + 1, float(loss.detach()), uar, wa, time.perf_counter() - t0))
            best.update(len(history), uar, net)
    if progress:
        _progress_write(f"{desc}: {len(history)} checkpoints, loss {history[-1].train_loss:.4f}"
                        + ("" if best.uar is None else f", best val UAR {best.uar:.3f}"))
    net.eval()
    return best.state, MemberResult(0, [], [], best.index, best.uar,
                                    len(history), history)


def _progress_write(msg: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(msg)


# -------------------------------------------------------------------------------- HuBERT training


def _hubert_class():
    """``pipeline.emotion.HubertForSpeechClassification`` (the seed's head), or transformers' own."""
    try:
        from pipeline.emotion import HubertForSpeechClassification  # noqa: WPS433

        return HubertForSpeechClassification
    except ImportError:  # pipeline.emotion not available: the equivalent mean-pooled classifier
        from transformers import HubertForSequenceClassification

        return HubertForSequenceClassification


def _train_hubert(waves, data: LabelledSet, present, val_spk, s: TrainSettings, base: str | None, progress: bool):
    import torch
    import torch.nn.functional as F

    if not base:
        raise ValueError("--arch hubert needs --base (a HuBERT checkpoint id or local path)")
    cls = _hubert_class()
    id2label = {i: lab for i, lab in enumerate(present)}
    try:
        model = cls.from_pretrained(base, num_labels=len(present), id2label=id2label,
                                    label2id={v: k for k, v in id2label.items()},
                                    ignore_mismatched_sizes=True)
    except OSError as exc:
        from pipeline.types import ModelUnavailableError

        raise ModelUnavailableError(str(base), f"cannot load the HuBERT base ({exc})") from exc
    try:
        from transformers import AutoFeatureExtractor

        model._emotivoice_feature_extractor = AutoFeatureExtractor.from_pretrained(base)
    except (OSError, ValueError):
        from transformers import Wav2Vec2FeatureExtractor

        model._emotivoice_feature_extractor = Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
            return_attention_mask=True)
    encoder = getattr(model, "hubert", None)
    if encoder is not None:
        if hasattr(encoder, "feature_extractor"):
            for p in encoder.feature_extractor.parameters():
                p.requires_grad = False
        if s.freeze_encoder:
            for p in encoder.parameters():
                p.requires_grad = False
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.hubert_lr, weight_decay=s.weight_decay)
    y_all = np.array([present.index(lab) for lab in data.labels])
    val_set = set(val_spk)
    tr = np.array([i for i, sp in enumerate(data.speakers) if sp not in val_set])
    va = np.array([i for i, sp in enumerate(data.speakers) if sp in val_set])
    rng = np.random.default_rng(s.seed)
    max_n = int(s.max_len_s * SAMPLE_RATE)

    def prep(idx, train_mode: bool):
        xs = []
        for i in idx:
            w = waves[i]
            if len(w) > max_n:
                st = int(rng.integers(0, len(w) - max_n + 1)) if train_mode else (len(w) - max_n) // 2
                w = w[st:st + max_n]
            w = (w - w.mean()) / (w.std() + 1e-7)
            xs.append(w)
        n = max(len(w) for w in xs)
        x = np.zeros((len(xs), n), dtype=np.float32)
        mask = np.zeros((len(xs), n), dtype=np.int64)
        for r, w in enumerate(xs):
            x[r, :len(w)] = w
            mask[r, :len(w)] = 1
        return torch.from_numpy(x), torch.from_numpy(mask)

    def logits_of(x, mask):
        out = model(input_values=x, attention_mask=mask)
        return out.logits if hasattr(out, "logits") else out[0]

    history: list[EpochLog] = []
    best = _BestCheckpoint(s.patience)
    bs = max(1, min(s.batch_size, 8))
    for epoch in range(1, s.epochs + 1):
        t_ep = time.perf_counter()
        model.train()
        order = rng.permutation(tr)
        total, count = 0.0, 0
        for b in _progress(range(0, len(order), bs), progress, desc=f"hubert epoch {epoch}/{s.epochs}", leave=False):
            idx = order[b:b + bs]
            x, mask = prep(idx, True)
            loss = F.cross_entropy(logits_of(x, mask), torch.from_numpy(y_all[idx]),
                                   label_smoothing=s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        uar = wa = None
        if len(va):
            model.eval()
            preds = []
            with torch.inference_mode():
                for b in range(0, len(va), bs):
                    x, mask = prep(va[b:b + bs], False)
                    preds += logits_of(x, mask).argmax(-1).tolist()
            preds = np.asarray(preds)
            yv = y_all[va]
            uar = float(np.mean([np.mean(preds[yv == c] == c) for c in np.unique(yv)]))
            wa = float(np.mean(preds == yv))
        train_loss = total / max(count, 1)
        history.append(EpochLog(epoch, train_loss, uar, wa, time.perf_counter() - t_ep))
        if progress:
            _progress_write(f"hubert epoch {epoch}/{s.epochs}: loss {train_loss:.4f}"
                            + ("" if uar is None else f", val UAR {uar:.3f}"))
        if best.update(epoch, uar, model):
            break
    if best.state is not None:
        model.load_state_dict(best.state)
    model.eval()
    member = MemberResult(0, sorted({data.speakers[i] for i in tr}, key=_speaker_key),
                          sorted(val_set, key=_speaker_key), best.index, best.uar,
                          len(history), history)
    return model, [member]


# ------------------------------------------------------------------------------------------------ CLI


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _label_map(text: str | None) -> dict[str, str]:
    out = {}
    for item in _csv_list(text or ""):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--map-label {item!r}: expected ORIGINAL=CANONICAL")
        k, v = item.split("=", 1)
        if to_canonical(v) is None:
            raise argparse.ArgumentTypeError(f"--map-label {item!r}: {v!r} is not one of the six emotions")
        out[k.strip().lower()] = to_canonical(v)
    return out


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``emotivoice train``."""
    d = TrainSettings()
    parser.add_argument("--data", required=True, action="append",
                        help="folder the manifest's paths are relative to (once, or once per --manifest)")
    parser.add_argument("--manifest", required=True, action="append",
                        help="CSV with columns path,label[,speaker]; repeat to train on several corpora")
    parser.add_argument("--out", required=True, help="output model folder")
    parser.add_argument("--arch", choices=("compact", "hubert", "whisper"), default="compact",
                        help="whisper: a calibrated head on Whisper encoder frames (docs/whisper_emotion.md)")
    parser.add_argument("--encoder", default="base",
                        help="whisper: the Whisper encoder (packaged size base/tiny.en, or a CTranslate2 folder)")
    parser.add_argument("--speaker-norm", action="store_true",
                        help="whisper: train on per-speaker centred statistics (use needs several chunks per speaker)")
    parser.add_argument("--base", default=None, help="HuBERT base checkpoint (id or path) for --arch hubert")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"maximum epochs (default {d.epochs} for compact, 10 for hubert)")
    parser.add_argument("--val-speakers", default="auto",
                        help="comma-separated validation speakers, 'auto' (default: each ensemble member "
                             "holds out its own speaker group) or 'none' (fixed epochs, no early stopping)")
    parser.add_argument("--label-column", default=None, help="default 'label', else 'emotion'")
    parser.add_argument("--speaker-column", default=None, help="default 'speaker', else 'actor'")
    parser.add_argument("--map-label", default=None,
                        help="extra label aliases ORIGINAL=CANONICAL,... (e.g. calm=neutral)")
    parser.add_argument("--aux-labels", default=None,
                        help="compact: original labels trained as auxiliary classes and dropped at inference")
    parser.add_argument("--members", default=None,
                        help="compact ensemble members: a count (of 'tdnn' members) or kinds, e.g. "
                             f"tdnn,tdnn,stats (default {','.join(d.members)})")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (0: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for this small model on a shared CPU)")
    parser.add_argument("--device", default="cpu",
                        help="compact: where the TDNN members train (cpu, cuda); the saved model runs on any")
    parser.add_argument("--freeze-encoder", action="store_true", help="hubert: train the head only")
    parser.add_argument("--cache-dir", default=None, help="decoded-audio cache (default $EMOTIVOICE_CACHE or /tmp)")
    return parser


def _members_arg(text: str) -> tuple[str, ...]:
    from pipeline.compact import MEMBER_KINDS

    text = str(text).strip()
    if text.isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError("--members must be at least 1")
        return ("tdnn",) * int(text)
    kinds = tuple(_csv_list(text))
    bad = [k for k in kinds if k not in MEMBER_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"--members {text!r}: a count or kinds among {', '.join(MEMBER_KINDS)}")
    return kinds


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    s = TrainSettings()
    upd: dict[str, Any] = {"seed": args.seed, "threads": args.threads, "freeze_encoder": args.freeze_encoder,
                           "device": args.device}
    if args.epochs is not None:
        upd["epochs"] = args.epochs
    elif args.arch == "hubert":
        upd["epochs"] = 10
    if args.members is not None:
        upd["members"] = _members_arg(args.members)
    if args.batch_size is not None:
        upd["batch_size"] = args.batch_size
    if args.lr is not None:
        upd["lr" if args.arch == "compact" else "hubert_lr"] = args.lr
    if args.patience is not None:
        upd["patience"] = args.patience or None
    return replace(s, **upd)


def run_train(args: argparse.Namespace) -> int:
    """``emotivoice train``: train, save, print a summary. Returns the exit status."""
    import shlex
    import sys

    settings = settings_from_args(args)
    argv = sys.argv[1:]
    rest = argv[argv.index("train") + 1:] if "train" in argv else argv
    command = "emotivoice train " + " ".join(shlex.quote(a) for a in rest)
    result = train(args.data, args.manifest, args.out, arch=args.arch, base=args.base, settings=settings,
                   val_speakers=args.val_speakers, label_column=args.label_column,
                   speaker_column=args.speaker_column, label_map=_label_map(args.map_label),
                   extra_labels=_csv_list(args.aux_labels or ""), cache_dir=args.cache_dir, progress=True,
                   command=command, **_whisper_kwargs(args))
    print(f"trained {result.arch} model on {result.n_clips} clips of {len(result.speakers)} speakers "
          f"in {result.seconds:.0f} s -> {result.out_dir}")
    if result.skipped:
        print("skipped rows (labels outside the six): "
              + ", ".join(f"{k} ({v})" for k, v in sorted(result.skipped.items())))
    if result.arch == "whisper":
        inner = getattr(result.model, "metadata", {}).get("inner_cv", {})
        print(f"  head chosen on held-out training speakers: UAR {inner.get('uar')}, C {result.model.metadata.get('c')}, "
              f"temperature {result.model.cfg.temperature:.3f}, ECE {inner.get('ece_raw')} -> {inner.get('ece_calibrated')}")
    for m in result.members if result.arch != "whisper" else []:
        val = "no validation" if m.best_val_uar is None else (
            f"best val UAR {m.best_val_uar:.3f} at epoch {m.best_epoch} on speakers {','.join(m.val_speakers)}")
        print(f"  member {m.member + 1}: {m.epochs_run} epochs, {val}")
    return 0


def _whisper_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "arch", None) != "whisper":
        return {}
    from pipeline.config import load_config
    from pipeline.train_whisper_head import HeadRecipe

    return {"encoder": args.encoder, "config": load_config(),
            "head_recipe": HeadRecipe(speaker_norm=bool(args.speaker_norm), seed=args.seed)}


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``emotivoice evaluate``."""
    parser.add_argument("--model", default="compact", help="'compact', a model folder or a hub id")
    parser.add_argument("--data", required=True, help="folder the manifest's paths are relative to")
    parser.add_argument("--manifest", required=True, help="CSV with columns path,label[,speaker]")
    parser.add_argument("--label-column", default=None)
    parser.add_argument("--speaker-column", default=None)
    parser.add_argument("--speakers", default=None, help="only these speakers (comma-separated)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--plot", default=None, help="save the confusion matrix as this PNG")
    parser.add_argument("--cache-dir", default=None)
    return parser


def load_model_for_eval(spec: str, config: Any = None) -> EmotionModel:
    """'compact' / a compact model folder -> ``load_compact``; anything else -> ``load_emotion_model``."""
    from pipeline.compact import is_compact_dir, load_compact

    if spec == "compact":
        return load_compact()
    if is_compact_dir(spec):
        return load_compact(spec)
    from pipeline.config import load_config
    from pipeline.emotion import load_emotion_model

    return load_emotion_model(spec, config or load_config())


def run_evaluate(args: argparse.Namespace, config: Any = None) -> int:
    """``emotivoice evaluate``: score a model on a manifest; prints text or JSON. Returns the exit status."""
    model = load_model_for_eval(args.model, config)
    if not getattr(model, "trained", True):
        log.warning("model %s is untrained (random weights): its scores measure nothing", model.name)
    speakers = _csv_list(args.speakers) if args.speakers else None
    result = evaluate(model, args.data, args.manifest, label_column=args.label_column,
                      speaker_column=args.speaker_column, speakers=speakers, cache_dir=args.cache_dir,
                      progress=not args.json)
    if args.plot:
        plot_confusion(result, args.plot)
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        print(result.summary())
        if args.plot:
            print(f"confusion matrix saved to {args.plot}")
    return 0
