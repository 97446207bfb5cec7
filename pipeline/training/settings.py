"""Training knobs (:class:`TrainSettings`, holding the compact architecture as a ``CompactConfig``) and
what a training run reports (:class:`TrainResult`, :class:`MemberResult`, :class:`EpochLog`)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from pipeline.compact import CompactConfig


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
        compact: the compact architecture and front end (a ``CompactConfig``; its ``members``,
            ``labels`` and ``train_labels`` are set by the trainer from ``members`` and the data).
            Dropout is 0.2 here, the value the shipped model was trained with (``CompactConfig``'s own
            default is 0.3); dropout acts in training only.
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
    compact: CompactConfig = field(default_factory=lambda: CompactConfig(dropout=0.2))
    hubert_lr: float = 5e-5
    freeze_encoder: bool = False
    max_len_s: float = 4.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (tuples as lists; ``compact`` without the fields the trainer sets)."""
        out = {k: _lists(v) for k, v in asdict(self).items()}
        for k in _TRAINER_SET:
            out["compact"].pop(k, None)
        return out


#: ``CompactConfig`` fields the trainer fills in (from ``TrainSettings.members`` and the data's classes).
_TRAINER_SET = ("members", "labels", "train_labels")


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


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


def check_device(device: str) -> None:
    """Refuse a training device torch cannot use here (e.g. 'cuda' with a CPU-only torch), naming it."""
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise ValueError(f"training device {device!r} is not available here: {exc}") from exc


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)

