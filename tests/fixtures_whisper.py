"""Whisper fixtures: a tiny randomly initialised multilingual Whisper checkpoint and real speech at 16 kHz."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

#: Tiny dims: real mel/context sizes (so Whisper's 30 s windows and timestamps behave as usual), the
#: multilingual vocabulary (so language detection works), 2 layers of width 64.
TINY_WHISPER_DIMS = dict(
    n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
    n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2,
)


def build_random_whisper(path: Path, dims: dict | None = None, *, seed: int = 0) -> Path:
    """Save a randomly initialised Whisper in the format ``whisper.load_model(path)`` reads."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    from whisper.tokenizer import get_tokenizer

    torch.manual_seed(seed)
    d = ModelDimensions(**(dims or TINY_WHISPER_DIMS))
    model = Whisper(d)
    # Zero the no-speech token's embedding: its logit is then 0 among ~52k random ones, so Whisper's
    # silence check never skips a window of this model (whether it did would depend on float noise,
    # e.g. the thread count), and tests always see its (meaningless) words.
    tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages)
    with torch.no_grad():
        # Whisper leaves the decoder's positional embedding as torch.empty (real checkpoints overwrite
        # it): uninitialised memory, sometimes NaN. Give it values.
        model.decoder.positional_embedding.normal_(0.0, 0.02)
        model.decoder.token_embedding.weight[tokenizer.no_speech].zero_()
    torch.save({"dims": asdict(d), "model_state_dict": model.state_dict(), "emotivoice_random_init": True}, path)
    return path


@pytest.fixture(scope="session")
def tiny_whisper_path(tmp_path_factory) -> Path:
    """A tiny random-weight Whisper checkpoint (.pt) flagged ``emotivoice_random_init``."""
    return build_random_whisper(tmp_path_factory.mktemp("whisper") / "tiny-random.pt")


def load_16k_mono(path: Path) -> np.ndarray:
    """Decode with soundfile, mix to mono and resample to 16 kHz (float32)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if sr != 16000:
        g = np.gcd(int(sr), 16000)
        mono = resample_poly(mono, 16000 // g, int(sr) // g)
    return np.ascontiguousarray(mono, dtype=np.float32)


@pytest.fixture(scope="session")
def jfk_16k(speech_dir) -> np.ndarray:
    """jfk.flac (11 s of speech) as float32 mono 16 kHz samples."""
    return load_16k_mono(speech_dir / "jfk.flac")
