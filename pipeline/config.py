"""One configuration object for every knob of EmotiVoice, built from small sections.

Values come, in increasing priority, from the defaults below, an optional TOML file
(``EMOTIVOICE_CONFIG`` or ``./emotivoice.toml``), environment variables ``EMOTIVOICE_<FIELD>``
(upper-case field name) and explicit keyword overrides (what the CLI flags pass).

Design. Each concern is a small frozen dataclass, a *section* (:class:`Models`, :class:`Chunking`,
:class:`Speakers`, :class:`Explain`, :class:`Paths`, :class:`Live`, :class:`Flows`, :class:`Decoding`,
:class:`Access`, :class:`Sql`): it declares its fields with units and meaning, names its TOML table
(``[models]``, ``[chunking]``, ...) and reads its own values from that table, from flat top-level keys
and from its environment variables (:meth:`Section.read`). :class:`Config` inherits every section, so
it has every field flat: callers keep writing ``config.db`` or ``Config(device="cpu")``, a Config can
be passed wherever one section is expected (it *is* each section), and ``config.section(Live)`` gives
the section alone. Field names are unique across sections (the class definition fails otherwise), which
is what lets the TOML file be flat or sectioned and the environment names stay ``EMOTIVOICE_<FIELD>``.
A known option under the wrong table is still read, with a warning naming the right table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_type_hints

ENV_PREFIX = "EMOTIVOICE_"
DEFAULT_TOML = "emotivoice.toml"

logger = logging.getLogger(__name__)

S = TypeVar("S", bound="Section")


@dataclass(frozen=True)
class Section:
    """A group of options with its TOML table; subclasses hold the fields."""

    TABLE: ClassVar[str] = ""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def read(cls, top: dict[str, Any], tables: dict[str, dict[str, Any]], env: dict[str, str]) -> dict[str, Any]:
        """This section's raw values: flat top-level TOML keys, then its own ``[TABLE]``, then the
        environment (``EMOTIVOICE_<FIELD>``), later sources winning. Values are not yet coerced."""
        names = cls.names()
        values = {k: v for k, v in top.items() if k in names}
        own = tables.get(cls.TABLE, {})
        values.update({k: v for k, v in own.items() if k in names})
        values.update({n: env[ENV_PREFIX + n.upper()] for n in names if ENV_PREFIX + n.upper() in env})
        return values


@dataclass(frozen=True)
class Models(Section):
    """Which emotion and speech models run, where, and how."""

    TABLE: ClassVar[str] = "models"

    emotion_model: str = "auto"
    """'auto' (the HuBERT checkpoint if available locally, else 'compact'), 'compact', a hub id or a local path."""
    hubert_checkpoint: str = "superb/hubert-base-superb-er"
    """The HuBERT checkpoint that 'auto' prefers (IEMOCAP emotion, 4 classes)."""
    whisper_model: str = "auto"
    """'auto' (CPU: faster-whisper base with the packaged weights; GPU: large-v3 when cached), 'none' (no
    transcription), a Whisper size name, a ``.pt`` checkpoint path or a CTranslate2 model folder."""
    device: str = "auto"
    """'auto' (cuda when available), 'cpu' or 'cuda'."""
    language: str | None = None
    """ISO code to force a transcription language; None auto-detects."""
    beam_size: int = 1
    """Whisper beams for files (1 = greedy). Greedy is the default: on the read-speech set both give 4.7 % WER,
    and on conversations with pauses (``python -m bench.transcript_attribution``) greedy was faster and put
    fewer words wrong (docs/benchmarks.md)."""
    live_beam_size: int = 1
    whisper_dir: str = ""
    """Folder of the assembled, sha256-verified faster-whisper weights (``faster-whisper-<size>/``);
    empty means ``<data_dir>/whisper``. See ``pipeline.whisper_weights``."""
    whisper_compute_type: str = "auto"
    """faster-whisper (CTranslate2) precision: 'auto' (int8 on CPU, float16 on CUDA), 'int8', 'float32', ..."""
    whisper_threads: int = 0
    """faster-whisper CPU threads per model (CTranslate2 intra-op threads); 0 = the usable cores, at most 4."""
    quantize: str = "auto"
    """HuBERT on CPU: 'auto' (the bench's choice), 'none', 'int8'."""
    batch_size: int = 8
    """Chunks per emotion-model forward pass at most; on CPU also at most 8 s of audio per pass (batching
    longer chunks is slower there: ``pipeline.emotion.CPU_BATCH_SAMPLES``)."""
    model_cache_size: int = 2
    """Model sets (the emotion model and Whisper for one choice of checkpoints, weight folders, device and
    precision) one process keeps loaded; the least recently used set is dropped beyond it. Runs with other
    chunking, explanation or decoding settings share a set, so a long-lived worker holds one copy of each
    model (``pipeline.model_cache``). The speaker encoder and Silero VAD are one per device / process."""


@dataclass(frozen=True)
class Chunking(Section):
    """How a recording is cut into chunks of speech (``pipeline.chunking``)."""

    TABLE: ClassVar[str] = "chunking"

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
    chunker: str = "vad"
    """How speech is found: 'vad' (Silero voice-activity probabilities, the ONNX model faster-whisper ships;
    falls back to 'energy' with a note when it cannot run) or 'energy' (frame RMS against the file's peak and
    noise floor, ``silence_threshold_db``). Both then apply min_silence_ms, keep_silence_ms, min/max_chunk_s.
    ``python -m bench.vad_bench`` compares them on speech mixed with noise."""
    vad_threshold: float = 0.35
    """'vad' chunker: a 32 ms window starts speech at this Silero probability (0-1) or above; speech goes on
    while the probability stays at or above this minus 0.15. 0.35 (Silero's default is 0.5) keeps 97 % of
    clean speech frames instead of 94 % at under 2 s/min of noise taken for speech (bench.vad_bench)."""
    vad_min_speech_ms: int = 250
    """'vad' chunker: speech runs shorter than this (ms, after joining pauses under min_silence_ms) are dropped
    as blips (a cough, a click)."""


@dataclass(frozen=True)
class Speakers(Section):
    """Who spoke: per-chunk speaker labels (``pipeline.speakers``)."""

    TABLE: ClassVar[str] = "speakers"

    speakers: str = "auto"
    """Per-chunk speaker labels S1, S2, ... within each file (in order of first appearance): 'auto' (number of
    speakers estimated with ``speaker_threshold``), 'none' (no labels, no cost), or a number N (exactly N
    speakers, fewer when the file has fewer chunks). Not used by the live tab (one utterance at a time)."""
    max_speakers: int = 8
    """'auto' speakers: at most this many per file."""
    speaker_threshold: float = 0.35
    """'auto' speakers: chunks whose voice embeddings (resemblyzer, 256-d) are closer than this cosine distance
    (0-2, average linkage) count as one speaker. Lower splits one voice into several, higher merges similar
    voices; 0.35 had the lowest speaker confusion on RAVDESS actors 1-8 (``python -m bench.diarization_bench
    --sweep``). A known speaker count (``speakers = N``) is more reliable when you have it."""


@dataclass(frozen=True)
class Explain(Section):
    """Explanations of the emotion scores (``pipeline.explain``)."""

    TABLE: ClassVar[str] = "explain"

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


@dataclass(frozen=True)
class Paths(Section):
    """Where the database, caches and corpora are."""

    TABLE: ClassVar[str] = "paths"

    db: str = "emotivoice.duckdb"
    data_dir: str = ".emotivoice"
    """Prefect home, live recordings, caches."""
    corpus_roots: tuple[str, ...] = ()
    """Folders under which the dashboard may start ingestions (empty: only examples/)."""


@dataclass(frozen=True)
class Live(Section):
    """The live tab (microphone in the browser)."""

    TABLE: ClassVar[str] = "live"

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


@dataclass(frozen=True)
class Flows(Section):
    """The ingestion flow (Prefect)."""

    TABLE: ClassVar[str] = "flows"

    workers: int = 1
    retries: int = 2
    """Times Prefect retries one file's analysis after a transient error (out of memory, I/O), with
    backoff; 0 = no retry. Bad audio is never retried within a run (see ``retry_failed``)."""
    cluster: str = ""
    """Where the per-file tasks run: '' (threads in this process, ``workers`` of them), 'local:N' (a Dask
    cluster of N worker processes started for the run) or 'tcp://host:8786' (an existing Dask scheduler).
    Results come back through Dask: workers need the project installed and the corpus at the same path
    or URL, never the flow's data directory. Environment: ``EMOTIVOICE_CLUSTER``."""
    write_batch_files: int = 64
    write_batch_s: float = 2.0
    """The flow writes finished files in one transaction when this many are waiting or the oldest has
    waited this many seconds (one DuckDB commit per file caps a run near 15 files/s)."""
    stop_grace_s: float = 10.0
    """After SIGTERM/SIGINT/SIGHUP, seconds an ingestion gets to finish the file in hand and stop cleanly;
    then it marks its run 'interrupted', stops its Prefect server and exits without waiting."""


@dataclass(frozen=True)
class Decoding(Section):
    """How files are decoded during ingestion, and which failures are retried."""

    TABLE: ClassVar[str] = "decoding"

    decode_isolation: bool = True
    """Decode each file in a child process (``pipeline.isolate``): a native crash of the decoder (SIGSEGV,
    abort, out of memory) or a hang fails that file ('crashed the analyser: SIGSEGV') instead of killing the
    run. It costs tens of milliseconds per file (the samples come back through a pipe) plus a forkserver
    start once per process; figures in docs/benchmarks.md ("Decoding in a child process")."""
    decode_timeout_s: float = 300.0
    """With ``decode_isolation``: seconds one file's decoding may take before it is killed and failed
    ('timed out'). Decoding runs at roughly 300-1000x real time on one core, so 300 s covers ~1 day of audio."""
    retry_failed: bool = False
    """Ingestion: also retry files that failed in an earlier run because of their content (decode,
    unsupported, truncated, crashed, timeout) although they are unchanged; by default only a changed file
    is retried (unreadable files are retried on every run). The CLI flag is ``ingest --retry-failed``."""


@dataclass(frozen=True)
class Access(Section):
    """Dashboard login and roles; see docs/serving.md and SECURITY.md."""

    TABLE: ClassVar[str] = "access"

    viewers: tuple[str, ...] = ()
    """With a login configured: who may sign in as a viewer (pages and charts). E-mail addresses or
    '@domain' entries, case-insensitive; anyone else is refused."""
    analysts: tuple[str, ...] = ()
    """With a login configured: who may sign in as an analyst (also SQL, exports, Runs and Live).
    Same format as ``viewers``; an address in both lists is an analyst."""
    no_login: bool = False
    """Serve the dashboard on a non-loopback address without a login, on purpose: everyone who can reach
    it is an analyst. Ignored when a login is configured. Loopback without a login needs no flag."""


@dataclass(frozen=True)
class Sql(Section):
    """Analyst SQL (``emotivoice sql``, ``emotivoice export``, the SQL page; see warehouse/sandbox.py)."""

    TABLE: ClassVar[str] = "sql"

    sql_timeout_s: float = 30.0
    """Wall-clock seconds an analyst query may take: child process start, execution, fetch and transfer
    (0 = no limit; only on request: a reader holds up the ingestion's writes while it runs)."""
    sql_max_rows: int = 10_000
    """Rows of an analyst query kept at most (0 = no row cap; the byte cap still holds)."""
    sql_max_mb: int = 32
    """MiB of result (Arrow buffer size) an analyst query keeps at most, checked while fetching."""
    sql_memory_mb: int = 2048
    """Address-space cap (RLIMIT_AS) of the process that runs analyst SQL and exports, MiB; DuckDB's own
    memory_limit is a quarter of it. At least 1536 (the process needs ~1.1 GB of address space to open DuckDB)."""
    export_timeout_s: float = 600.0
    """Wall-clock seconds an export may take (0 = no limit)."""


#: Every section, in the order of ``Config``'s fields.
SECTIONS: tuple[type[Section], ...] = (Models, Chunking, Speakers, Explain, Paths, Live, Flows, Decoding, Access, Sql)


def _check_unique(sections: tuple[type[Section], ...]) -> None:
    """Field names must be unique across sections: the TOML file may be flat and env names are per field."""
    seen: dict[str, str] = {}
    for section in sections:
        for name in section.names():
            if name in seen:
                raise TypeError(f"config option {name!r} is in both [{seen[name]}] and [{section.TABLE}]")
            seen[name] = section.TABLE


_check_unique(SECTIONS)


@dataclass(frozen=True)
class Config(*reversed(SECTIONS)):  # reversed: dataclass fields come base-last-first, so Models' come first
    """Every knob, flat (each section's fields). Units are in the names (``_s`` seconds, ``_ms``
    milliseconds, ``_db`` decibels, ``_mb`` MiB)."""

    TABLE: ClassVar[str] = ""

    def replace(self, **overrides: Any) -> "Config":
        """A copy with the given fields changed; ``None`` values are ignored (unset CLI flags)."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(clean) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown config option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in clean.items()})

    def section(self, cls: type[S]) -> S:
        """The values of one section alone, e.g. ``config.section(Live)``."""
        return cls(**{name: getattr(self, name) for name in cls.names()})

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


def _read_toml(data: dict[str, Any], source: str, env: dict[str, str]) -> dict[str, Any]:
    """Every section reads its table and the flat keys (and the environment, which wins); anything left
    over is an unknown option (an error naming it) or a known one under another table (read, with a warning)."""
    by_table = {s.TABLE: s for s in SECTIONS}
    tables = {k: v for k, v in data.items() if isinstance(v, dict) and k in by_table}
    top = {k: v for k, v in data.items() if k not in tables}
    values: dict[str, Any] = {}
    for section in SECTIONS:
        values.update(section.read(top, tables, env))
    known = {name: s for s in SECTIONS for name in s.names()}
    unknown = {k for k in top if k not in known}
    for table, entries in tables.items():
        for key, value in entries.items():
            if key in by_table[table].names():
                continue
            if key not in known:
                unknown.add(key)
            else:
                logger.warning("%s: option %r is read from [%s] but belongs in [%s]", source, key, table,
                               known[key].TABLE)
                if ENV_PREFIX + key.upper() not in env:  # the environment still wins over the file
                    values[key] = value
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {', '.join(sorted(unknown))}")
    return values


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
    toml_path = path or env.get(ENV_PREFIX + "CONFIG")
    if toml_path:
        p = Path(toml_path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} does not exist")
    elif Path(DEFAULT_TOML).is_file():
        p = Path(DEFAULT_TOML)
    else:
        p = None
    data: dict[str, Any] = {}
    if p is not None:
        with open(p, "rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{p}: not valid TOML: {exc}") from exc
    values = _read_toml(data, str(p), env)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config().replace(**values)
