"""Prefect ingestion of audio folders: incremental, fault-isolated, kill-safe, ready to scale out.

Shape of a run (``ingest_folder``):

1. discover files under ``root`` (recursively; ``discover``): a file with an audio extension, or whose
   content probes as audio (``pipeline.isolate.probe_isolated``), is audio; hidden entries and other
   files are recorded as ``skipped`` with the reason. Audio that then cannot be decoded is ``failed``
   with its reason and ``error_type`` (decode, unsupported, truncated, crashed, timeout, unreadable);
2. hash each file; files the warehouse already has for these settings are skipped, content already
   analysed at another path is copied without running the models, and a file that failed before
   because of its content is not retried until it changes (``--retry-failed`` retries it);
3. each remaining file is one Prefect task ``analyze_file_task`` (decode -> chunk -> emotions ->
   transcript -> features -> explanations) that writes its result to a *staging file* and returns only
   that path (tasks pass paths and ids, never arrays: Prefect persists task results);
4. the flow process is the single DuckDB writer: as tasks finish it loads each staging file and writes
   the file's rows in one transaction (with retry/backoff when the database is busy), then deletes it.

Crash isolation: decoding runs in a child process (``pipeline.isolate``), so a file that crashes the
decoder (SIGSEGV, abort, out of memory) or hangs it is one ``failed`` row ("crashed the analyser:
SIGSEGV") and the run goes on.

Kill-safety: a staging file appears atomically (write + rename) and a warehouse write is one
transaction, so ``kill -9`` at any point leaves either nothing or a whole file; the next run skips what
is done and reuses staging files that were finished but not yet written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from prefect import flow, get_run_logger, task
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.text import printable
from pipeline import Config

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- options and summary
#: Files named per list (failed, failed before, skipped) in the printed summary.
SUMMARY_MAX_LISTED = 50


@dataclass
class IngestSummary:
    run_id: str
    status: str
    files_ok: int = 0
    files_failed: int = 0
    files_skipped: int = 0
    files_unchanged: int = 0
    files_copied: int = 0
    chunks: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    files_failed_before: int = 0
    """Files that failed in an earlier run because of their content and are unchanged: not retried."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed_before: list[tuple[str, str]] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    """emotion, emotion_trained, whisper: the models the run used."""
    root: str = ""
    """The folder the run ingested (absolute), recorded even when every file was unchanged."""

    @property
    def realtime_factor(self) -> float:
        """Audio seconds analysed per wall-clock second (× real time)."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def lines(self, max_listed: int = SUMMARY_MAX_LISTED) -> list[str]:
        """The summary as printable lines. File names and reasons are escaped (``printable``): a newline
        or a terminal escape in a name cannot forge or hide a line. Each list names at most
        ``max_listed`` files (the rest are in the files table)."""
        out = [
            f"run {self.run_id}: {self.status}",
            f"files: {self.files_ok} ok, {self.files_failed} failed, {self.files_skipped} skipped, "
            f"{self.files_unchanged} unchanged, {self.files_copied} copied from identical content",
            f"chunks: {self.chunks}   audio: {self.audio_s / 3600:.4f} h ({self.audio_s:.1f} s)   "
            f"wall: {self.wall_s:.1f} s   speed: {self.realtime_factor:.2f}× real time",
        ]
        if self.models:
            m = self.models
            trained = "" if m.get("emotion_trained", True) else " (UNTRAINED: scores are not emotions)"
            out.append(f"models: emotion {printable(m.get('emotion'))}{trained}, "
                       f"whisper {printable(m.get('whisper') or 'none')}")
        if self.files_failed_before:
            out.append(f"{self.files_failed_before} file(s) failed in an earlier run and are unchanged: "
                       "not retried (--retry-failed retries them)")
        for label, rows in (("failed", self.failures), ("failed before", self.failed_before),
                            ("skipped", self.skipped)):
            out += [f"  {label}: {printable(p)}: {printable(why)}" for p, why in rows[:max_listed]]
            if len(rows) > max_listed:
                out.append(f"  ... and {len(rows) - max_listed} more {label} (see the files table)")
        return out


# ----------------------------------------------------------------------------- discovery
#: Extensions that make a file audio by name: if it then cannot be decoded it is 'failed', not 'skipped'.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".bwf", ".rf64", ".w64", ".flac", ".mp3", ".mp2", ".ogg", ".oga", ".opus", ".spx",
    ".m4a", ".m4b", ".aac", ".mp4", ".webm", ".weba", ".mka", ".wma", ".aif", ".aiff", ".aifc", ".caf",
    ".amr", ".3gp", ".au", ".snd", ".ac3", ".ape", ".wv"})
#: Leading bytes of audio containers: a file without an audio extension that starts like this but does
#: not probe as audio is damaged audio ('failed'), not some other kind of file ('skipped').
_AUDIO_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"ID3", b"OggS", b"FORM", b"caff", b"\x1aE\xdf\xa3", b"#!AMR",
                b".snd", b"MAC ", b"wvpk")


@dataclass
class Discovered:
    audio: list[Path]
    skipped: list[tuple[Path, str]]
    failed: list[tuple[Path, str, str]] = field(default_factory=list)
    """(path, reason, error_type): audio-looking files found broken while discovering."""


def _looks_like_audio(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp"


def discover(root: Path, config: Config | None = None) -> Discovered:
    """Walk ``root`` (sorted, hidden entries skipped with a reason).

    A file with an audio extension is audio (decoding tells later whether it is good). Any other file is
    probed by content, in a child process when ``config.decode_isolation`` (a crash while probing fails
    that file): audio is audio, a broken file that starts like an audio container is failed, anything
    else is skipped as 'not audio: <reason>'. A folder that cannot be read is failed ('unreadable').
    """
    from pipeline import AudioError, probe_audio
    from pipeline.isolate import probe_isolated

    config = config or Config()
    audio: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    failed: list[tuple[Path, str, str]] = []
    to_probe: list[Path] = []

    def unreadable(err: OSError) -> None:
        failed.append((Path(err.filename or root), f"cannot read folder: {err.strerror or err}", "unreadable"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        hidden_dirs = [d for d in dirnames if d.startswith(".")]
        for d in hidden_dirs:
            skipped.append((Path(dirpath) / d, "hidden folder (not searched)"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith("."):
                skipped.append((path, "hidden file"))
            elif path.suffix.lower() in AUDIO_EXTENSIONS:
                audio.append(path)
            else:
                to_probe.append(path)
    if to_probe:
        if config.decode_isolation:
            results = probe_isolated(to_probe, timeout_s=min(60.0, config.decode_timeout_s))
        else:
            results = ((str(p), _probe_or_error(probe_audio, p)) for p in to_probe)
        for name, outcome in results:
            path = Path(name)
            if not isinstance(outcome, AudioError):
                audio.append(path)
            elif outcome.kind in ("crashed", "timeout", "unreadable") or _looks_like_audio(path):
                failed.append((path, outcome.reason, outcome.kind))
            else:
                skipped.append((path, f"not audio: {outcome.reason}"))
    audio.sort()
    return Discovered(audio, skipped, failed)


def _probe_or_error(probe, path: Path):
    from pipeline import AudioError

    try:
        return probe(path)
    except AudioError as exc:
        return exc


# ----------------------------------------------------------------------------- staging
def staging_dir(config: Config) -> Path:
    d = config.data_path / "staging"
    d.mkdir(parents=True, exist_ok=True)
    return d


def staging_path(config: Config, sha256: str, settings_key: str) -> Path:
    return staging_dir(config) / f"{sha256}-{settings_key}.pkl"


def _write_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- tasks
TRANSIENT = (MemoryError, TimeoutError, OSError)


@task(name="analyze-file", retries=Config.retries, retry_delay_seconds=[2, 10],  # per run: config.retries
      retry_condition_fn=lambda task, run, state: _is_transient(state))
def analyze_file_task(path: str, sha256: str, config_json: str, stage: str) -> dict:
    """Analyse one file and leave its result in ``stage`` (a path). Returns a small status dict.

    Bad audio is not an error of the run: it comes back as
    ``{"status": "failed", "error": reason, "error_type": kind}`` (``pipeline.types.AUDIO_ERROR_KINDS``).
    Transient errors (out of memory, I/O) raise, and Prefect retries them with backoff.
    """
    from pipeline import AudioError, get_analyzer

    log = get_run_logger()
    stage_p = Path(stage)
    if stage_p.exists():  # finished by an earlier, killed run
        log.info("%s: reusing staged result", path)
        return {"status": "ok", "stage": stage}
    config = Config().replace(**_config_from_json(config_json))
    t0 = time.perf_counter()
    try:
        result = get_analyzer(config).analyze_file(path)
    except AudioError as exc:
        log.warning("%s: failed (%s): %s", path, exc.kind, exc.reason)
        return {"status": "failed", "error": exc.reason, "error_type": exc.kind}
    _write_atomic(stage_p, result)
    took = time.perf_counter() - t0
    log.info("%s: %d chunks, %.1f s audio in %.1f s (%.1f× real time)", path, len(result.chunks),
             result.duration_s, took, result.duration_s / took if took else 0.0)
    return {"status": "ok", "stage": stage}


def _is_transient(state) -> bool:
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:
        return False
    return False


def _config_from_json(config_json: str) -> dict:
    import json

    data = json.loads(config_json)
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}


# ----------------------------------------------------------------------------- the flow
@contextlib.contextmanager
def corpus_lock(config: Config, root: Path, db: str) -> Iterator[bool]:
    """Never two runs of one corpus into one database at once: an exclusive, non-blocking file lock."""
    key = hashlib.sha256(f"{root.resolve()}|{Path(db).resolve()}".encode()).hexdigest()[:16]
    lock_dir = config.data_path / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{key}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@flow(name="emotivoice-ingest")
def ingest_flow(root: str, config_json: str, progress: bool = False) -> dict:
    """Ingest one folder into the warehouse named in the configuration (``db``)."""
    import warehouse

    from flows.schedule import die_with_scheduler

    log = get_run_logger()
    die_with_scheduler()  # a scheduled run's process never outlives `emotivoice schedule`
    config = Config().replace(**_config_from_json(config_json))
    root_p = Path(root)
    t_start = time.perf_counter()
    store = warehouse.Warehouse(config.db)
    run_id = store.start_run(config_json)
    summary = IngestSummary(run_id=run_id, status="running", root=str(root_p.resolve()))
    try:
        with corpus_lock(config, root_p, config.db) as got:
            if not got:
                summary.status = "skipped"
                summary.failures.append((root, "another run of this corpus is in progress"))
                log.warning("%s: another run of this corpus is in progress; nothing done", root)
                return asdict(summary)
            from warehouse.connection import patient_writes  # a busy database: wait and say so, never give up

            with patient_writes(lambda msg: log.warning("%s; analysed files stay staged in %s until stored",
                                                        msg, staging_dir(config))):
                _run(store, config, config_json, root_p, summary, log, progress)
        summary.status = "completed"
    except BaseException as exc:
        summary.status = "interrupted" if _is_interruption(exc) else "failed"
        raise
    finally:
        summary.wall_s = time.perf_counter() - t_start
        store.finish_run(run_id, summary.status, n_files=summary.files_ok + summary.files_copied,
                         n_failed=summary.files_failed, n_skipped=summary.files_skipped, summary=asdict(summary))
    return asdict(summary)


def _is_interruption(exc: BaseException) -> bool:
    """A signal stopped the run (Ctrl-C, SIGTERM via ``flows.lifecycle``, Prefect's termination of a
    served flow run): it ends 'interrupted', not 'failed'."""
    from prefect.exceptions import ExternalSignal

    return isinstance(exc, (KeyboardInterrupt, SystemExit, ExternalSignal))


def _run(store, config: Config, config_json: str, root: Path, summary: IngestSummary, log, progress: bool) -> None:
    from pipeline import AudioError, file_sha256, get_analyzer, settings_key

    found = discover(root, config)
    for path, reason in found.skipped:
        store.write_skipped(str(path), reason, run_id=summary.run_id)
        summary.files_skipped += 1
        summary.skipped.append((str(path), reason))
    analyzer = get_analyzer(config)
    settings = analyzer.settings()  # loads the models once, here, before any task
    skey = settings_key(settings)
    info = analyzer.model_info()
    summary.models = {"emotion": info.emotion, "emotion_trained": bool(info.emotion_trained),
                      "whisper": info.whisper}

    def failed(path: str, sha: str | None, reason: str, kind: str) -> None:
        store.write_failed(path, sha, reason, run_id=summary.run_id, error_type=kind)
        summary.failures.append((path, reason))
        summary.files_failed += 1

    def hash_or_fail(path: str) -> str | None:
        try:
            return file_sha256(path)
        except AudioError as exc:
            failed(path, None, exc.reason, exc.kind)
            return None

    def failed_before(path: str, sha: str) -> bool:
        if config.retry_failed:
            return False
        prev = store.failed_before(path, sha)
        if prev is not None:
            summary.files_failed_before += 1
            summary.failed_before.append((path, prev[0]))
        return prev is not None

    for path, reason, kind in found.failed:  # broken while discovering (a probe crashed, a folder unreadable)
        sha = None
        if kind != "unreadable":
            try:
                sha = file_sha256(path)
            except AudioError:
                pass
        if sha is None or not failed_before(str(path), sha):
            failed(str(path), sha, reason, kind)

    todo: dict[str, list[str]] = {}  # sha256 -> paths needing results
    for path in found.audio:
        sha = hash_or_fail(str(path))
        if sha is None:
            continue
        if store.already_done(str(path), sha, skey):
            summary.files_unchanged += 1
            continue
        if failed_before(str(path), sha):
            continue
        src = store.find_reusable(sha, skey)
        if src is not None:
            store.copy_file_results(src, str(path), run_id=summary.run_id)
            summary.files_copied += 1
            log.info("%s: same content as an analysed file; results copied", path)
            continue
        todo.setdefault(sha, []).append(str(path))

    bar = _progress_bar(len(todo), progress)
    futures = {}
    analyze = analyze_file_task.with_options(retries=max(0, config.retries))  # transient errors only
    for sha, paths in todo.items():
        fut = analyze.submit(paths[0], sha, config_json, str(staging_path(config, sha, skey)))
        futures[fut] = (sha, paths)
    for fut in as_completed(list(futures)):
        sha, paths = futures[fut]
        try:
            out = fut.result()
        except Exception as exc:  # retries exhausted: a plain reason, the run goes on
            out = _failure_of(exc)
        if out["status"] == "ok":
            with open(out["stage"], "rb") as fh:
                result = pickle.load(fh)
            first = store.write_result(paths[0], sha, result, settings_key=skey, run_id=summary.run_id)
            for other in paths[1:]:
                store.copy_file_results(first, other, run_id=summary.run_id)
            Path(out["stage"]).unlink(missing_ok=True)
            summary.files_ok += 1
            summary.files_copied += len(paths) - 1
            summary.chunks += len(result.chunks) * len(paths)
            summary.audio_s += result.duration_s
        else:
            for p in paths:
                failed(p, sha, out["error"], out.get("error_type") or "crashed")
        if bar is not None:
            bar.update(1)
            wall = max(1e-9, bar.format_dict["elapsed"])
            bar.set_postfix_str(f"{summary.audio_s / 3600:.3f} h audio, {summary.audio_s / wall:.2f}× rt")
    if bar is not None:
        bar.close()


def _failure_of(exc: BaseException) -> dict:
    """A task that raised (after its retries): the failed outcome, with a reason and an error_type."""
    if isinstance(exc, TimeoutError):
        return {"status": "failed", "error": f"timed out: {exc}", "error_type": "timeout"}
    if isinstance(exc, MemoryError):
        return {"status": "failed", "error": "crashed the analyser: out of memory", "error_type": "crashed"}
    if isinstance(exc, OSError):
        return {"status": "failed", "error": f"cannot read: {exc.strerror or exc}", "error_type": "unreadable"}
    return {"status": "failed", "error": f"crashed the analyser: {type(exc).__name__}: {' '.join(str(exc).split())}",
            "error_type": "crashed"}


def _progress_bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="ingest", dynamic_ncols=True)


# ----------------------------------------------------------------------------- entry point
def ingest_folder(root: str | os.PathLike, db: str | None = None, options: Config | None = None, *,
                  workers: int | None = None, task_runner: Any = None, progress: bool = False) -> IngestSummary:
    """Run the ingestion flow on ``root`` into ``db`` (default: the configuration's database).

    Against the configured Prefect API; without one, against a local server started for the call and
    stopped after it, which the kernel stops too if this process dies (``flows.server``).

    Args:
        root: folder of recordings (searched recursively).
        db: DuckDB file; default ``options.db``.
        options: the pipeline configuration (models, chunking, explanation tier, ...).
        workers: concurrent per-file tasks (threads in this process); default ``options.workers``.
        task_runner: a Prefect task runner to use instead (e.g. ``prefect_dask.DaskTaskRunner``).
        progress: show a progress bar on stderr.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    from pipeline import load_config

    config = options or load_config()
    if db is not None:
        config = config.replace(db=str(db))
    root_p = Path(root)
    if not root_p.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    n = workers or config.workers
    runner = task_runner or ThreadPoolTaskRunner(max_workers=max(1, n))
    from flows.server import prefect_api

    with prefect_api(config):  # the configured Prefect API, else a server of ours that dies with us
        result = ingest_flow.with_options(task_runner=runner)(str(root_p), config.to_json(), progress=progress)
    return IngestSummary(**result)
