"""Training and speaker-independent evaluation of emotion models (the library behind ``emotivoice train``
and ``emotivoice evaluate``; their options live in ``flows.train_cli``).

Modules (one concern each):
    manifests     ``path,label[,speaker]`` CSVs -> :class:`LabelledSet` (one or several corpora)
    waves         decoding + caching at 16 kHz, the speech region of a clip, progress bars
    metrics       UAR, WA, macro-F1, per-class recall, confusion (:class:`EvalResult`), its plot
    evaluation    scoring a model on a manifest (:func:`evaluate`, :func:`load_model_for_eval`)
    settings      :class:`TrainSettings` (holding a ``CompactConfig``) and the run's record (:class:`TrainResult`)
    validation    which speakers each member holds out; the best checkpoint by validation UAR
    trainer       :func:`train` / :func:`train_arrays`: dispatch by architecture, save
    compact       the compact ensemble's trainer (augmentation, per-member fits)
    hubert        HuBERT fine-tuning
    whisper_head  the calibrated head on Whisper encoder frames

Validation is always speaker-independent: a speaker's clips are never split between sets.
"""

from pipeline.training.evaluation import evaluate, load_model_for_eval, predictions
from pipeline.training.manifests import LabelledSet, pair_manifests, read_manifest, read_manifests
from pipeline.training.metrics import EvalResult, compute_metrics, metrics_from_proba, plot_confusion, scored_labels
from pipeline.training.settings import EpochLog, MemberResult, TrainResult, TrainSettings
from pipeline.training.trainer import train, train_arrays
from pipeline.training.validation import plan_validation, speaker_groups
from pipeline.training.waves import default_cache_dir, load_waves, speech_bounds

__all__ = [
    "EpochLog", "EvalResult", "LabelledSet", "MemberResult", "TrainResult", "TrainSettings",
    "compute_metrics", "default_cache_dir", "evaluate", "load_model_for_eval", "load_waves",
    "metrics_from_proba", "pair_manifests", "plan_validation", "plot_confusion", "predictions",
    "read_manifest", "read_manifests", "scored_labels", "speaker_groups", "speech_bounds", "train",
    "train_arrays",
]
