"""Loaded models, shared across configurations and bounded per process.

Two layers, one owner:

* :data:`MODEL_SETS`, a :class:`ModelCache`: the one strong owner of loaded models. It keeps at most
  ``config.model_cache_size`` :class:`ModelSet` s (emotion model + Whisper), keyed by :func:`model_key`:
  only the settings that change which weights load or how they run (checkpoints, weight folders, device,
  precision, threads). Configurations that differ in chunking, explanations, beam size, language or
  speakers share one set, so a long-lived worker holds one copy of each model whatever runs it sees. The
  least recently used set is dropped beyond the bound; nothing else keeps a strong reference to its models,
  so their memory is freed once the analyses using them return.
* :func:`shared_while_used`, for the loaders' own caches (``pipeline.emotion``, ``pipeline.transcribe``):
  a weak-value cache, so a model loaded twice while one copy is still held somewhere is the same object,
  yet the loader never keeps a model alive by itself.

Both load once per key when threads ask at the same time (the live tab, the ingestion threads, a Dask
worker's task threads): the first caller loads, the others wait for its result.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable

from pipeline.config import Config

logger = logging.getLogger(__name__)

_OFF = {"none", "off", ""}


def _text(value: Any) -> str:
    return str(value or "").strip()


def model_key(config: Config) -> tuple:
    """The settings that decide which model weights load and how they run; nothing else.

    Weight folders (``whisper_dir``, ``data_dir``) and Whisper's threads count only where they can change
    what loads: Whisper is on, or the emotion model is 'auto' / 'whisper-head' / a local folder (which may
    be a whisper-head model on Whisper's encoder). ``hubert_checkpoint`` counts only for 'auto'.
    """
    emotion = _text(config.emotion_model) or "auto"
    emotion_kw = emotion.lower()
    whisper = _text(config.whisper_model)
    whisper_on = whisper.lower() not in _OFF
    uses_whisper_files = whisper_on or emotion_kw in {"auto", "whisper-head"} or _looks_like_path(emotion)
    return (
        ("emotion", emotion_kw if emotion_kw in {"auto", "compact", "whisper-head"} else _spec(emotion)),
        ("hubert_checkpoint", _spec(_text(config.hubert_checkpoint)) if emotion_kw == "auto" else None),
        ("whisper", _spec(whisper) if whisper_on else None),
        ("whisper_compute_type", _text(config.whisper_compute_type).lower() if whisper_on else None),
        ("whisper_dir", _folder(config.whisper_dir) if uses_whisper_files else None),
        ("data_dir", _folder(config.data_dir) if uses_whisper_files else None),
        ("whisper_threads", int(config.whisper_threads or 0) if uses_whisper_files else None),
        ("device", _text(config.device).lower() or "auto"),
        ("quantize", _text(config.quantize).lower() or "auto"),
    )


def _spec(spec: str) -> str:
    """A local path made absolute (the same folder named two ways is one model); other specs as given."""
    return _folder(spec) if spec and _looks_like_path(spec) else spec


def _folder(value: Any) -> str:
    text = _text(value)
    return str(Path(text).expanduser().resolve()) if text else ""


def _looks_like_path(spec: str) -> bool:
    from pipeline.model_resolution import looks_like_path

    return looks_like_path(spec)


class ModelSet:
    """The emotion model and Whisper of one :func:`model_key`; each loads on first use, once.

    ``config`` is the configuration the set was first asked for: any configuration with the same key
    loads the same weights the same way.
    """

    def __init__(self, key: tuple, config: Config):
        self.key = key
        self._config = config
        self._emotion_lock = threading.Lock()
        self._whisper_lock = threading.Lock()
        self._emotion: Any = None
        self._whisper: Any = None
        self._whisper_name: str | None = None
        self._whisper_loaded = False

    def emotion(self) -> Any:
        """The emotion model (``pipeline.emotion.load_emotion_model``), loaded on the first call."""
        if self._emotion is None:
            with self._emotion_lock:
                if self._emotion is None:
                    from pipeline.emotion import load_emotion_model

                    model = load_emotion_model(self._config.emotion_model, self._config)
                    if not model.trained:
                        logger.warning("emotion model %s is untrained (random weights): its outputs are not "
                                       "emotions", model.name)
                    self._emotion = model
        return self._emotion

    def whisper(self) -> tuple[str | None, Any]:
        """(label, model) of the transcriber (``pipeline.transcribe``); (None, None) when it is off."""
        if not self._whisper_loaded:
            with self._whisper_lock:
                if not self._whisper_loaded:
                    from pipeline.transcribe import load_whisper, resolve_whisper_name

                    name = resolve_whisper_name(self._config.whisper_model, self._config)
                    self._whisper = None if name is None else load_whisper(name, self._config)
                    self._whisper_name = name
                    self._whisper_loaded = True
        return self._whisper_name, self._whisper

    @property
    def emotion_loaded(self) -> Any:
        """The emotion model if it is loaded already, else None (loads nothing)."""
        return self._emotion

    @property
    def whisper_loaded(self) -> bool:
        return self._whisper_loaded

    def peek_whisper(self) -> tuple[str | None, Any]:
        """(label, model) as loaded so far, loading nothing: (None, None) before :meth:`whisper` ran."""
        return self._whisper_name, self._whisper


class ModelCache:
    """At most ``config.model_cache_size`` model sets, least recently used dropped first; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: OrderedDict[tuple, ModelSet] = OrderedDict()

    def get(self, config: Config) -> ModelSet:
        """The set for ``config``'s model settings (created empty on first use; loading is lazy).

        The bound is the asking configuration's ``model_cache_size`` (at least 1: the set returned).
        """
        key = model_key(config)
        with self._lock:
            found = self._sets.get(key)
            if found is None:
                found = self._sets[key] = ModelSet(key, config)
            self._sets.move_to_end(key)
            self._trim(max(1, int(config.model_cache_size)))
        return found

    def _trim(self, size: int) -> None:
        while len(self._sets) > size:
            key, _ = self._sets.popitem(last=False)
            logger.info("model cache: dropping the least recently used model set %s (bound %d)",
                        dict(key), size)

    def keys(self) -> list[tuple]:
        """Keys of the sets held, least recently used first."""
        with self._lock:
            return list(self._sets)

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sets)


#: The process-wide model sets (``pipeline.analyze.Analyzer`` takes its models from here).
MODEL_SETS = ModelCache()


def models_for(config: Config) -> ModelSet:
    """The process-wide model set for ``config`` (see :class:`ModelCache`)."""
    return MODEL_SETS.get(config)


class _SharedWhileUsed:
    """``fn(*args)`` cached by ``args`` for as long as some caller still holds the result."""

    def __init__(self, fn: Callable[..., Any]):
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._guard = threading.Lock()
        self._live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._locks: dict[Hashable, threading.Lock] = {}  # one per distinct key seen: a few per process

    def __call__(self, *args: Hashable) -> Any:
        with self._guard:
            found = self._live.get(args)
            if found is not None:
                return found
            lock = self._locks.setdefault(args, threading.Lock())
        with lock:  # a second caller with the same args waits here, then finds the first one's result
            found = self._live.get(args)
            if found is None:
                found = self._fn(*args)
                try:
                    self._live[args] = found
                except TypeError:  # not weak-referenceable: not shared, never kept alive either
                    logger.debug("%s: result of type %s is not shared", self._fn.__name__, type(found).__name__)
            return found

    def cache_clear(self) -> None:
        """Forget the shared results (those still held elsewhere stay alive there)."""
        with self._guard:
            self._live.clear()


def shared_while_used(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a model loader with hashable positional arguments: calls with equal arguments share
    one result while anyone holds it, load once when concurrent, and keep nothing alive themselves
    (``cache_clear()`` as on ``functools.lru_cache``). The bounded owner is :data:`MODEL_SETS`."""
    return _SharedWhileUsed(fn)
