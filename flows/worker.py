"""What runs where a file is analysed: a thread of the flow's process or a Dask worker.

``analyze_file_task`` (the Prefect task) analyses one file and *returns* its result, so a worker needs the
corpus but never the flow's data directory; ``worker_settings`` tells the flow, before a run, which models
and settings a worker would use. On a Dask worker the machine-local settings come from the worker's own
environment, and every file's start and end are logged at INFO on its stderr.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pipeline import Config


# ----------------------------------------------------------------------------- on the workers
#: Configuration fields that belong to the machine a task runs on, not to the run: a Dask worker takes
#: them from its own environment (EMOTIVOICE_DATA_DIR, ...), never from the flow's machine.
MACHINE_LOCAL = ("data_dir", "whisper_dir", "db", "corpus_roots")
worker_log = logging.getLogger("emotivoice.worker")


def _dask_worker():
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def worker_name() -> str:
    """The Dask worker's address, or host:pid when the task runs in the flow's own process."""
    w = _dask_worker()
    return w.address if w is not None else f"{socket.gethostname()}:{os.getpid()}"


def _worker_logger() -> logging.Logger:
    """On a Dask worker, every file's start and end go to the worker's stderr at INFO, so an operator sees
    where work runs; in the flow's own process the run's logger and progress bar say it already."""
    if _dask_worker() is not None and not worker_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s INFO emotivoice worker: %(message)s"))
        worker_log.addHandler(handler)
        worker_log.setLevel(logging.INFO)
        worker_log.propagate = False
    return worker_log


def task_config(config_json: str) -> Config:
    """The run's configuration as a task sees it: on a Dask worker the machine-local fields are the
    worker's own (``MACHINE_LOCAL``)."""
    config = Config().replace(**_config_from_json(config_json))
    if _dask_worker() is None:
        return config
    from pipeline import load_config

    here = load_config()
    return config.replace(**{k: getattr(here, k) for k in MACHINE_LOCAL})


def worker_settings(config_json: str) -> dict:
    """What this worker would analyse with: the settings key and model names (loads its models, which
    its tasks need anyway). The flow asks every worker before submitting anything."""
    from pipeline import get_analyzer, settings_key

    analyzer = get_analyzer(task_config(config_json))
    info = analyzer.model_info()
    return {"key": settings_key(analyzer.settings()), "worker": worker_name(),
            "models": {"emotion": info.emotion, "emotion_trained": bool(info.emotion_trained),
                       "whisper": info.whisper}}


# ----------------------------------------------------------------------------- tasks
TRANSIENT = (MemoryError, TimeoutError, OSError)


@task(name="analyze-file", retries=Config.retries, retry_delay_seconds=[2, 10],  # per run: config.retries
      retry_condition_fn=lambda task, run, state: _is_transient(state), persist_result=False,
      cache_policy=NO_CACHE)
def analyze_file_task(path: str, sha256: str | None, config_json: str) -> dict:
    """Analyse one file where the task runs and return the result itself (through Dask on a cluster):
    ``{"status": "ok", "result": FileResult, "sha256", "settings_key", "worker"}``. Workers never write
    files for the flow. A remote file (URL) is fetched to a temporary file and hashed here.

    Bad audio is not an error of the run: it comes back as
    ``{"status": "failed", "error": reason, "error_type": kind}`` (``pipeline.types.AUDIO_ERROR_KINDS``).
    Transient errors (out of memory, I/O) raise, and Prefect retries them with backoff.
    """
    from flows.discovery import local_copy
    from pipeline import AudioError, file_sha256, get_analyzer, settings_key

    log = _worker_logger()
    worker = worker_name()
    analyzer = get_analyzer(task_config(config_json))
    key = settings_key(analyzer.settings())
    log.info("start %s", path)
    t0 = time.perf_counter()
    try:
        with local_copy(path) as local:
            sha256 = sha256 or file_sha256(local)
            result = analyzer.analyze_file(local)
    except AudioError as exc:
        reason = exc.reason if _dask_worker() is None or exc.kind != "unreadable" else f"{exc.reason} (on worker {worker})"
        log.info("failed %s (%s): %s", path, exc.kind, reason)
        return {"status": "failed", "error": reason, "error_type": exc.kind, "sha256": sha256, "worker": worker}
    result.file = path
    took = time.perf_counter() - t0
    log.info("done %s: %d chunks, %.1f s audio in %.1f s", path, len(result.chunks), result.duration_s, took)
    return {"status": "ok", "result": result, "sha256": sha256, "settings_key": key, "worker": worker}


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
