"""Which emotion model to load and how: spec resolution, the local Hugging Face cache, hub reachability and
the quantisation setting. Nothing here loads a model or makes a request other than one TCP probe of the hub.

Public API:
    resolve_emotion_spec(spec, config) -> str   (what 'auto' picks, without loading anything)
    resolve_quantize(quantize, device) -> str   ('int8' or 'none' as it will run)
    is_cached(repo_id), available_locally(spec), looks_like_path(spec), hub_cache(), hub_reachable()
    unavailable_error(spec, reason) -> ModelUnavailableError   (names the model and how to provide it)
Device and offline mode: :mod:`pipeline.runtime`.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from pipeline.config import Config
from pipeline.runtime import hub_offline
from pipeline.types import ModelUnavailableError

log = logging.getLogger(__name__)

#: Whether quantize='auto' uses dynamic int8 on CPU: yes. It ran 1.44x faster than fp32 with the same top
#: class on HuBERT-base (``python -m bench.hubert_speed``; figures and caveats in docs/benchmarks.md); bf16
#: gained nothing.
AUTO_INT8_ON_CPU: bool = True

#: Files of which at least one must be cached for a hub checkpoint to count as available.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")

#: Seconds to wait for a TCP connection to the hub before treating it as unreachable.
HUB_CONNECT_TIMEOUT_S = 2.0


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection (checked once per process, ``HUB_CONNECT_TIMEOUT_S``).

    So a machine with no network and HF_HUB_OFFLINE unset falls back in seconds instead of waiting out
    huggingface_hub's retried HEAD requests (timings: docs/benchmarks.md).
    """
    import socket
    from urllib.parse import urlparse

    url = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "", parsed.port or (443 if parsed.scheme != "http" else 80)),
                                      timeout=HUB_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        log.info("Hugging Face hub %s is not reachable: using local files only", url)
        return False


def hub_cache() -> str:
    """The Hugging Face hub cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def looks_like_path(spec: str) -> bool:
    return (spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1
            or Path(spec).expanduser().exists())


def is_cached(repo_id: str) -> bool:
    """Whether a hub checkpoint's config and weights are in the local HF cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cache = hub_cache()
        if not isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=cache), str):
            return False
        return any(isinstance(try_to_load_from_cache(repo_id, f, cache_dir=cache), str) for f in WEIGHT_FILES)
    except Exception:  # invalid repo id and the like: not available
        return False


def available_locally(spec: str) -> bool:
    if looks_like_path(spec):
        return (Path(spec).expanduser() / "config.json").is_file()
    return is_cached(spec)


def normalise_spec(spec: str) -> str:
    if looks_like_path(spec):
        return str(Path(spec).expanduser().resolve())
    return spec


def resolve_emotion_spec(spec: str | None, config: Config | None = None) -> str:
    """What ``load_emotion_model`` would load for ``spec``, without loading anything (no network).

    Args:
        spec: 'auto' | 'compact' | hub id | local directory; None means ``config.emotion_model``.
        config: the configuration (``hubert_checkpoint`` is what 'auto' prefers).

    Returns:
        'compact', 'whisper-head', a hub id, or an absolute local directory. 'auto' gives the configured
        checkpoint when it is in the local HF cache (or is a local directory), or when downloads are allowed
        (HF_HUB_OFFLINE unset: optimistic; if the download then fails, loading falls back to 'compact');
        otherwise 'whisper-head' when the packaged Whisper base weights are installed, else 'compact'.
    """
    config = config or Config()
    spec = (spec or config.emotion_model or "auto").strip()
    key = spec.lower()
    if key == "auto":
        ckpt = config.hubert_checkpoint.strip()
        if available_locally(ckpt) or (not hub_offline() and not looks_like_path(ckpt) and hub_reachable()):
            return normalise_spec(ckpt)
        # The head on Whisper base's encoder frames beats the compact model on every unseen-actor fold
        # (docs/whisper_emotion.md); it needs the packaged Whisper base weights, the compact model does not.
        from pipeline.whisper_weights import is_available

        return "whisper-head" if is_available("base", config) else "compact"
    if key == "compact":
        return "compact"
    if key == "whisper-head":  # the shipped head on Whisper encoder frames (pipeline.whisper_emotion)
        return "whisper-head"
    return normalise_spec(spec)


def unavailable_error(spec: str, reason: str) -> ModelUnavailableError:
    hub = "" if looks_like_path(spec) else (
        f" pre-populate the Hugging Face cache on a connected machine with `huggingface-cli download {spec}`"
        f" (or `hf download {spec}`) and copy ~/.cache/huggingface to this machine (cache in use: {hub_cache()});")
    how = (f"{reason}. To provide it: pass a local copy with --emotion-model PATH "
           f"(or EMOTIVOICE_EMOTION_MODEL=PATH);{hub} or use --emotion-model compact (the shipped model)")
    return ModelUnavailableError(spec, how)


def resolve_quantize(quantize: str, device: str) -> str:
    q = (quantize or "auto").lower()
    if q not in ("auto", "none", "int8"):
        raise ValueError(f"config quantize {quantize!r}: expected 'auto', 'none' or 'int8'")
    if not device.startswith("cpu"):
        if q == "int8":
            log.warning("quantize='int8' applies to CPU only; running fp32 on %s", device)
        return "none"
    if q == "auto":
        return "int8" if AUTO_INT8_ON_CPU else "none"
    return q
