"""`emotivoice schedule`: serve a deployment that ingests new and changed files on a cron schedule.

Never two runs of one corpus at once, twice over: the deployment's concurrency limit is 1 with the
CANCEL_NEW strategy (a run that comes due while one is going is cancelled, not queued), and
``ingest_flow`` itself holds an exclusive lock per (corpus, database) so a manual
``emotivoice ingest`` of the same folder cannot overlap a scheduled run either.

Runs are visible in the Prefect UI when the analyst runs a server:
``prefect server start --host 127.0.0.1`` then ``PREFECT_API_URL=http://127.0.0.1:4200/api
emotivoice schedule DIR --cron ...`` and open http://127.0.0.1:4200.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.config import Config


def deployment_name(root: str | Path, db: str) -> str:
    key = hashlib.sha256(f"{Path(root).resolve()}|{Path(db).resolve()}".encode()).hexdigest()[:8]
    return f"ingest-{Path(root).resolve().name}-{key}"


def serve_schedule(root: str | Path, config: Config, *, cron: str) -> None:
    """Block, serving the scheduled ingestion of ``root`` until interrupted (Ctrl-C)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from flows.ingest import ingest_flow

    root_p = Path(root)
    if not root_p.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    try:
        from prefect.client.schemas.schedules import CronSchedule

        CronSchedule(cron=cron)
    except Exception as exc:  # pydantic validation error: say which option is wrong
        raise ValueError(f"--cron {cron!r} is not a valid cron expression") from exc
    ingest_flow.serve(
        name=deployment_name(root_p, config.db),
        cron=cron,
        parameters={"root": str(root_p.resolve()), "config_json": config.to_json(), "progress": False},
        global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"EmotiVoice ingestion of {root_p.resolve()} into {config.db}",
    )
