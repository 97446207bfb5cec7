"""Prefect ingestion of audio folders: incremental, fault-isolated, kill-safe, on threads or a Dask cluster.

Shape of a run (``ingest_folder``):

1. ask every worker which settings it would analyse with (``worker_settings``: the workers load their
   models, the flow loads none); workers that disagree stop the run before anything is written;
2. discovery (``flows.discovery``: a local folder or an fsspec URL) streams into planning
   (``flows.prepass``): a file whose size and modification stamp match what the warehouse holds for
   these settings is unchanged without being read; others are hashed (remote ones on the worker), copied
   when identical content is stored, not retried when they failed before because of their content
   (``--retry-failed`` retries them), else submitted, a bounded window at a time, so the first file
   starts before the folder is fully listed;
3. each submitted file is one Prefect task ``analyze_file_task`` (decode -> chunk -> speakers ->
   emotions -> transcript -> features -> explanations) run by threads here or by Dask workers
   (``cluster``: 'local:N' or 'tcp://host:8786'); the task *returns* its result, so workers need the corpus
   but never the flow's data directory;
4. this process is the single DuckDB writer: each result is staged in its own data dir, written with
   others in one transaction every few seconds (``write_batch_files``, ``write_batch_s``), then unstaged, and its Dask
   future released, so a worker that dies later costs only the files it had in flight.

Crash isolation: decoding runs in a child process (``pipeline.isolate``), so a file that crashes the
decoder (SIGSEGV, abort, out of memory) or hangs it is one ``failed`` row ("crashed the analyser:
SIGSEGV") and the run goes on; a file that kills its Dask workers is failed once Dask gives up on it.

Kill-safety: a staging file appears atomically (write + rename) and a warehouse write is one
transaction, so ``kill -9`` at any point leaves either nothing or whole files; the next run skips what
is done and writes staged results that were finished but not yet stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import pickle
import queue
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from prefect import flow, get_run_logger
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


# ----------------------------------------------------------------------------- discovery (flows.discovery)
from flows.discovery import AUDIO_EXTENSIONS, Discovered, discover  # noqa: E402,F401  (the flow's vocabulary)


# ----------------------------------------------------------------------------- staging (the flow's side only)
def staging_dir(config: Config) -> Path:
    """Finished results the flow has received but not yet stored (its own data dir; workers never see it)."""
    d = config.data_path / "staging"
    d.mkdir(parents=True, exist_ok=True)
    return d


def staging_path(config: Config, sha256: str, settings_key: str) -> Path:
    return staging_dir(config) / f"{sha256}-{settings_key}.pkl"


def _write_atomic(path: Path, obj: Any) -> None:
    """Write + rename: a reader (the next run) sees a whole file or none. No fsync: this survives the
    process being killed (the page cache is the kernel's), which is what staging is for."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _load_staged(path: Path):
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception as exc:  # a damaged leftover: analyse again rather than fail the run
        logger.warning("%s: unreadable staged result (%s); analysing again", path, exc)
        path.unlink(missing_ok=True)
        return None


# ----------------------------------------------------------------------------- on the workers (flows.worker)
from flows.worker import _config_from_json, analyze_file_task, worker_settings  # noqa: E402


# ----------------------------------------------------------------------------- where tasks run
class ClusterError(RuntimeError):
    """The cluster cannot run this ingestion (unreachable, or its workers disagree): one-line reason."""


def task_runner_for(config: Config, workers: int | None = None):
    """The Prefect task runner ``config.cluster`` names: threads ('' ), a local Dask cluster ('local:N')
    or an existing Dask scheduler ('tcp://host:8786'), the latter two through prefect-dask."""
    cluster = (config.cluster or "").strip()
    if not cluster:
        return ThreadPoolTaskRunner(max_workers=max(1, workers or config.workers))
    from prefect_dask import DaskTaskRunner

    if cluster.startswith("local:"):
        n = cluster.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"cluster {cluster!r}: 'local:N' needs a number of workers N >= 1")
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": int(n), "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    if "://" not in cluster:
        raise ValueError(f"cluster {cluster!r}: expected 'local:N' or a scheduler address such as "
                         "'tcp://host:8786'")
    _check_reachable(cluster)
    return DaskTaskRunner(address=cluster)


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls") or not parts.hostname:
        return  # other transports: let Dask say
    try:
        socket.create_connection((parts.hostname, parts.port or 8786), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc.strerror or exc}") from None


def _settings_from_workers(runner, config_json: str) -> dict:
    """The settings every worker would analyse with; a cluster whose workers disagree (other weights
    installed, a model missing on one) stops the run here, before anything is written."""
    client = getattr(runner, "client", None) if type(runner).__name__ == "DaskTaskRunner" else None
    if client is None:
        return worker_settings(config_json)
    client.wait_for_workers(1, timeout=120)
    answers = client.run(worker_settings, config_json, on_error="return")
    errors = {w: a for w, a in answers.items() if isinstance(a, BaseException)}
    if errors:
        w, exc = next(iter(errors.items()))
        raise ClusterError(f"worker {w} cannot analyse: {' '.join(str(exc).split())}")
    keys = {a["key"]: a for a in answers.values()}
    if len(keys) > 1:
        desc = "; ".join(f"{a['worker']}: emotion {a['models']['emotion']}, whisper {a['models']['whisper']}"
                         for a in answers.values())
        raise ClusterError(f"the workers would analyse with different models or settings ({desc}); "
                           "install the same weights on every worker")
    return next(iter(keys.values()))


# ----------------------------------------------------------------------------- the flow
@contextlib.contextmanager
def corpus_lock(config: Config, root: str, db: str) -> Iterator[bool]:
    """Never two runs of one corpus into one database at once: an exclusive, non-blocking file lock."""
    key = hashlib.sha256(f"{root}|{Path(db).resolve()}".encode()).hexdigest()[:16]
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
    """Ingest one folder (or fsspec URL) into the warehouse named in the configuration (``db``)."""
    import warehouse

    from flows.discovery import resolve_root
    from flows.schedule import die_with_scheduler

    log = get_run_logger()
    die_with_scheduler()  # a scheduled run's process never outlives `emotivoice schedule`
    config = Config().replace(**_config_from_json(config_json))
    root = resolve_root(root)
    t_start = time.perf_counter()
    store = warehouse.Warehouse(config.db)
    run_id = store.start_run(config_json)
    summary = IngestSummary(run_id=run_id, status="running", root=root)
    try:
        with corpus_lock(config, root, config.db) as got:
            if not got:
                summary.status = "skipped"
                summary.failures.append((root, "another run of this corpus is in progress"))
                log.warning("%s: another run of this corpus is in progress; nothing done", root)
                return asdict(summary)
            from warehouse.connection import patient_writes  # a busy database: wait and say so, never give up

            with patient_writes(lambda msg: log.warning("%s; analysed files stay staged in %s until stored",
                                                        msg, staging_dir(config))):
                _run(store, config, config_json, root, summary, log, progress)
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


def _run(store, config: Config, config_json: str, root: str, summary: IngestSummary, log, progress: bool) -> None:
    from prefect.context import FlowRunContext

    if (config.cluster or "").strip():
        with task_runner_for(config) as runner:
            _Ingestion(store, config, config_json, root, summary, log, runner).run(progress)
    else:  # threads: the runner the flow was started with (``ingest_folder``'s workers or task_runner)
        _Ingestion(store, config, config_json, root, summary, log, FlowRunContext.get().task_runner).run(progress)


class _Ingestion:
    """One run's loop: discovery streams into planning and submission; results come back as they finish
    and are written in batches by this process, the single writer."""

    def __init__(self, store, config: Config, config_json: str, root: str, summary: IngestSummary, log, runner):
        self.store, self.config, self.config_json, self.root = store, config, config_json, root
        self.summary, self.log, self.runner = summary, log, runner
        self.pending: dict[Any, tuple[str, list[tuple[str, Any]]]] = {}  # future -> (key, [(path, found)])
        self.by_key: dict[str, list[tuple[str, Any]]] = {}  # content (or remote path) in flight -> paths
        self.written: dict[str, int] = {}  # sha256 -> file_id stored by this run
        self.batch: list[tuple[str, list[tuple[str, Any]], Any]] = []  # (sha, paths, result)
        self.batch_since = 0.0
        self.done: queue.Queue = queue.Queue()
        self.window = 1  # set once the workers are known (``run``)
        self.bar = None

    def _n_workers(self) -> int:
        client = getattr(self.runner, "_client", None)
        if client is not None:
            return len(client.scheduler_info().get("workers", {})) or 1
        return getattr(self.runner, "_max_workers", None) or self.config.workers

    # --- the loop
    def run(self, progress: bool) -> None:
        from flows.discovery import iter_discover
        from flows.prepass import Prepass

        agreed = _settings_from_workers(self.runner, self.config_json)
        self.skey = agreed["key"]
        self.summary.models = agreed["models"]
        self.window = 2 * max(1, self._n_workers()) + 2
        self.staged = {p.name.split("-", 1)[0]: p for p in staging_dir(self.config).glob(f"*-{self.skey}.pkl")}
        self.prepass = Prepass(self.store, self.skey, retry_failed=self.config.retry_failed, under=self.root)
        self.bar = _progress_bar(progress)
        self.analyze = analyze_file_task.with_options(retries=max(0, self.config.retries))  # transient only
        for found in iter_discover(self.root, self.config):
            self._take(found)
            while len(self.pending) >= self.window:
                self._collect(block=True)
            while self._collect(block=False):
                pass
            self._flush(due_only=True)
        while self.pending:
            self._collect(block=True)
        self._flush()
        if self.prepass.restamp:  # touched but unchanged: next time known by their stamps, not hashed
            self.store.update_file_stats(self.prepass.restamp)
        self._sweep_staging()
        if self.bar is not None:
            self.bar.close()

    def _take(self, found) -> None:
        s = self.summary
        if found.status == "skipped":
            self.store.write_skipped(found.path, found.reason, run_id=s.run_id)
            s.files_skipped += 1
            s.skipped.append((found.path, found.reason))
            return
        plan = self.prepass.plan(found.path, found.size_bytes, found.stamp)
        if plan.kind == "failed_before":
            s.files_failed_before += 1
            s.failed_before.append((found.path, plan.reason))
        elif found.status == "failed":  # broken while discovering (a probe crashed, a folder unreadable)
            self._failed(found.path, plan.sha256, found.reason, found.error_type, found)
        elif plan.kind == "failed":
            self._failed(found.path, None, plan.reason, plan.error_type, found)
        elif plan.kind == "unchanged":
            s.files_unchanged += 1
        elif plan.kind == "copy":
            self.store.copy_file_results(plan.source_file_id, found.path, run_id=s.run_id,
                                         size_bytes=plan.size_bytes, stamp=plan.stamp)
            s.files_copied += 1
            self.log.info("%s: same content as an analysed file; results copied", found.path)
        else:
            self._todo(found, plan.sha256)

    def _todo(self, found, sha: str | None) -> None:
        key = sha or f"path:{found.path}"
        if key in self.by_key:  # the same content is being analysed: store it for this path too
            self.by_key[key].append((found.path, found))
            return
        if sha is not None and sha in self.written:
            self._copy(self.written[sha], found)
            self.summary.files_copied += 1
            return
        staged = self.staged.pop(sha, None) if sha else None
        result = _load_staged(staged) if staged is not None else None
        if result is not None:  # finished by an earlier, killed run
            self.log.info("%s: reusing staged result", found.path)
            self._add(sha, [(found.path, found)], result, staged=True)
            return
        fut = self.runner.submit(self.analyze, parameters={"path": found.path, "sha256": sha,
                                                           "config_json": self.config_json})
        self.by_key[key] = [(found.path, found)]
        self.pending[fut] = (key, self.by_key[key])
        fut.add_done_callback(self.done.put)

    def _collect(self, *, block: bool) -> bool:
        """Take one finished task (waiting up to a second when ``block``); False when none was ready."""
        try:
            fut = self.done.get(timeout=1.0) if block else self.done.get_nowait()
        except queue.Empty:
            self._flush(due_only=True)
            return False
        key, paths = self.pending.pop(fut)
        del self.by_key[key]
        try:
            out = fut.result()
        except Exception as exc:  # retries exhausted, or the file killed its workers: a reason, the run goes on
            out = _failure_of(exc)
        finally:
            _release(fut)  # a result held by the flow is never recomputed when its worker dies later
        if out["status"] == "ok":
            if out["settings_key"] != self.skey:
                raise ClusterError(f"worker {out['worker']} analysed {paths[0][0]} with other models or settings "
                                   f"than the run's ({out['settings_key']} vs {self.skey}); install the same "
                                   "weights on every worker")
            self._add(out["sha256"], paths, out["result"])
        else:
            for path, found in paths:
                self._failed(path, out.get("sha256"), out["error"], out.get("error_type") or "crashed", found)
            self._tick()
        return True

    # --- writing
    def _add(self, sha: str, paths: list, result, *, staged: bool = False) -> None:
        if not staged:
            _write_atomic(staging_path(self.config, sha, self.skey), result)
        if not self.batch:
            self.batch_since = time.monotonic()
        self.batch.append((sha, paths, result))
        self._flush(due_only=True)

    def _flush(self, *, due_only: bool = False) -> None:
        if not self.batch or (due_only and len(self.batch) < self.config.write_batch_files
                              and time.monotonic() - self.batch_since < self.config.write_batch_s):
            return
        batch, self.batch = self.batch, []
        items = [(paths[0][0], sha, result) for sha, paths, result in batch]
        stats = {paths[0][0]: _stats(paths[0][1]) for _, paths, _ in batch}
        ids = self.store.write_results(items, settings_key=self.skey, run_id=self.summary.run_id, stats=stats)
        s = self.summary
        for file_id, (sha, paths, result) in zip(ids, batch):
            self.written[sha] = file_id
            for _, other in paths[1:]:
                self._copy(file_id, other)
            staging_path(self.config, sha, self.skey).unlink(missing_ok=True)
            s.files_ok += 1
            s.files_copied += len(paths) - 1
            s.chunks += len(result.chunks) * len(paths)
            s.audio_s += result.duration_s
            self._tick()

    def _copy(self, file_id: int, found) -> None:
        size, stamp = _stats(found)
        self.store.copy_file_results(file_id, found.path, run_id=self.summary.run_id, size_bytes=size, stamp=stamp)

    def _failed(self, path: str, sha: str | None, reason: str, kind: str, found=None) -> None:
        size, stamp = _stats(found)
        self.store.write_failed(path, sha, reason, run_id=self.summary.run_id, error_type=kind,
                                size_bytes=size, stamp=stamp)
        self.summary.failures.append((path, reason))
        self.summary.files_failed += 1

    def _sweep_staging(self) -> None:
        """Staged results no file of this run needed (the file changed or went away) and temporary files of
        killed writers: removed at the end of a completed run."""
        for leftover in self.staged.values():
            leftover.unlink(missing_ok=True)
        for tmp in staging_dir(self.config).glob("*.tmp*"):
            tmp.unlink(missing_ok=True)

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)
            wall = max(1e-9, self.bar.format_dict["elapsed"])
            self.bar.set_postfix_str(f"{self.summary.audio_s / 3600:.3f} h audio, "
                                     f"{self.summary.audio_s / wall:.2f}× rt")


def _stats(found) -> tuple[int | None, str | None]:
    return (getattr(found, "size_bytes", None), getattr(found, "stamp", None))


def _release(fut) -> None:
    wrapped = getattr(fut, "wrapped_future", None)
    release = getattr(wrapped, "release", None)
    if callable(release):
        release()


def _failure_of(exc: BaseException) -> dict:
    """A task that raised (after its retries): the failed outcome, with a reason and an error_type."""
    if type(exc).__name__ == "KilledWorker":
        return {"status": "failed", "error": "crashed the analyser: it killed every Dask worker that took it "
                "(allowed failures exhausted)", "error_type": "crashed"}
    if isinstance(exc, TimeoutError):
        return {"status": "failed", "error": f"timed out: {exc}", "error_type": "timeout"}
    if isinstance(exc, MemoryError):
        return {"status": "failed", "error": "crashed the analyser: out of memory", "error_type": "crashed"}
    if isinstance(exc, OSError):
        return {"status": "failed", "error": f"cannot read: {exc.strerror or exc}", "error_type": "unreadable"}
    return {"status": "failed", "error": f"crashed the analyser: {type(exc).__name__}: {' '.join(str(exc).split())}",
            "error_type": "crashed"}


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit="file", desc="ingest", dynamic_ncols=True)


# ----------------------------------------------------------------------------- entry point
def ingest_folder(root: str | os.PathLike, db: str | None = None, options: Config | None = None, *,
                  workers: int | None = None, task_runner: Any = None, progress: bool = False) -> IngestSummary:
    """Run the ingestion flow on ``root`` into ``db`` (default: the configuration's database).

    Against the configured Prefect API; without one, against a local server started for the call and
    stopped after it, which the kernel stops too if this process dies (``flows.server``).

    Args:
        root: folder of recordings (searched recursively; resolved to an absolute path) or an fsspec URL
            (``s3://bucket/prefix``) that the workers can read.
        db: DuckDB file; default ``options.db``.
        options: the pipeline configuration (models, chunking, explanation tier, ``cluster``, ...).
        workers: concurrent per-file tasks (threads in this process) when no cluster is configured;
            default ``options.workers``.
        task_runner: a Prefect task runner to use instead of threads (when ``options.cluster`` is empty).
        progress: show a progress bar on stderr.

    Raises:
        FileNotFoundError: ``root`` is not a folder (or the URL cannot be listed).
        ClusterError: the configured Dask scheduler cannot be reached.
        ValueError: ``cluster`` is not 'local:N' or a scheduler address.
    """
    from flows.discovery import resolve_root
    from pipeline import load_config

    config = options or load_config()
    if db is not None:
        config = config.replace(db=str(db))
    root_s = resolve_root(os.fspath(root))
    if (config.cluster or "").strip():
        task_runner_for(config)  # a bad address or an unreachable scheduler: say so before any run starts
        runner = ThreadPoolTaskRunner(max_workers=1)  # the files go to the cluster (``_run``)
    else:
        runner = task_runner or ThreadPoolTaskRunner(max_workers=max(1, workers or config.workers))
    from flows.server import prefect_api

    with prefect_api(config):  # the configured Prefect API, else a server of ours that dies with us
        result = ingest_flow.with_options(task_runner=runner)(root_s, config.to_json(), progress=progress)
    return IngestSummary(**result)
