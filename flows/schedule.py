"""`emotivoice schedule`: serve a deployment that ingests new and changed files on a cron schedule.

Never two runs of one corpus at once, twice over: the deployment's concurrency limit is 1 with the
CANCEL_NEW strategy (a run that comes due while one is going is cancelled, not queued), and
``ingest_flow`` itself holds an exclusive lock per (corpus, database) so a manual
``emotivoice ingest`` of the same folder cannot overlap a scheduled run either.

Prefect's ephemeral (in-process) server cannot schedule runs, so without ``PREFECT_API_URL`` the command
starts a Prefect server of its own on 127.0.0.1 (port 4200 when free, else any free port; its database and
log under the data directory's ``prefect/``), prints the UI's address, and stops it on exit. With
``PREFECT_API_URL`` set it uses that server instead (e.g. one started by ``prefect server start``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline import Config

log = logging.getLogger(__name__)

#: Set for the flow-run processes of a served schedule: the pid of the `emotivoice schedule` command.
#: ``ingest_flow`` then asks the kernel to stop it when that process dies (``die_with_scheduler``).
DIE_WITH_ENV = "EMOTIVOICE_DIE_WITH"


def deployment_name(root: str | Path, db: str) -> str:
    """One deployment per corpus and database; ``root`` is a folder or a URL (``flows.discovery.resolve_root``)."""
    from flows.discovery import resolve_root

    root = resolve_root(os.fspath(root))
    key = hashlib.sha256(f"{root}|{Path(db).resolve()}".encode()).hexdigest()[:8]
    return f"ingest-{root.rstrip('/').rsplit('/', 1)[-1]}-{key}"


@contextmanager
def scheduling_server(config: Config, *, timeout_s: float | None = None) -> Iterator[str]:
    """The Prefect API URL to serve against: ``$PREFECT_API_URL``, else a ``prefect server start`` of our
    own on 127.0.0.1 (port 4200 when free), stopped on exit and by the kernel if we die
    (``flows.server``)."""
    from flows.server import prefect_api

    with prefect_api(config, kind="full", preferred_port=4200, timeout_s=timeout_s,
                     announce="Prefect server for the schedule") as url:
        yield url


def serve_schedule(root: str | Path, config: Config, *, cron: str) -> None:
    """Block, serving the scheduled ingestion of ``root`` until interrupted (Ctrl-C)."""
    from flows.discovery import resolve_root

    root_s = resolve_root(os.fspath(root))
    if (config.cluster or "").strip():
        from flows.ingest import task_runner_for

        task_runner_for(config)  # a bad cluster address: say so now, not at the first scheduled run
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except Exception as exc:  # pydantic validation error: say which option is wrong
        raise ValueError(f"--cron {cron!r} is not a valid cron expression") from exc
    from flows.lifecycle import stop_on_signals

    # SIGTERM, SIGINT and SIGHUP stop the command cleanly, the server last (flows.lifecycle)
    with stop_on_signals(config), scheduling_server(config) as url:
        _serve(root_s, config, cron=cron, api_url=url)


def _serve(root: str, config: Config, *, cron: str, api_url: str) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.ingest import ingest_flow

    # the flow-run processes the runner starts inherit these: the API, and who they die with
    overrides = {"PREFECT_API_URL": api_url, DIE_WITH_ENV: str(os.getpid())}
    previous = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            _serve_flow(ingest_flow, root, config, cron)
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def die_with_scheduler() -> bool:
    """In a flow-run process started by ``emotivoice schedule`` (its direct child): receive SIGTERM when
    that command dies, even by SIGKILL, so no scheduled run outlives it (Prefect's engine turns the
    signal into a termination; the run is closed as 'interrupted'). Returns whether it was set."""
    owner = os.environ.get(DIE_WITH_ENV, "")
    if not owner.isdigit() or os.getppid() != int(owner):
        return False
    from flows.server import set_parent_death_signal

    return set_parent_death_signal(parent=int(owner))


def _serve_flow(ingest_flow, root: str, config: Config, cron: str) -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    ingest_flow.serve(
        name=deployment_name(root, config.db),
        cron=cron,
        parameters={"root": root, "config_json": config.to_json(), "progress": False},
        global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"EmotiVoice ingestion of {root} into {config.db}",
    )
