"""EmotiVoice pipeline: audio in, timed chunks with emotions, transcripts, features and explanations out.

Knows nothing of Prefect, DuckDB or Streamlit. Public API (lazy imports keep `import pipeline` light).
"""

from pipeline.config import Config, load_config
from pipeline.types import (
    BASE_EMOTIONS,
    AudioError,
    ChunkResult,
    FileResult,
    ModelUnavailableError,
)

__all__ = [
    "BASE_EMOTIONS",
    "AudioError",
    "ChunkResult",
    "Config",
    "FileResult",
    "ModelUnavailableError",
    "analyze_file",
    "analyze_signal",
    "load_config",
]


def __getattr__(name):
    if name in ("analyze_file", "analyze_signal", "Analyzer"):
        from pipeline import analyze

        return getattr(analyze, name)
    raise AttributeError(name)
