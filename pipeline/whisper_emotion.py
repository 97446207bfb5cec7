"""An emotion head on Whisper encoder frames (model id ``whisper-head``).

Structure (what keeps the fast explanation tier exact)::

    16 kHz chunk -> Whisper log-mel (80 bands, 10 ms hop) of the chunk alone
      -> CTranslate2 Whisper encoder (packaged faster-whisper base, int8) on the chunk's own frames
         (no 30 s padding: CTranslate2 accepts any even number of mel frames up to 3000)
      -> one vector every 20 ms, h_t (512)                                    [encoder]
      -> frame vector [h_t, h_t^2]                                           [frame_features]
      -> mean over time -> mean and standard deviation of h                  [head_proba]
      -> standardise (training statistics) -> linear layer -> / temperature -> softmax

``head_proba(frame_features(x).mean(0, keepdims=True))`` *is* the prediction: masking a time segment
means dropping its frames from the mean, so Shapley values over segments are exact for the fast tier.
With ``pooling='mean'`` the frame vector is h_t alone and the head is affine (``head_affine``).

The encoder is the one transcription uses (``pipeline.whisper_weights`` locates and sha256-verifies
the packaged base weights). Cost, measured by ``python -m bench.whisper_head_cv --timing``: see
docs/whisper_emotion.md (a 3 s chunk's own frames cost about a tenth of one padded 30 s window).

Calibration: the logits are divided by a temperature fitted on speakers held out from training
(``pipeline.training.whisper_head``), so the probabilities feed the taxonomy's 0.3/0.4/0.7 thresholds as
calibrated scores. Per-speaker normalisation (``speaker_offset``): when diarization gives several chunks
of one speaker, subtracting that speaker's mean pooled statistics (and adding back the training mean)
removes voice identity; the head then sees the same kind of input as in training with that option.

The shipped model lives in ``pipeline/models/whisper_head/`` (trained on RAVDESS: CC BY-NC-SA 4.0).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.compact import json_default
from pipeline.config import Config
from pipeline.runtime import SAMPLE_RATE
from pipeline.types import BASE_EMOTIONS, EmotionModel, ModelUnavailableError

log = logging.getLogger(__name__)

#: Model id users give (``emotion_model = "whisper-head"``) and the ``arch`` written in config.json.
MODEL_ID = "whisper-head"
ARCH = "whisper-head"
#: Folder of the model shipped inside the package.
WHISPER_HEAD_DIR = Path(__file__).resolve().parent / "models" / "whisper_head"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: Mel frames per encoder window (30 s) and samples per mel frame.
MAX_MEL_FRAMES = 3000
HOP = 160
POOLINGS = ("mean", "meanstd")


@dataclass
class WhisperHeadConfig:
    """What the head expects of its encoder and how it pools (saved as ``config.json``).

    Attributes:
        encoder: packaged faster-whisper size ('base', 'tiny.en') or a CTranslate2 folder.
        compute_type: CTranslate2 compute type the features were extracted with ('int8').
        pooling: 'mean' (frame vector h_t; affine head) or 'meanstd' (frame vector [h_t, h_t^2]: the head
            sees the mean and standard deviation of h over the chunk).
        dim: encoder width (512 for base).
        labels: output classes, in order.
        temperature: logits are divided by it (fitted on held-out speakers; 1.0 = uncalibrated).
        min_duration_s: shorter signals are zero-padded (centred) to this length.
        speaker_norm: whether the head was trained on speaker-normalised statistics (then it should be
            given a ``speaker_offset``; without one it sees un-normalised input, as a lone chunk does).
    """

    encoder: str = "base"
    compute_type: str = "int8"
    pooling: str = "meanstd"
    dim: int = 512
    labels: tuple[str, ...] = BASE_EMOTIONS
    temperature: float = 1.0
    min_duration_s: float = 0.25
    speaker_norm: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"whisper-head config: pooling must be one of {POOLINGS}, not {self.pooling!r}")
        self.labels = tuple(self.labels)
        if not self.temperature > 0:
            raise ValueError(f"whisper-head config: temperature must be > 0, not {self.temperature}")

    @property
    def frame_dim(self) -> int:
        return self.dim * (2 if self.pooling == "meanstd" else 1)

    @property
    def stat_dim(self) -> int:
        """Size of the statistics the linear layer reads (mean, or mean and standard deviation)."""
        return self.frame_dim

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WhisperHeadConfig":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------------

@dataclass
class WhisperEncoder:
    """A CTranslate2 Whisper model used for its encoder only (thread-safe: one encode at a time).

    Attributes:
        model: ``ctranslate2.models.Whisper``.
        folder: the model folder; label: e.g. 'faster-whisper base (int8)'.
        n_mels: mel bands the model expects.
    """

    model: Any
    folder: Path
    label: str
    n_mels: int = 80
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @functools.cached_property
    def _mel(self):
        from faster_whisper.feature_extractor import FeatureExtractor

        return FeatureExtractor(feature_size=self.n_mels)

    def mel(self, signal: np.ndarray) -> np.ndarray:
        """(n_mels, F) Whisper log-mel of ``signal`` alone (normalised to its own maximum), F even."""
        x = np.ascontiguousarray(np.asarray(signal, dtype=np.float32).reshape(-1))
        feats = np.asarray(self._mel(x), dtype=np.float32)
        n = max(2, min(feats.shape[1], x.size // HOP))
        n -= n % 2
        if feats.shape[1] < n:
            feats = np.pad(feats, ((0, 0), (0, n - feats.shape[1])), constant_values=float(feats.min()))
        return np.ascontiguousarray(feats[:, :n])

    def frames(self, signal: np.ndarray) -> np.ndarray:
        """(T, dim) encoder output over the signal's own frames (20 ms each), 30 s windows at most per pass."""
        import ctranslate2

        mel = self.mel(signal)
        out = []
        for s in range(0, mel.shape[1], MAX_MEL_FRAMES):
            part = np.ascontiguousarray(mel[None, :, s:s + MAX_MEL_FRAMES])
            if part.shape[2] < 2:
                break
            with self._lock:
                enc = self.model.encode(ctranslate2.StorageView.from_array(part), to_cpu=True)
            out.append(np.asarray(enc, dtype=np.float32)[0])
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _threads(config: Config) -> int:
    t = int(getattr(config, "whisper_threads", 0) or 0)
    if t > 0:
        return t
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def encoder_folder(name: str, config: Config) -> Path:
    """The CTranslate2 folder of encoder ``name`` (a packaged size, verified; or a folder with model.bin)."""
    from pipeline.whisper_weights import SPECS, WeightsError, ensure_weights

    if name in SPECS:
        try:
            return ensure_weights(name, config)
        except WeightsError as exc:
            raise ModelUnavailableError(MODEL_ID, f"its Whisper encoder is unavailable: {exc}") from exc
    folder = Path(name).expanduser()
    if not (folder / "model.bin").is_file():
        raise ModelUnavailableError(MODEL_ID, f"encoder {name!r} is neither a packaged Whisper size nor a "
                                              "CTranslate2 folder with model.bin")
    return folder


def load_encoder(name: str = "base", config: Config | None = None, *, compute_type: str = "int8") -> WhisperEncoder:
    """Load (or reuse) Whisper encoder ``name`` on the CPU (cached per folder, compute type and threads)."""
    config = config or Config()
    folder = encoder_folder(name, config)
    return _load_encoder_cached(str(folder.resolve()), compute_type, _threads(config),
                                (folder / "model.bin").stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_encoder_cached(folder: str, compute_type: str, threads: int, stamp: int) -> WhisperEncoder:
    import ctranslate2

    try:
        model = ctranslate2.models.Whisper(folder, device="cpu", compute_type=compute_type, intra_threads=threads)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelUnavailableError(MODEL_ID, f"cannot load the Whisper encoder in {folder} "
                                              f"({type(exc).__name__}: {exc})") from exc
    n_mels = 80
    try:
        pre = json.loads((Path(folder) / "preprocessor_config.json").read_text())
        n_mels = int(pre.get("feature_size", 80))
    except (OSError, ValueError):
        pass
    name = Path(folder).name.removeprefix("faster-whisper-")
    log.info("loaded Whisper encoder %s (%s, %d threads) for the emotion head", folder, compute_type, threads)
    return WhisperEncoder(model=model, folder=Path(folder), label=f"faster-whisper {name} ({compute_type})",
                          n_mels=n_mels)


def pad_signal(signal: np.ndarray, min_duration_s: float) -> np.ndarray:
    """``signal`` as float32, zero-padded (centred) to at least ``min_duration_s``."""
    x = np.asarray(signal, dtype=np.float32).reshape(-1)
    n_min = int(round(min_duration_s * SAMPLE_RATE))
    if x.size < n_min:
        left = (n_min - x.size) // 2
        x = np.pad(x, (left, n_min - x.size - left))
    return x


def frame_vectors(hidden: np.ndarray, pooling: str) -> np.ndarray:
    """Encoder frames (T, D) -> the frame vectors whose mean the head reads: h, or [h, h^2]."""
    h = np.asarray(hidden, dtype=np.float32)
    return h if pooling == "mean" else np.concatenate([h, h * h], axis=1)


def pooled_stats(pooled: np.ndarray, pooling: str, dim: int) -> np.ndarray:
    """Mean frame vectors (k, frame_dim) -> statistics (k, stat_dim): mean, or mean and std of h (float64)."""
    p = np.asarray(pooled, dtype=np.float64).reshape(len(pooled), -1)
    if pooling == "mean":
        return p
    mean, second = p[:, :dim], p[:, dim:]
    return np.concatenate([mean, np.sqrt(np.maximum(second - mean * mean, 0.0) + 1e-8)], axis=1)


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------

class WhisperHeadModel(EmotionModel):
    """Whisper encoder frames -> mean pooling -> calibrated linear head, as an ``EmotionModel``.

    Attributes (besides EmotionModel's):
        cfg: the :class:`WhisperHeadConfig`.
        weight (C, S), bias (C,): the linear layer on standardised statistics.
        center (S,), scale (S,): the training statistics' mean and standard deviation.
        encoder: a :class:`WhisperEncoder`, or a callable (signal -> (T, dim)) in tests; None until
            first needed when built by :func:`load_whisper_head` (loaded lazily).
        metadata: everything else config.json holds (cross-validation, training recipe).
        speaker_offset: (stat_dim,) vector subtracted from every chunk's statistics (per-speaker
            normalisation, see :func:`speaker_offsets`; None = off). A constant of the head while a
            chunk is explained, so the fast tier's Shapley values stay exact.
    """

    has_attention = False
    sample_rate = SAMPLE_RATE
    frame_hop_s = 0.02

    def __init__(self, cfg: WhisperHeadConfig, weight: np.ndarray, bias: np.ndarray, center: np.ndarray,
                 scale: np.ndarray, *, encoder: Any = None, name: str = MODEL_ID, trained: bool = True,
                 metadata: dict[str, Any] | None = None, encoder_loader: Callable[[], Any] | None = None):
        self.cfg = cfg
        self.labels = tuple(cfg.labels)
        self.name = name
        self.trained = bool(trained)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = np.asarray(bias, dtype=np.float64)
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        shapes = {"weight": (len(self.labels), cfg.stat_dim), "bias": (len(self.labels),),
                  "center": (cfg.stat_dim,), "scale": (cfg.stat_dim,)}
        for key, shape in shapes.items():
            if getattr(self, key).shape != shape:
                raise ValueError(f"whisper-head: {key} has shape {getattr(self, key).shape}, expected {shape}")
        self.metadata = metadata or {}
        self.speaker_offset: np.ndarray | None = None
        self._encoder = encoder
        self._encoder_loader = encoder_loader
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"WhisperHeadModel(name={self.name!r}, encoder={self.cfg.encoder!r}, pooling={self.cfg.pooling!r}, "
                f"T={self.cfg.temperature:.3f}, trained={self.trained})")

    @property
    def encoder(self):
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    if self._encoder_loader is None:
                        raise ModelUnavailableError(self.name, "no Whisper encoder attached")
                    self._encoder = self._encoder_loader()
        return self._encoder

    def encoder_frames(self, signal: np.ndarray) -> np.ndarray:
        """(T, dim) encoder frames of ``signal`` (padded to ``min_duration_s``)."""
        enc = self.encoder
        fn = enc.frames if hasattr(enc, "frames") else enc
        return np.asarray(fn(pad_signal(signal, self.cfg.min_duration_s)), dtype=np.float32)

    def frame_features(self, signal: np.ndarray) -> np.ndarray:
        """(T, frame_dim) frame vectors, one every 20 ms: h_t, or [h_t, h_t^2] for 'meanstd' pooling."""
        return frame_vectors(self.encoder_frames(signal), self.cfg.pooling)

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        """(k, frame_dim) pooled vectors -> (k, C) calibrated logits (divided by the temperature)."""
        p = np.asarray(pooled, dtype=np.float64).reshape(-1, self.cfg.frame_dim)
        stats = pooled_stats(p, self.cfg.pooling, self.cfg.dim)
        if self.speaker_offset is not None:
            stats = stats - self.speaker_offset[None, :]
        z = (stats - self.center) / self.scale
        return (z @ self.weight.T + self.bias) / self.cfg.temperature

    def head_proba(self, pooled: np.ndarray) -> np.ndarray:
        """(k, frame_dim) pooled frame vectors -> (k, C) probabilities (rows sum to 1)."""
        return softmax(self.logits(pooled))

    def head_affine(self):
        """(W, b, softmax) with ``head_proba(p) == softmax(p @ W.T + b)`` for 'mean' pooling; None otherwise."""
        if self.cfg.pooling != "mean":
            return None
        w = self.weight / self.scale[None, :] / self.cfg.temperature
        center = self.center if self.speaker_offset is None else self.center + self.speaker_offset
        b = (self.bias - self.weight @ (center / self.scale)) / self.cfg.temperature
        return w, b, softmax

    def predict_proba(self, signals: list[np.ndarray]) -> np.ndarray:
        if len(signals) == 0:
            return np.zeros((0, len(self.labels)))
        pooled = np.stack([self.frame_features(s).mean(axis=0) for s in signals])
        return self.head_proba(pooled)

    def stats(self, signals: list[np.ndarray]) -> np.ndarray:
        """(n, stat_dim) pooled statistics of each signal (what :func:`speaker_offsets` averages)."""
        pooled = np.stack([self.frame_features(s).mean(axis=0) for s in signals])
        return pooled_stats(pooled, self.cfg.pooling, self.cfg.dim)

    def for_speaker(self, offset: np.ndarray | None) -> "WhisperHeadModel":
        """A copy sharing this model's encoder and weights with ``speaker_offset = offset`` (the cached model
        is shared between threads, so set an offset on a copy, never on it)."""
        import copy

        twin = copy.copy(self)
        twin.speaker_offset = None if offset is None else np.asarray(offset, dtype=np.float64)
        return twin

    def save(self, out_dir: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        return save_whisper_head(self, out_dir, metadata={**self.metadata, **(extra or {})})


def speaker_offsets(stats: np.ndarray, speakers: list[str], reference: np.ndarray) -> dict[str, np.ndarray]:
    """Per-speaker offsets: each speaker's mean statistics (over that speaker's chunks) minus ``reference``
    (the training set's mean statistics), so ``stats - offset`` is centred like the training data for every
    speaker. Set one as ``model.speaker_offset`` while scoring that speaker's chunks."""
    stats = np.asarray(stats, dtype=np.float64)
    keys = list(speakers)
    out = {}
    for s in dict.fromkeys(keys):
        sel = np.array([x == s for x in keys])
        out[s] = stats[sel].mean(axis=0) - np.asarray(reference, dtype=np.float64)
    return out


# --------------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------------

def save_whisper_head(model: WhisperHeadModel, out_dir: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` (weight, bias, center, scale as float32) and ``config.json``."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(getattr(model, k), dtype=np.float32)
               for k in ("weight", "bias", "center", "scale")}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "np", "arch": ARCH})
    os.chmod(out / WEIGHTS_FILE, 0o644)  # written owner-only; the dashboard may run as another user
    doc = {"arch": ARCH, "trained": model.trained, "config": model.cfg.to_dict(), "labels": list(model.labels),
           "frame_hop_s": model.frame_hop_s, **(metadata or {})}
    (out / CONFIG_FILE).write_text(json.dumps(doc, indent=2, default=json_default) + "\n")
    return out / WEIGHTS_FILE


def is_whisper_head_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a whisper-head model (config.json with arch 'whisper-head')."""
    p = Path(str(path)).expanduser() / CONFIG_FILE
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("arch") == ARCH
    except (OSError, ValueError):
        return False


def load_whisper_head(path: str | Path | None = None, config: Config | None = None, *,
                      encoder: Any = None) -> WhisperHeadModel:
    """Load a whisper-head folder (default: the shipped ``pipeline/models/whisper_head``).

    The encoder (``cfg.encoder``, packaged weights verified by ``pipeline.whisper_weights``) is loaded on
    first use, unless ``encoder`` is given.

    Raises:
        ModelUnavailableError: the folder, its weights or config is missing or unreadable (named).
    """
    from safetensors.numpy import load_file

    config = config or Config()
    root = Path(path).expanduser().resolve() if path is not None else WHISPER_HEAD_DIR
    name = MODEL_ID if root == WHISPER_HEAD_DIR else str(root)
    cfg_path, w_path = root / CONFIG_FILE, root / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelUnavailableError(name, f"{root} lacks {CONFIG_FILE} or {WEIGHTS_FILE} (train one with "
                                          "`emotivoice train --arch whisper`)")
    try:
        doc = json.loads(cfg_path.read_text())
        if doc.get("arch") != ARCH:
            raise ValueError(f"config.json arch is {doc.get('arch')!r}, not {ARCH!r}")
        cfg = WhisperHeadConfig.from_dict(doc["config"])
        t = load_file(str(w_path))
        meta = {k: v for k, v in doc.items() if k not in {"config", "labels", "frame_hop_s", "arch", "trained"}}
        model = WhisperHeadModel(cfg, t["weight"], t["bias"], t["center"], t["scale"], encoder=encoder, name=name,
                                 trained=bool(doc.get("trained", True)), metadata=meta,
                                 encoder_loader=lambda: load_encoder(cfg.encoder, config,
                                                                     compute_type=cfg.compute_type))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailableError(name, f"cannot read the whisper-head model in {root}: {exc}") from exc
    log.info("loaded whisper-head emotion model from %s (encoder %s, pooling %s, temperature %.3f)", root,
             cfg.encoder, cfg.pooling, cfg.temperature)
    return model


def get_whisper_head(spec: str, config: Config | None = None) -> WhisperHeadModel:
    """The whisper-head model ``spec`` names ('whisper-head': the shipped one, or a model folder), cached per
    folder and encoder location (what ``pipeline.emotion.load_emotion_model`` calls)."""
    config = config or Config()
    folder = None if spec.strip().lower() == MODEL_ID else str(Path(spec).expanduser().resolve())
    return _get_cached(folder, config.whisper_dir, config.data_dir, int(config.whisper_threads or 0))


@functools.lru_cache(maxsize=4)
def _get_cached(folder: str | None, whisper_dir: str, data_dir: str, threads: int) -> WhisperHeadModel:
    model = load_whisper_head(folder, Config(whisper_dir=whisper_dir, data_dir=data_dir, whisper_threads=threads))
    _ = model.encoder  # load (and verify) the encoder now: a missing one is reported at load, by name
    return model


def clear_cache() -> None:
    """Forget loaded whisper-head models and encoders (tests; freeing memory)."""
    _get_cached.cache_clear()
    _load_encoder_cached.cache_clear()


def card_summary(path: str | Path | None = None) -> str | None:
    """One plain sentence on what the shipped whisper-head is and how well it does on unseen speakers
    (from its ``config.json``'s ``cross_validation``), for pages, reports and the CLI; None when not recorded."""
    try:
        doc = json.loads((Path(path or WHISPER_HEAD_DIR) / "config.json").read_text())
        cv = doc["cross_validation"]
        uar = float(cv["uar_mean"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    n = len(doc.get("labels") or [])
    if not n:
        return None
    return (f"The whisper-head (shipped, no download) tells {n} emotions apart from Whisper base's encoder frames; "
            f"trained on acted English studio speech (RAVDESS), it gets {uar:.0%} balanced accuracy on actors it "
            f"never heard (chance {1 / n:.0%}). Not measured on spontaneous, telephone or non-English speech: expect "
            "less there; voice is not felt emotion. See pipeline/models/whisper_head/MODEL_CARD.md.")
