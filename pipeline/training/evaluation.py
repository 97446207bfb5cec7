"""Scoring an emotion model on a labelled manifest (``emotivoice evaluate``'s library side)."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from pipeline.training.manifests import norm_speaker, read_manifest
from pipeline.training.metrics import EvalResult, metrics_from_proba
from pipeline.training.waves import load_waves, progress_iter
from pipeline.types import EmotionModel


def predictions(model: EmotionModel, waves: Sequence[np.ndarray], *, batch_size: int = 8,
                progress: bool = False) -> np.ndarray:
    """(n, len(model.labels)) probabilities, computed in batches."""
    rows = []
    for i in progress_iter(range(0, len(waves), batch_size), progress, desc="scoring"):
        rows.append(np.asarray(model.predict_proba(list(waves[i:i + batch_size]))))
    return np.concatenate(rows) if rows else np.zeros((0, len(model.labels)))



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
        wanted = {norm_speaker(s) for s in speakers}
        data = data.subset([i for i, s in enumerate(data.speakers) if s in wanted])
    if len(data) == 0:
        raise ValueError(f"manifest {manifest}: no clip with one of the six emotions to evaluate")
    waves = load_waves(data.paths, cache_dir=cache_dir, progress=progress)
    proba = predictions(model, waves, batch_size=batch_size, progress=progress)
    skipped = {f"{k} (not one of the six)": v for k, v in data.skipped.items()}
    return metrics_from_proba(proba, data.labels, model.labels, model=getattr(model, "name", ""), skipped=skipped)



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
