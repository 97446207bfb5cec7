"""Facts about the machine and process every model shares: the audio rate, the torch device, offline mode.

Public API:
    SAMPLE_RATE            the rate (Hz) every model and analysis stage works at; audio is decoded to it
    resolve_device(name)   a device setting ('auto', 'cpu', 'cuda', 'cuda:N') -> the device to run on
    hub_offline()          whether model downloads are turned off by the environment
"""

from __future__ import annotations

import os

#: Hz. Every model here (HuBERT, Whisper, the compact model, Silero VAD, resemblyzer) expects 16 kHz mono.
SAMPLE_RATE = 16000

#: Environment variables that turn model downloads off (any of them set to a true value).
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "EMOTIVOICE_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether downloads are off: any of ``OFFLINE_VARIABLES`` is 1/true/yes/on (read at call time)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in OFFLINE_VARIABLES)


def resolve_device(name: str, *, strict: bool = True) -> str:
    """``name`` with 'auto' resolved: 'cuda' when torch sees a GPU, else 'cpu'.

    Args:
        name: the device setting ('auto' | 'cpu' | 'cuda' | 'cuda:N'; empty means 'auto').
        strict: check the setting (loading a model). False returns any other name as given, unchecked:
            for saying what would run on a configured device (the transcriber's label for a 'cuda'
            configuration on a machine without one), and for libraries that check it themselves.

    Raises:
        ValueError: (strict only) 'cuda...' when torch sees no CUDA device, or a name that is not
            'auto', 'cpu' or 'cuda[:N]' (the message names the setting and the choices).
    """
    if not strict and name and name.lower() != "auto":
        return name
    import torch

    device = (name or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"config device {device!r}: torch sees no CUDA device (use 'cpu' or 'auto')")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"config device {device!r}: expected 'auto', 'cpu' or 'cuda'")
    return device
