"""``train`` / ``train_arrays``: read manifests, decode, dispatch to the compact, HuBERT or Whisper-head
trainer, save the model with its training record."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.training.compact import train_compact
from pipeline.training.hubert import train_hubert
from pipeline.training.manifests import LabelledSet, read_manifests
from pipeline.training.settings import TrainResult, TrainSettings, check_device, seed_everything
from pipeline.training.validation import plan_validation
from pipeline.training.waves import load_waves
from pipeline.types import BASE_EMOTIONS

log = logging.getLogger(__name__)


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
        data_dir, manifest: one each, or lists (several manifests; :func:`pipeline.training.manifests.read_manifests`).
        encoder, head_recipe, config: 'whisper' only (Whisper size or CTranslate2 folder; a
            ``pipeline.training.whisper_head.HeadRecipe``; where the packaged weights are assembled).

    Returns:
        A :class:`TrainResult`; the model folder holds the weights, ``config.json`` (config, label map,
        training metrics) and ``training.json``.
    """
    settings = settings or TrainSettings()
    if arch not in {"compact", "hubert", "whisper"}:
        raise ValueError(f"unknown --arch {arch!r} (compact, hubert or whisper)")
    check_device(settings.device)  # before decoding anything
    if arch in ("hubert", "whisper") and extra_labels:
        raise ValueError("extra (auxiliary) labels are only supported by --arch compact")
    if arch == "hubert" and not base:
        raise ValueError("--arch hubert needs --base (a HuBERT checkpoint id or local path)")
    data = read_manifests(data_dir, manifest, label_column=label_column, speaker_column=speaker_column,
                          label_map=label_map, extra_labels=extra_labels)
    if len(data) == 0:
        raise ValueError(f"manifest {manifest}: no row has one of the six emotions")
    waves = load_waves(data.paths, cache_dir=cache_dir, progress=progress)
    if arch == "whisper":
        from pipeline.training.whisper_head import train_whisper_arrays

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
    check_device(settings.device)
    torch.set_num_threads(max(1, settings.threads))
    seed_everything(settings.seed)
    t0 = time.perf_counter()
    present = [e for e in BASE_EMOTIONS if e in set(data.labels)]
    extras = [e.lower() for e in extra_labels if e.lower() in set(data.labels)]
    n_members = len(settings.members) if arch == "compact" else 1
    plans = plan_validation(data, val_speakers, n_members, settings.seed, settings.val_group_size)
    if arch == "compact":
        model, members = train_compact(waves, data, present, extras, plans, settings, progress)
    else:
        model, members = train_hubert(waves, data, present, plans[0], settings, base, progress)
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
