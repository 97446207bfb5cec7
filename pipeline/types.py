"""Typed results and errors shared by every stage (and by warehouse/, flows/, dashboard/)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from pipeline.runtime import SAMPLE_RATE

#: The six canonical base emotions, in the order used everywhere (tables, charts, arrays).
BASE_EMOTIONS: tuple[str, ...] = ("anger", "fear", "happiness", "sadness", "surprise", "neutral")


#: What ``AudioError.kind`` may be: the class of the failure, stored as ``files.error_type``.
AUDIO_ERROR_KINDS = ("decode", "unsupported", "truncated", "crashed", "timeout", "unreadable")


class AudioError(Exception):
    """A file that cannot be analysed: carries the file name, a plain reason and its kind.

    ``kind`` is one of :data:`AUDIO_ERROR_KINDS`: 'unreadable' (missing, empty, no permission),
    'unsupported' (not audio, no audio stream, a sample format we cannot read), 'decode' (corrupt
    data), 'truncated' (less audio than the header declares), 'crashed' (the decoder died: a signal
    such as SIGSEGV), 'timeout' (decoding took too long).
    """

    def __init__(self, path: str, reason: str, kind: str = "decode"):
        self.path = str(path)
        self.reason = reason
        self.kind = kind if kind in AUDIO_ERROR_KINDS else "decode"
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across processes (the default would call __init__(message))
        return (type(self), (self.path, self.reason, self.kind))


class ModelUnavailableError(Exception):
    """A configured model that is not available locally and cannot be downloaded."""

    def __init__(self, model: str, how: str):
        self.model = model
        self.how = how
        super().__init__(f"model {model!r} is not available: {how}")


@dataclass(frozen=True)
class Chunk:
    """A speech region of a file, in seconds from the file start."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Word:
    word: str
    start_s: float
    end_s: float
    probability: float | None = None


@dataclass
class GranularEmotion:
    name: str
    confidence: float
    kind: str  # "primary" | "secondary"


@dataclass
class ComplexEmotion:
    name: str
    confidence: float


@dataclass
class SegmentWeight:
    """One attribution over a time segment of a chunk (seconds relative to the chunk start)."""

    segment: int
    start_s: float
    end_s: float
    value: float


@dataclass
class Explanation:
    """Explanations of one chunk's ``target_label`` probability by the real emotion model.

    Every number says which method produced it (``*_method``). ``shap_segments`` are Shapley values
    over time segments: they sum to ``shap_full_value - shap_base_value`` (f(all) - f(none)).
    ``shap_features`` are Shapley values over acoustic features (of a surrogate, see
    ``shap_features_method`` and ``surrogate_r2``). ``attention``: (layers, n, n) mean-over-heads
    maps downsampled to n steps, ``attention_rollout``: (n, n); None with ``attention_note`` saying why.
    ``faithfulness``: deletion AOPC of top-k segments vs random segments, when measured.
    """

    target_label: str
    tier: str
    shap_method: str
    shap_segments: list[SegmentWeight]
    shap_base_value: float
    shap_full_value: float
    lime_method: str
    lime_segments: list[SegmentWeight]
    lime_score: float | None
    shap_features: dict[str, float] = field(default_factory=dict)
    shap_features_method: str | None = None
    surrogate_r2: float | None = None
    attention: np.ndarray | None = None
    attention_rollout: np.ndarray | None = None
    attention_note: str | None = None
    faithfulness: dict[str, float] | None = None


@dataclass
class ChunkResult:
    idx: int
    start_s: float
    end_s: float
    base: dict[str, float | None]
    """The six canonical emotions; None for a class the model does not have (absent, not zero)."""
    dominant: str | None
    granular: list[GranularEmotion] = field(default_factory=list)
    complex: list[ComplexEmotion] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)
    """Probabilities of model labels outside the six (kept, never dropped)."""
    transcript: str | None = None
    language: str | None = None
    language_probability: float | None = None
    words: list[Word] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)
    explanation: Explanation | None = None
    speaker: str | None = None
    """Who spoke within the file: 'S1', 'S2', ... by first appearance (``pipeline.speakers``); None when
    not labelled (speakers off, live, chunk too short, encoder unavailable)."""


@dataclass
class ModelInfo:
    emotion: str
    """Resolved emotion model id (e.g. 'compact', 'superb/hubert-base-superb-er', a path)."""
    emotion_trained: bool
    """False for a randomly initialised model: its outputs are not emotions."""
    whisper: str | None
    emotion_labels: tuple[str, ...] = BASE_EMOTIONS
    absent_labels: tuple[str, ...] = ()


@dataclass
class FileResult:
    file: str
    duration_s: float
    sample_rate: int
    """The file's own sample rate in Hz (analysis always runs at 16 kHz)."""
    channels: int
    models: ModelInfo
    chunks: list[ChunkResult]
    settings: dict[str, Any] = field(default_factory=dict)
    """The pipeline settings that shaped these results (for idempotent re-ingestion)."""
    notes: list[str] = field(default_factory=list)
    """Plain messages for the user, e.g. 'silence only: no speech chunks'."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent per stage (decode_s, chunk_s, emotion_s, transcribe_s, features_s, explain_s)."""

    def to_json_dict(self) -> dict[str, Any]:
        """The documented JSON shape of ``emotivoice analyze --json`` (arrays become lists)."""

        def conv(obj: Any) -> Any:
            if isinstance(obj, np.ndarray):
                return obj.tolist()
            if isinstance(obj, (np.floating, np.integer)):
                obj = obj.item()
            if isinstance(obj, float) and not np.isfinite(obj):
                return None  # JSON has no NaN: a feature that could not be measured is null
            if isinstance(obj, dict):
                return {k: conv(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [conv(v) for v in obj]
            return obj

        return conv(asdict(self))


class EmotionModel:
    """What every emotion model offers the pipeline (HuBERT head, audio-classification checkpoint, compact).

    Subclasses implement ``frame_features`` and ``head_proba``; the pooled-mean structure is what makes
    the fast explanation tier exact: masking a time segment = dropping its frames from the mean.

    Attributes:
        name: resolved id shown to users and stored with every result.
        labels: output order of ``predict_proba`` columns; canonical names (BASE_EMOTIONS) where the
            model's label maps onto one, otherwise the model's own label (kept, reported as extra).
        trained: False for randomly initialised weights (outputs are not emotions).
        has_attention: whether ``attentions`` returns maps.
        frame_hop_s: seconds between consecutive frames of ``frame_features``.
    """

    name: str = "?"
    labels: tuple[str, ...] = BASE_EMOTIONS
    trained: bool = True
    has_attention: bool = False
    frame_hop_s: float = 0.02
    sample_rate: int = SAMPLE_RATE

    @property
    def absent_labels(self) -> tuple[str, ...]:
        return tuple(e for e in BASE_EMOTIONS if e not in self.labels)

    def predict_proba(self, signals: list[np.ndarray]) -> np.ndarray:
        """Class probabilities, shape (len(signals), len(labels)); signals are 16 kHz float32 mono."""
        return np.stack([self.head_proba(self.frame_features(s).mean(0, keepdims=True))[0] for s in signals])

    def frame_features(self, signal: np.ndarray) -> np.ndarray:
        """Per-frame vectors (T, D) whose mean over valid frames feeds ``head_proba``."""
        raise NotImplementedError

    def head_proba(self, pooled: np.ndarray) -> np.ndarray:
        """(k, D) pooled vectors -> (k, len(labels)) probabilities (one matrix product, cheap)."""
        raise NotImplementedError

    def attentions(self, signal: np.ndarray) -> np.ndarray | None:
        """(layers, T, T) mean-over-heads attention, or None when the model has none."""
        return None

    def frames_and_attentions(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``frame_features`` and ``attentions`` of one signal; transformer models override this to take
        both from one forward pass."""
        frames = self.frame_features(signal)
        return frames, (self.attentions(signal) if self.has_attention and len(frames) else None)

    def frames_with_attention(self, signal: np.ndarray, sink: Callable[[Any], None]) -> np.ndarray:
        """``frame_features``, each layer's (T, T) mean-over-heads attention (an array: numpy here, a torch
        tensor on the model's device from transformer models) handed to ``sink`` in layer order (nothing for a model
        without attention); transformer models stream the layers out of their one forward pass instead
        of keeping them all."""
        frames, maps = self.frames_and_attentions(signal)
        for layer in () if maps is None else maps:
            sink(layer)
        return frames

    def head_affine(self) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]] | None:
        """The head's first layer when it is affine, for exact shortcuts over many pooled vectors:
        (W (H, D), b (H,), rest) with ``head_proba(p) == rest(p @ W.T + b)``; None when not available.

        Since W is linear, ``mean(frames) @ W.T == mean(frames @ W.T)``: the fast explanation tier projects
        each segment's frame sum once and mixes the (n, H) projections instead of (n, D) frames."""
        return None
