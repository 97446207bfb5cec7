"""Prefect ingestion of audio folders: incremental, fault-isolated, kill-safe, ready to scale out.

Shape of a run (``ingest_folder``):

1. discover files under ``root`` (recursively; hidden entries and non-audio content are recorded as
   ``skipped`` with the reason; audio is recognised by content via ``pipeline.audio.probe_audio``);
2. hash each file; files the warehouse already has for these settings are skipped, content already
   analysed at another path is copied without running the models;
3. each remaining file is one Prefect task ``analyze_file_task`` (decode -> chunk -> emotions ->
   transcript -> features -> explanations) that writes its result to a *staging file* and returns only
   that path (tasks pass paths and ids, never arrays: Prefect persists task results);
4. the flow process is the single DuckDB writer: as tasks finish it loads each staging file and writes
   the file's rows in one transaction (with retry/backoff when the database is busy), then deletes it.

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

from pipeline.config import Config

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- options and summary
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

    @property
    def realtime_factor(self) -> float:
        """Audio seconds analysed per wall-clock second (× real time)."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def lines(self) -> list[str]:
        out = [
            f"run {self.run_id}: {self.status}",
            f"files: {self.files_ok} ok, {self.files_failed} failed, {self.files_skipped} skipped, "
            f"{self.files_unchanged} unchanged, {self.files_copied} copied from identical content",
            f"chunks: {self.chunks}   audio: {self.audio_s / 3600:.4f} h ({self.audio_s:.1f} s)   "
            f"wall: {self.wall_s:.1f} s   speed: {self.realtime_factor:.2f}× real time",
        ]
        out += [f"  failed: {p}: {why}" for p, why in self.failures]
        return out


# ----------------------------------------------------------------------------- discovery
@dataclass
class Discovered:
    audio: list[Path]
    skipped: list[tuple[Path, str]]


def discover(root: Path) -> Discovered:
    """Walk ``root``; audio is recognised by content. Hidden entries and non-audio are skipped with a reason."""
    from pipeline.audio import probe_audio
    from pipeline.types import AudioError

    audio: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        hidden_dirs = [d for d in dirnames if d.startswith(".")]
        for d in hidden_dirs:
            skipped.append((Path(dirpath) / d, "hidden folder (not searched)"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith("."):
                skipped.append((path, "hidden file"))
                continue
            try:
                probe_audio(path)
            except AudioError as exc:
                skipped.append((path, f"not audio: {exc.reason}"))
                continue
            audio.append(path)
    return Discovered(audio, skipped)


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


@task(name="analyze-file", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=lambda task, run, state: _is_transient(state))
def analyze_file_task(path: str, sha256: str, config_json: str, stage: str) -> dict:
    """Analyse one file and leave its result in ``stage`` (a path). Returns a small status dict.

    Bad audio is not an error of the run: it comes back as ``{"status": "failed", "error": reason}``.
    Transient errors (out of memory, I/O) raise, and Prefect retries them with backoff.
    """
    from pipeline.analyze import get_analyzer
    from pipeline.types import AudioError

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
        log.warning("%s: failed: %s", path, exc.reason)
        return {"status": "failed", "error": exc.reason}
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

    log = get_run_logger()
    config = Config().replace(**_config_from_json(config_json))
    root_p = Path(root)
    t_start = time.perf_counter()
    store = warehouse.Warehouse(config.db)
    run_id = store.start_run(config_json)
    summary = IngestSummary(run_id=run_id, status="running")
    try:
        with corpus_lock(config, root_p, config.db) as got:
            if not got:
                summary.status = "skipped"
                summary.failures.append((root, "another run of this corpus is in progress"))
                log.warning("%s: another run of this corpus is in progress; nothing done", root)
                return asdict(summary)
            _run(store, config, config_json, root_p, summary, log, progress)
        summary.status = "completed"
    except BaseException:
        summary.status = "failed"
        raise
    finally:
        summary.wall_s = time.perf_counter() - t_start
        store.finish_run(run_id, summary.status, n_files=summary.files_ok + summary.files_copied,
                         n_failed=summary.files_failed, summary=asdict(summary))
    return asdict(summary)


def _run(store, config: Config, config_json: str, root: Path, summary: IngestSummary, log, progress: bool) -> None:
    from pipeline.analyze import get_analyzer, settings_key
    from pipeline.audio import file_sha256

    found = discover(root)
    for path, reason in found.skipped:
        store.write_skipped(str(path), reason, run_id=summary.run_id)
        summary.files_skipped += 1
    settings = get_analyzer(config).settings()  # loads the models once, here, before any task
    skey = settings_key(settings)

    todo: dict[str, list[str]] = {}  # sha256 -> paths needing results
    for path in found.audio:
        sha = file_sha256(path)
        if store.already_done(str(path), sha, skey):
            summary.files_unchanged += 1
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
    for sha, paths in todo.items():
        fut = analyze_file_task.submit(paths[0], sha, config_json, str(staging_path(config, sha, skey)))
        futures[fut] = (sha, paths)
    for fut in as_completed(list(futures)):
        sha, paths = futures[fut]
        try:
            out = fut.result()
        except Exception as exc:  # retries exhausted: a plain reason, the run goes on
            out = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
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
                store.write_failed(p, sha, out["error"], run_id=summary.run_id)
                summary.failures.append((p, out["error"]))
            summary.files_failed += len(paths)
        if bar is not None:
            bar.update(1)
            wall = max(1e-9, bar.format_dict["elapsed"])
            bar.set_postfix_str(f"{summary.audio_s / 3600:.3f} h audio, {summary.audio_s / wall:.2f}× rt")
    if bar is not None:
        bar.close()


def _progress_bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="ingest", dynamic_ncols=True)


# ----------------------------------------------------------------------------- entry point
def ingest_folder(root: str | os.PathLike, db: str | None = None, options: Config | None = None, *,
                  workers: int | None = None, task_runner: Any = None, progress: bool = False) -> IngestSummary:
    """Run the ingestion flow on ``root`` into ``db`` (default: the configuration's database).

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
    from pipeline.config import load_config

    config = options or load_config()
    if db is not None:
        config = config.replace(db=str(db))
    root_p = Path(root)
    if not root_p.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    n = workers or config.workers
    runner = task_runner or ThreadPoolTaskRunner(max_workers=max(1, n))
    result = ingest_flow.with_options(task_runner=runner)(str(root_p), config.to_json(), progress=progress)
    return IngestSummary(**result)
