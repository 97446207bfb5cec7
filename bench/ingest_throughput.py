"""Ingestion throughput by worker count: files/s and × real time, each vs 1 worker in the same run.

`python -m bench.ingest_throughput [--quick] [--files N] [--model compact|PATH]`. Uses RAVDESS clips from
../shared/datasets, the compact emotion model, no Whisper (set --whisper to include it), fast explanations,
Prefect's local mode in a temporary home.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "datasets" / "ravdess"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_throughput")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--model", default="compact")
    parser.add_argument("--whisper", default="none")
    args = parser.parse_args(argv)
    n = 8 if args.quick else args.files
    tmp = Path(tempfile.mkdtemp(prefix="ev-ingest-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.ingest import ingest_folder
    from pipeline.config import Config

    clips = sorted(RAVDESS.glob("Actor_*/*.flac"))[: n]
    base = None
    try:
        # Warm-up: Prefect's local server start and model loading are paid once, not by the first row.
        warm = tmp / "warm"
        warm.mkdir()
        shutil.copy(clips[0], warm / clips[0].name)
        ingest_folder(warm, options=Config().replace(emotion_model=args.model, whisper_model=args.whisper,
                                                     db=str(tmp / "warm.duckdb"), data_dir=str(tmp / "data")))
        for w in [int(x) for x in args.workers.split(",")]:
            root = tmp / f"corpus{w}"
            root.mkdir()
            for c in clips:
                shutil.copy(c, root / c.name)
            cfg = Config().replace(emotion_model=args.model, whisper_model=args.whisper, explain="fast",
                                   db=str(tmp / f"w{w}.duckdb"), data_dir=str(tmp / "data"))
            t0 = time.perf_counter()
            s = ingest_folder(root, options=cfg, workers=w)
            wall = time.perf_counter() - t0
            rate = s.files_ok / wall
            base = base or rate
            print(f"workers={w}: {s.files_ok} files, {s.audio_s:.0f} s audio in {wall:.1f} s wall "
                  f"(after warm-up) = {rate:.2f} files/s, {s.audio_s / wall:.2f}× real time, "
                  f"{rate / base:.2f}× vs 1 worker", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
