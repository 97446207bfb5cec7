"""What the dashboard does besides reading: start an ingestion, run the full explanation tier.

Ingestion runs ``python -m flows.cli ingest DIR --db DB --progress`` as a subprocess (the Prefect flow
and its models stay out of the dashboard process; the flow is the only writer while it runs). Only
folders inside the configured corpus roots (``config.corpus_roots``; when empty, the bundled
``examples/`` folder) can be ingested: the chosen folder is resolved (symlinks followed) and refused
unless it lies inside a resolved root. Progress is read from the flow's progress bar in its log.

The full tier re-runs ``Analyzer.explain_full`` on one stored chunk with the emotion model that
produced it and replaces the chunk's stored explanation (``warehouse.updates``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import SAMPLE_RATE, Config

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
#: Sub-folder levels below each root offered in the Runs page.
FOLDER_DEPTH = 2
#: Most folders offered.
FOLDER_LIMIT = 500
_PROGRESS = re.compile(r"(\d+)/(\d+) \[")


# --------------------------------------------------------------------------------------------------
# allowed folders
# --------------------------------------------------------------------------------------------------

def allowed_roots(config: Config) -> list[Path]:
    """The corpus roots that exist, resolved (``examples/`` when none is configured)."""
    roots = [Path(r).expanduser() for r in config.corpus_roots] if config.corpus_roots else [EXAMPLES_DIR]
    out: list[Path] = []
    for r in roots:
        try:
            real = r.resolve(strict=True)
        except OSError:
            logger.warning("corpus root %s does not exist; ignored", r)
            continue
        if real.is_dir() and real not in out:
            out.append(real)
    return out


def folder_choices(config: Config, *, depth: int = FOLDER_DEPTH, limit: int = FOLDER_LIMIT) -> list[Path]:
    """Each allowed root and its non-hidden sub-folders down to ``depth`` levels (sorted, at most ``limit``).

    Symbolic links are never offered nor walked into (``os.walk`` lists a link to a folder among the
    folders even when it does not follow it): a link inside a root may point anywhere.
    """
    out: list[Path] = []
    for root in allowed_roots(config):
        out.append(root)
        for dirpath, dirnames, _ in os.walk(root, followlinks=False):
            level = len(Path(dirpath).relative_to(root).parts)
            dirnames[:] = sorted(d for d in dirnames
                                 if not d.startswith(".") and not (Path(dirpath) / d).is_symlink())
            if level >= depth:
                dirnames[:] = []
                continue
            for d in dirnames:
                out.append(Path(dirpath) / d)
                if len(out) >= limit:
                    return out
    return out


def resolve_ingest_folder(config: Config, folder: str | os.PathLike) -> Path:
    """The resolved folder if it lies inside an allowed root; otherwise ``ValueError`` saying why.

    Symlinks are followed before the check, so a link inside a root that points elsewhere is refused.
    """
    path = Path(folder).expanduser()
    if not path.is_absolute():
        raise ValueError(f"{folder}: give an absolute folder path")
    try:
        real = path.resolve(strict=True)
    except OSError:
        raise ValueError(f"{folder}: no such folder") from None
    if not real.is_dir():
        raise ValueError(f"{folder}: not a folder")
    roots = allowed_roots(config)
    if any(real == r or real.is_relative_to(r) for r in roots):
        return real
    shown = ", ".join(str(r) for r in roots) or "(none exists)"
    raise ValueError(f"{folder} is outside the corpus roots this dashboard may ingest ({shown}); "
                     f"add it to corpus_roots in the configuration")


# --------------------------------------------------------------------------------------------------
# ingestion jobs
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobState:
    """A snapshot of an ingestion job."""

    running: bool
    returncode: int | None
    done_files: int | None
    """Files analysed so far (from the flow's progress bar), when it has printed one."""
    total_files: int | None
    """Files the run has to analyse (new or changed); None until known."""
    last_lines: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        if not self.running:
            return 1.0
        if self.total_files:
            return min(1.0, (self.done_files or 0) / self.total_files)
        return None

    @property
    def ok(self) -> bool:
        return not self.running and self.returncode == 0


@dataclass
class IngestJob:
    """One ingestion subprocess started from the dashboard."""

    job_id: str
    folder: Path
    db: str
    command: list[str]
    log_path: Path
    started_at: _dt.datetime
    """UTC, naive (the warehouse's convention)."""
    process: subprocess.Popen

    def state(self) -> JobState:
        code = self.process.poll()
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 65536))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        found = _PROGRESS.findall(text)
        done, total = (int(found[-1][0]), int(found[-1][1])) if found else (None, None)
        lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
        return JobState(running=code is None, returncode=code, done_files=done, total_files=total,
                        last_lines=lines[-12:])

    def stop(self) -> None:
        """Ask the ingestion to stop (SIGTERM; the flow's writes are per-file transactions)."""
        if self.process.poll() is None:
            self.process.terminate()


_JOBS: dict[str, IngestJob] = {}
_LOCK = threading.Lock()


def _config_env(config: Config) -> dict[str, str]:
    """The configuration as ``EMOTIVOICE_<FIELD>`` variables, so the subprocess uses the same settings."""
    env: dict[str, str] = {}
    for key, value in config.to_dict().items():
        if value is None:
            continue
        env[f"EMOTIVOICE_{key.upper()}"] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return env


def ingest_command(folder: Path, db: str) -> list[str]:
    """The command that ingests ``folder`` into ``db`` (the CLI's ``ingest``, with a progress bar)."""
    return [sys.executable, "-m", "flows.cli", "ingest", str(folder), "--db", db, "--progress"]


def jobs(db: str | None = None) -> list[IngestJob]:
    """Jobs started by this dashboard process (for ``db`` when given), newest first."""
    with _LOCK:
        found = [j for j in _JOBS.values() if db is None or j.db == db]
    return sorted(found, key=lambda j: j.started_at, reverse=True)


def start_ingestion(config: Config, folder: str | os.PathLike, db: str) -> IngestJob:
    """Start ``emotivoice ingest`` of ``folder`` into ``db`` in a subprocess.

    Raises:
        ValueError: the folder is not inside an allowed corpus root (see ``resolve_ingest_folder``).
        RuntimeError: an ingestion of this folder into this database is already running.
    """
    real = resolve_ingest_folder(config, folder)
    with _LOCK:
        for job in _JOBS.values():
            if job.folder == real and job.db == db and job.process.poll() is None:
                raise RuntimeError(f"an ingestion of {real} is already running (started {job.started_at:%H:%M:%S} UTC)")
        log_dir = (config.data_path / "dashboard").resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        job_id = uuid.uuid4().hex[:8]
        started = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
        log_path = log_dir / f"ingest-{started:%Y%m%dT%H%M%S}-{job_id}.log"
        command = ingest_command(real, db)
        same = config.replace(db=db, data_dir=str(config.data_path.resolve()))
        env = dict(os.environ, **_config_env(same), PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        job = IngestJob(job_id, real, db, command, log_path, started, proc)
        _JOBS[job_id] = job
    logger.info("ingestion of %s into %s started (pid %d, log %s)", real, db, proc.pid, log_path)
    return job


# --------------------------------------------------------------------------------------------------
# full explanation tier
# --------------------------------------------------------------------------------------------------

def run_full_explanation(config: Config, db: str, chunk_id: int):
    """Explain one stored chunk with the full tier and store it in place of its explanation.

    Uses the emotion model recorded for the chunk's file (``files.emotion_model``) and the chunk's
    audio decoded from its path.

    Returns:
        ``warehouse.updates.ReplacedExplanation``.

    Raises:
        LookupError: no such chunk.
        ValueError: the file's audio cannot be read, or no emotion model is recorded.
        ModelUnavailableError: the recorded model cannot be loaded here.
    """
    from dashboard import data
    from dashboard.media import AudioUnavailable, load_audio
    from pipeline import ChunkResult, FileResult, ModelInfo, get_analyzer
    from warehouse.updates import replace_chunk_explanation

    ctx = data.chunk_context(db, chunk_id)
    if ctx is None:
        raise LookupError(f"chunk {chunk_id} is not in {db}")
    if not ctx.emotion_model:
        raise ValueError(f"no emotion model is recorded for {ctx.path}")
    audio = load_audio(ctx.path)
    if isinstance(audio, AudioUnavailable):
        raise ValueError(f"{ctx.path}: {audio.reason}")
    cfg = config.replace(emotion_model=ctx.emotion_model, whisper_model="none", explain="full", db=db)
    analyzer = get_analyzer(cfg)
    chunk = ChunkResult(idx=ctx.idx, start_s=ctx.start_s, end_s=ctx.end_s, base={}, dominant=ctx.dominant)
    result = FileResult(file=ctx.path, duration_s=float(audio.duration_s), sample_rate=SAMPLE_RATE, channels=1,
                        models=ModelInfo(emotion=ctx.emotion_model, emotion_trained=ctx.emotion_trained, whisper=None),
                        chunks=[chunk])
    analyzer.explain_full(result, audio.samples, 0)
    if chunk.explanation is None:
        raise ValueError(f"chunk {chunk_id}: the full tier returned no explanation")
    replaced = replace_chunk_explanation(chunk_id, chunk.explanation, db=db)
    data.clear_caches()
    return replaced
