"""Threads against a Dask cluster on the same files, cold and warm: when does a cluster pay?

`python -m bench.cluster_bench [--files 24] [--model compact] [--whisper none] [--workers 2]`

Four runs of the same clips (RAVDESS; ../shared when present, else tests/data), each into its own database:

- threads, cold: ``ingest --workers N`` in a fresh process (Prefect's local server, model loading included);
- threads, warm: the same process again (models loaded);
- ``local:N``, cold: a Dask LocalCluster of N worker processes started by the run (each loads the models);
- ``tcp://`` warm: an already-running cluster of N workers whose models were loaded by a previous run.

Each row prints files/s and × real time, and its ratio against threads-warm measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _clips(n: int) -> list[Path]:
    from tests.fixtures_datasets import SHARED

    base = SHARED / "ravdess" if (SHARED / "ravdess").is_dir() else ROOT / "tests" / "data" / "ravdess"
    clips = sorted(base.glob("Actor_*/*.flac")) or sorted(base.glob("Actor_*/*.wav"))
    return clips[:n]


def _corpus(tmp: Path, name: str, clips: list[Path]) -> Path:
    root = tmp / name
    root.mkdir()
    for c in clips:
        shutil.copy(c, root / f"{c.parent.name}-{c.name}")
    return root


def _row(label: str, summary, wall: float, base: float | None) -> float:
    rate = summary.files_ok / wall
    ratio = f"{rate / base:.2f}x" if base else "baseline"
    print(f"{label:<28} {summary.files_ok:>4} files {summary.audio_s:7.1f} s audio {wall:7.1f} s wall "
          f"{rate:6.2f} files/s {summary.audio_s / wall:6.2f}x real time   vs threads warm: {ratio}", flush=True)
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_bench")
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="compact")
    parser.add_argument("--whisper", default="none")
    parser.add_argument("--quick", action="store_true", help="8 files")
    args = parser.parse_args(argv)
    n = 8 if args.quick else args.files
    tmp = Path(tempfile.mkdtemp(prefix="ev-cluster-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from distributed import LocalCluster

    from flows.ingest import ingest_folder
    from flows.server import prefect_api
    from pipeline.config import Config

    clips = _clips(n)
    cfg = Config().replace(emotion_model=args.model, whisper_model=args.whisper, explain="fast",
                           data_dir=str(tmp / "data"))
    w = args.workers
    print(f"{len(clips)} clips, emotion {args.model}, whisper {args.whisper}, {w} workers, "
          f"{os.cpu_count()} cores", flush=True)
    results: dict[str, tuple] = {}
    try:
        with prefect_api(cfg):  # one Prefect server for every row: its start is not what is compared
            def run(label: str, **over):
                root = _corpus(tmp, "run%d" % len(results), clips)
                t0 = time.perf_counter()
                s = ingest_folder(root, options=cfg.replace(db=str(tmp / f"{root.name}.duckdb"), **over),
                                  workers=w)
                results[label] = (s, time.perf_counter() - t0)

            run("threads cold")
            run("threads warm")
            run(f"local:{w} cold", cluster=f"local:{w}")
            with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
                run(f"tcp:// ({w} workers) first", cluster=lc.scheduler_address)
                run(f"tcp:// ({w} workers) warm", cluster=lc.scheduler_address)
        base = results["threads warm"][0].files_ok / results["threads warm"][1]
        for label, (s, wall) in results.items():
            _row(label, s, wall, None if label == "threads warm" else base)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
