"""The faster-whisper (CTranslate2) transcription backend, used by ``pipeline.transcribe``.

Same decoding policy as the openai-whisper path: temperature 0 only, ``condition_on_previous_text=False``,
word timestamps, Whisper's thresholds deciding what is silence, the file's span decoded in Whisper's
30 s windows (``clip_timestamps``). A window whose text is a repetition loop (compression ratio above
``max_compression_ratio``) is dropped. No network: the model is a local, sha256-verified folder
(:mod:`pipeline.whisper_weights`) or a CTranslate2 folder the user names.

Measured by ``python -m bench.whisper_fw`` (docs/benchmarks.md): with real weights, int8 on CPU.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config
from pipeline.runtime import resolve_device
from pipeline.types import ModelUnavailableError, Word

logger = logging.getLogger(__name__)
FW_PREFIX = "faster-whisper "
#: Separates a label from the reason it was chosen ('base — fallback: ...').
WHY = " — "
_FW_LABEL = re.compile(r"^faster-whisper (?P<target>.+) \((?P<compute>[\w]+)(?:, (?P<device>cuda|cpu))?\)$")


@dataclass
class FasterWhisper:
    """A loaded faster-whisper model with what EmotiVoice records about it.

    Attributes:
        model: the ``faster_whisper.WhisperModel``.
        emotivoice_name: the label results carry, e.g. 'faster-whisper base (int8)'.
        folder: the CTranslate2 model folder it was loaded from.
        device, compute_type: where and how it runs.
    """

    model: Any
    emotivoice_name: str
    folder: Path
    device: str
    compute_type: str
    emotivoice_trained: bool = True
    backend: str = "faster-whisper"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)


class LastCallMemo:
    """A function of one array (and keywords) that remembers its last call, keyed on the array's bytes.

    faster-whisper's language detection and its first decoding window compute the same log-mel frames of
    the whole signal (their normalisation depends on its loudest frame; ~2 ms per second of audio) and
    encode the same first 30 s of them (one encoder pass, ~0.6 s on 2 CPU threads). Wrapping
    ``WhisperModel.feature_extractor`` and ``WhisperModel.encode`` in this makes the second call a lookup.
    A different array is computed as usual. Other attributes are the wrapped object's.
    """

    def __init__(self, fn: Any):
        self._fn = fn
        self._key: tuple | None = None
        self._out: Any = None
        self.hits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)

    def forget(self) -> None:
        """Drop the remembered result (an hour of audio is ~115 MB of mel frames)."""
        self._key = self._out = None

    def __call__(self, array: np.ndarray, **kwargs: Any) -> Any:
        arr = np.ascontiguousarray(array)
        key = (arr.shape, str(arr.dtype), tuple(sorted(kwargs.items())),
               hashlib.blake2b(arr.tobytes(), digest_size=16).digest())
        if key == self._key:
            self.hits += 1
            return self._out
        out = self._fn(array, **kwargs)
        self._key, self._out = key, out
        return out


def fw_label(target: str, config: Config) -> str:
    """The label of faster-whisper ``target`` (a packaged size or a CTranslate2 folder) on this config's device."""
    device = ctranslate2_device(resolve_device(config.device, strict=False))
    compute = compute_type_for(config.whisper_compute_type, device)
    return f"{FW_PREFIX}{target} ({compute}{', cuda' if device == 'cuda' else ''})"


def compute_type_for(requested: str, device: str) -> str:
    """``config.whisper_compute_type`` resolved: 'auto' is int8 on CPU and float16 on CUDA."""
    req = (requested or "auto").strip().lower()
    if req == "auto":
        return "float16" if device == "cuda" else "int8"
    return req


def ctranslate2_device(torch_device: str) -> str:
    """'cuda' when the configuration asks for a GPU and CTranslate2 sees one, else 'cpu'."""
    if not torch_device.startswith("cuda"):
        return "cpu"
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # noqa: BLE001 - a CTranslate2 build without CUDA
        return "cpu"


def load_faster_whisper(folder: Path, label: str, *, device: str, compute_type: str, threads: int) -> FasterWhisper:
    """Load a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json, vocabulary.txt); no network."""
    from faster_whisper import WhisperModel

    if threads <= 0:  # CTranslate2's own default is 4 threads, whatever the machine has
        threads = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    model = WhisperModel(str(folder), device=device, compute_type=compute_type, cpu_threads=int(threads),
                         local_files_only=True)
    # Instance attributes: faster-whisper calls self.encode(...) and self.feature_extractor(...).
    model.encode = LastCallMemo(model.encode)
    model.feature_extractor = LastCallMemo(model.feature_extractor)
    logger.info("loaded %s from %s on %s", label, folder, device)
    return FasterWhisper(model=model, emotivoice_name=label, folder=folder, device=device, compute_type=compute_type)


def load_from_label(core: str, label: str, config: Config) -> Any:
    """Load the faster-whisper model a label names (packaged weights are verified first)."""
    from pipeline.whisper_weights import SPECS, WeightsError, ensure_weights

    m = _FW_LABEL.match(core)
    if m is None:
        raise ModelUnavailableError(core, "not a faster-whisper label ('faster-whisper <size or folder> (<compute>)')")
    target, compute = m["target"], m["compute"]
    device = "cuda" if m["device"] == "cuda" else "cpu"
    if target in SPECS:
        try:
            folder = ensure_weights(target, config)
        except WeightsError as exc:
            raise ModelUnavailableError(target, f"{exc}; or turn transcription off with --whisper-model none") from exc
    else:
        folder = Path(target)
        if not (folder / "model.bin").is_file():
            raise ModelUnavailableError(target, f"no CTranslate2 model.bin in {folder}; pass a faster-whisper model "
                                                "folder, a Whisper size name, or --whisper-model none")
    stamp = (folder / "model.bin").stat().st_mtime_ns
    return _load_cached(str(folder), label, device, compute, int(config.whisper_threads), stamp)


@functools.lru_cache(maxsize=4)
def _load_cached(folder: str, label: str, device: str, compute: str, threads: int, stamp: int) -> Any:
    try:
        return load_faster_whisper(Path(folder), label, device=device, compute_type=compute, threads=threads)
    except (RuntimeError, ValueError, OSError) as exc:  # unreadable model.bin, unsupported compute type
        raise ModelUnavailableError(label, f"faster-whisper cannot load {folder} ({type(exc).__name__}: {exc})") from exc


def detect_language(fw: FasterWhisper, samples: np.ndarray) -> tuple[str, float]:
    """The language of (the first 30 s of) ``samples`` and its probability in [0, 1].

    The mel frames are those :func:`transcribe` gives the first window of the same ``samples`` (computed
    over the whole signal, the last frame dropped as faster-whisper does), so the frames and that window's
    encoder output are reused (:class:`LastCallMemo`) when ``samples`` are transcribed next."""
    audio = np.ascontiguousarray(samples, dtype=np.float32)
    fe = fw.model.feature_extractor
    with fw._lock:
        features = fe(audio, chunk_length=None)  # as WhisperModel.transcribe calls it: the same memo key
        first = features[..., :max(1, min(fe.nb_max_frames, features.shape[-1] - 1))]
        code, prob, _ = fw.model.detect_language(features=first)
    return code, float(prob)


def transcribe(fw: FasterWhisper, audio: np.ndarray, *, language: str, beam_size: int, sample_len: int | None,
               max_compression_ratio: float | None, clip: tuple[float, float] | None = None,
               compression_ratio_threshold: float = 2.4, logprob_threshold: float = -1.0,
               no_speech_threshold: float = 0.6) -> list[Word]:
    """The words of ``audio`` (or of its ``clip`` span), seconds from ``audio``'s start."""
    options: dict[str, Any] = dict(
        language=language, task="transcribe", beam_size=max(1, int(beam_size)), best_of=1, temperature=0.0,
        condition_on_previous_text=False, word_timestamps=True, vad_filter=False,
        compression_ratio_threshold=compression_ratio_threshold, log_prob_threshold=logprob_threshold,
        no_speech_threshold=no_speech_threshold,
    )
    if sample_len is not None:
        options["max_new_tokens"] = int(sample_len)
    if clip is not None:
        options["clip_timestamps"] = [float(clip[0]), float(clip[1])]
    words: list[Word] = []
    dropped = 0
    with fw._lock:
        try:
            segments, _ = fw.model.transcribe(np.ascontiguousarray(audio, dtype=np.float32), **options)
            for seg in segments:  # a generator: decoding happens while iterating
                if max_compression_ratio is not None and seg.compression_ratio > max_compression_ratio:
                    dropped += 1
                    logger.debug("dropped a segment whose text is a repetition loop (compression ratio %.1f): %r",
                                 seg.compression_ratio, seg.text[:60])
                    continue
                for w in seg.words or []:
                    words.append(Word(word=w.word, start_s=float(w.start), end_s=float(w.end),
                                      probability=None if w.probability is None else float(w.probability)))
        finally:  # transcription is the frames' and the encoder output's last use
            for memo in (fw.model.feature_extractor, fw.model.encode):
                if isinstance(memo, LastCallMemo):
                    memo.forget()
    if dropped:
        logger.info("%s: %d segment(s) dropped as repetition loops", fw.emotivoice_name, dropped)
    return words
