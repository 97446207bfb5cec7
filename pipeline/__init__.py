"""EmotiVoice pipeline: audio in, timed chunks with emotions, transcripts, features and explanations out.

Knows nothing of Prefect, DuckDB or Streamlit. Callers outside pipeline/ (flows/, dashboard/) import what
they use from here: ``from pipeline import Analyzer, Config, decode_audio``. Configuration, types and the
audio rate are imported eagerly (they are light); everything that pulls in numpy-heavy code, torch or
the models is imported on first use through ``__getattr__``, so ``import pipeline`` stays light (the
CLI's startup and the dashboard's first paint depend on it).
"""

from pipeline.config import Config, load_config
from pipeline.runtime import SAMPLE_RATE
from pipeline.types import (
    AUDIO_ERROR_KINDS,
    BASE_EMOTIONS,
    AudioError,
    Chunk,
    ChunkResult,
    EmotionModel,
    FileResult,
    ModelInfo,
    ModelUnavailableError,
)

#: Lazily imported public names -> the module that defines them.
_LAZY = {
    "Analyzer": "pipeline.analyze",
    "analyze_file": "pipeline.analyze",
    "analyze_signal": "pipeline.analyze",
    "get_analyzer": "pipeline.analyze",
    "settings_key": "pipeline.analyze",
    "decode_audio": "pipeline.audio",
    "decode_bytes": "pipeline.audio",
    "file_sha256": "pipeline.audio",
    "probe_audio": "pipeline.audio",
    "load_emotion_model": "pipeline.emotion",
    "load_whisper": "pipeline.transcribe",
}

__all__ = sorted([
    "AUDIO_ERROR_KINDS",
    "BASE_EMOTIONS",
    "AudioError",
    "Chunk",
    "ChunkResult",
    "Config",
    "EmotionModel",
    "FileResult",
    "ModelInfo",
    "ModelUnavailableError",
    "SAMPLE_RATE",
    "load_config",
    *_LAZY,
])


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    import importlib

    # Not cached here: every look-up reads the defining module, so a patched function is seen by callers.
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
