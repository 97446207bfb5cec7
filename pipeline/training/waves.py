"""Decoded training audio: 16 kHz waves cached on disk, the speech region of a clip, progress bars."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pipeline.runtime import SAMPLE_RATE


def default_cache_dir() -> Path:
    """``$EMOTIVOICE_CACHE`` or ``<tmp>/emotivoice_cache``."""
    return Path(os.environ.get("EMOTIVOICE_CACHE") or Path(tempfile.gettempdir()) / "emotivoice_cache")


def load_waves(paths: Sequence[str], *, cache_dir: str | os.PathLike | None = None,
               progress: bool = False) -> list[np.ndarray]:
    """Decode each file to float32 mono 16 kHz, caching int16 copies as ``.npy`` under ``cache_dir``.

    The cache key is the absolute path, size and modification time, so edited files are re-decoded.

    Raises:
        pipeline.types.AudioError: a file that cannot be decoded (named).
    """
    from pipeline.audio import decode_audio

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    out: list[np.ndarray] = []
    for p in progress_iter(paths, progress, desc="decoding"):
        st = os.stat(p) if os.path.exists(p) else None
        key = hashlib.sha1(f"{os.path.abspath(p)}|{st.st_size if st else 0}|{st.st_mtime_ns if st else 0}"
                           .encode()).hexdigest()[:20]
        f = cache / f"wave16k_{key}.npy"
        if f.is_file():
            try:
                out.append(np.load(f).astype(np.float32) / 32767.0)
                continue
            except (OSError, ValueError):
                pass
        x = decode_audio(p, sample_rate=SAMPLE_RATE).samples
        np.save(f, np.round(np.clip(x, -1, 1) * 32767.0).astype(np.int16))
        out.append(np.asarray(x, dtype=np.float32))
    return out


def speech_bounds(wave: np.ndarray, top_db: float = 35.0) -> tuple[int, int]:
    """Sample range of the non-silent part (librosa trim at ``top_db`` below the peak)."""
    import librosa

    if wave.size == 0 or not np.any(wave):
        return 0, wave.size
    _, (a, b) = librosa.effects.trim(wave, top_db=top_db, frame_length=512, hop_length=160)
    return (int(a), int(b)) if b > a else (0, wave.size)


def progress_iter(it: Iterable, enabled: bool, **kw):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, **kw)


def progress_write(msg: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(msg)
