"""One configuration object for every knob of EmotiVoice.

Values come, in increasing priority, from the defaults below, an optional TOML file
(``EMOTIVOICE_CONFIG`` or ``./emotivoice.toml``), environment variables ``EMOTIVOICE_<FIELD>``
(upper-case field name) and explicit keyword overrides (what the CLI flags pass).

The TOML file may be flat (``emotion_model = "compact"``) or use the section names below
(``[models]``, ``[chunking]``, ``[explain]``, ``[paths]``, ``[live]``); sections are only for
readability, every key is unique across sections.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "EMOTIVOICE_"
DEFAULT_TOML = "emotivoice.toml"

SECTIONS = {
    "models": (
        "emotion_model", "hubert_checkpoint", "whisper_model", "device", "language",
        "beam_size", "live_beam_size", "quantize", "batch_size",
    ),
    "chunking": (
        "silence_threshold_db", "min_silence_ms", "keep_silence_ms", "min_chunk_s", "max_chunk_s",
    ),
    "explain": (
        "explain", "explain_budget", "explain_min_segments", "explain_max_segments",
        "faithfulness_sample", "faithfulness_top_k", "attention_size",
    ),
    "paths": ("db", "data_dir", "corpus_roots"),
    "live": (
        "ice_servers", "live_queue_size", "live_silence_ms", "live_max_utterance_s", "live_min_utterance_s",
        "live_threads",
    ),
    "flows": ("workers", "retries"),
}


@dataclass(frozen=True)
class Config:
    """Every knob. Units are in the names (``_s`` seconds, ``_ms`` milliseconds, ``_db`` decibels)."""

    # --- models
    emotion_model: str = "auto"
    """'auto' (the HuBERT checkpoint if available locally, else 'compact'), 'compact', a hub id or a local path."""
    hubert_checkpoint: str = "superb/hubert-base-superb-er"
    """The HuBERT checkpoint that 'auto' prefers (IEMOCAP emotion, 4 classes)."""
    whisper_model: str = "auto"
    """'auto' (device-aware size), 'none' (no transcription), a Whisper size name or a checkpoint path."""
    device: str = "auto"
    """'auto' (cuda when available), 'cpu' or 'cuda'."""
    language: str | None = None
    """ISO code to force a transcription language; None auto-detects."""
    beam_size: int = 5
    live_beam_size: int = 1
    quantize: str = "auto"
    """HuBERT on CPU: 'auto' (the bench's choice), 'none', 'int8'."""
    batch_size: int = 8
    """Chunks per emotion-model forward pass at most; on CPU also at most 8 s of audio per pass (batching
    longer chunks is slower there: ``pipeline.emotion.CPU_BATCH_SAMPLES``)."""

    # --- chunking
    silence_threshold_db: float = -40.0
    """A frame is silent when its RMS is this many dB below the file's peak RMS."""
    min_silence_ms: int = 500
    """Silence at least this long separates two chunks."""
    keep_silence_ms: int = 100
    """Padding of silence kept around each chunk."""
    min_chunk_s: float = 1.0
    """Chunks shorter than this are merged with a neighbour (dropped when alone and under 0.25 s)."""
    max_chunk_s: float = 30.0
    """Chunks longer than this are split (Whisper sees at most 30 s)."""

    # --- explanations
    explain: str = "fast"
    """'none', 'fast' (pooled-head Shapley/LIME, near free) or 'full' (input masking with re-forwards)."""
    explain_budget: int = 32
    """Full tier: model evaluations per chunk shared by KernelSHAP and LIME (real forward passes of the
    masked chunk). 32 keeps a 10 s chunk with full-size HuBERT (int8) at 15-18 s on 2 CPU cores
    (``python -m bench.explain_cost``); raise it for closer Shapley estimates of many segments."""
    explain_min_segments: int = 5
    explain_max_segments: int = 20
    faithfulness_sample: float = 0.002
    """Fast tier: fraction of chunks that also get a deletion-AOPC faithfulness check. Each check costs
    n + 2(k - 1) real forward passes (14 for a 10 s chunk, about 5.5x its plain analysis), so 0.002 adds
    ~1 % to ingestion and keeps the fast tier within 5 % in all; 0.02 adds ~11 %. The full tier checks
    every chunk."""
    faithfulness_top_k: int = 3
    attention_size: int = 32
    """Attention maps are downsampled to at most this many time steps per side."""

    # --- paths
    db: str = "emotivoice.duckdb"
    data_dir: str = ".emotivoice"
    """Prefect home, live recordings, caches."""
    corpus_roots: tuple[str, ...] = ()
    """Folders under which the dashboard may start ingestions (empty: only examples/)."""

    # --- live tab
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs for WebRTC; empty works on localhost and LAN with no outside request."""
    live_queue_size: int = 4
    live_silence_ms: int = 400
    live_max_utterance_s: float = 6.0
    live_min_utterance_s: float = 0.4
    live_threads: int = 1
    """Torch CPU threads of the live analysis worker (set on that thread only; 0 = torch's default).
    1 leaves a core to WebRTC/Streamlit and avoids OpenMP spin-wait stalls on a busy machine
    (measured in ``python -m bench.live_latency``, see docs/live.md)."""

    # --- flows
    workers: int = 1
    retries: int = 2

    def replace(self, **overrides: Any) -> "Config":
        """A copy with the given fields changed; ``None`` values are ignored (unset CLI flags)."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(clean) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown config option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in clean.items()})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()


_HINTS: dict[str, Any] = {}


def _field_type(name: str) -> Any:
    if not _HINTS:
        _HINTS.update(get_type_hints(Config))
    return _HINTS[name]


def _coerce(name: str, value: Any) -> Any:
    """Turn TOML/env strings into the field's type, naming the option when it can't."""
    typ = _field_type(name)
    try:
        if typ is bool:
            return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes", "on"}
        if typ is int:
            return int(value)
        if typ is float:
            return float(value)
        if typ == tuple[str, ...]:
            if isinstance(value, str):
                return tuple(p.strip() for p in value.split(",") if p.strip())
            return tuple(str(v) for v in value)
        if typ == str | None:
            return None if value in (None, "", "none", "None") and name == "language" else str(value)
        return str(value) if not isinstance(value, str) else value
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config option {name!r}: cannot read {value!r} as {typ}") from exc


def _flatten_toml(data: dict[str, Any], source: str) -> dict[str, Any]:
    known = {f.name for f in fields(Config)}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in SECTIONS:
            flat.update(value)
        else:
            flat[key] = value
    unknown = set(flat) - known
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {', '.join(sorted(unknown))}")
    return flat


def load_config(path: str | os.PathLike | None = None, *, env: dict[str, str] | None = None,
                **overrides: Any) -> Config:
    """Build the configuration from defaults, TOML file, environment and overrides.

    Args:
        path: TOML file; default ``$EMOTIVOICE_CONFIG`` or ``./emotivoice.toml`` if it exists.
        env: environment mapping (default ``os.environ``).
        **overrides: explicit values (e.g. from CLI flags); ``None`` means "not given".

    Raises:
        ValueError: an unknown option or a value of the wrong type, naming it.
        FileNotFoundError: an explicitly named config file that does not exist.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    toml_path = path or env.get(ENV_PREFIX + "CONFIG")
    if toml_path:
        p = Path(toml_path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} does not exist")
    elif Path(DEFAULT_TOML).is_file():
        p = Path(DEFAULT_TOML)
    else:
        p = None
    if p is not None:
        with open(p, "rb") as fh:
            try:
                values.update(_flatten_toml(tomllib.load(fh), str(p)))
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{p}: not valid TOML: {exc}") from exc
    for f in fields(Config):
        key = ENV_PREFIX + f.name.upper()
        if key in env:
            values[f.name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config().replace(**values)
