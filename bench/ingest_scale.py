"""Ingestion at corpus scale: the rerun pre-pass and the result writer, files/s vs today's per-file path.

    python -m bench.ingest_scale [--files 10000] [--sample 1000] [--write-files 2000] [--batch 100] [--dir DIR]

Every figure is printed next to a baseline measured in the same run:
  1. rerun of an unchanged folder of ``--files`` tiny real WAV files whose ok rows (with size and stamp)
     are stored: the per-file path of the flow before ``flows.prepass`` (``file_sha256`` +
     ``Warehouse.already_done``, which opens the database once per file) on ``--sample`` files, vs
     ``Prepass`` (one ``known_files`` query, then a stat and a dictionary look-up per file) on all of them,
     and vs the whole rerun through ``ingest_folder`` (discovery, the workers' settings, planning, run rows;
     its Prefect server started before the clock);
  2. writing results of one-chunk files: ``Warehouse.write_result`` per file (one transaction, commit and
     checkpoint each) on ``--sample // 5`` files, vs ``write_results`` with ``--batch`` files per
     transaction on ``--write-files`` files.
The baselines run on a sample because they are slow; their rate is files / seconds of that sample.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

KEY = "bench-settings"
SAMPLE_RATE_HZ = 16000


def make_folder(root: Path, n: int, seconds: float = 0.05) -> list[Path]:
    """``n`` distinct tiny WAV files in subfolders of 1000, their mtimes an hour back (a folder at rest)."""
    import os

    import soundfile as sf

    rng = np.random.default_rng(0)
    at_rest = time.time_ns() - 3600 * 10**9
    paths = []
    for i in range(n):
        path = root / f"part_{i // 1000:03d}" / f"clip_{i:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, rng.uniform(-0.5, 0.5, int(SAMPLE_RATE_HZ * seconds)).astype(np.float32),
                 SAMPLE_RATE_HZ, subtype="PCM_16")
        os.utime(path, ns=(at_rest, at_rest))
        paths.append(path)
    return paths


def _result(path: str):
    """A minimal synthetic result: one chunk with its emotions, no explanation."""
    from warehouse.synth import fake_file_result

    return fake_file_result(0, path, n_chunks=1, explain=False)


def store_ok_rows(store, paths: list[Path], key: str = KEY, batch: int = 1000) -> None:
    """An ok row (with size and stamp) for every path, as a finished earlier run leaves them."""
    from flows.prepass import stat_of
    from pipeline import file_sha256

    for lo in range(0, len(paths), batch):
        part = paths[lo:lo + batch]
        store.write_results([(str(p), file_sha256(p), _result(str(p))) for p in part], settings_key=key,
                            stats={str(p): stat_of(p) for p in part})


def _flow_config(workdir: Path):
    from pipeline.config import Config

    return Config().replace(emotion_model="compact", whisper_model="none", explain="none",
                            db=str(workdir / "rerun.duckdb"), data_dir=str(workdir / "data"))


def bench_rerun(workdir: Path, n_files: int, sample: int) -> dict:
    from flows.ingest import worker_settings
    from flows.prepass import Prepass, stat_of
    from pipeline import file_sha256
    from warehouse import Warehouse

    config = _flow_config(workdir)
    key = worker_settings(config.to_json())["key"]  # the key the flow will use: its rerun finds them all done
    folder = workdir / "corpus"
    t0 = time.perf_counter()
    paths = make_folder(folder, n_files)
    store = Warehouse(config.db)
    store_ok_rows(store, paths, key)
    setup_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    sampled = paths[:: max(1, len(paths) // sample)][:sample]
    for p in sampled:  # the flow's loop before the pre-pass, for an unchanged file
        assert store.already_done(str(p), file_sha256(p), key)
    base_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    prepass = Prepass(store, key, under=str(folder))
    kinds = [prepass.plan(str(p), *stat_of(p)).kind for p in paths]
    new_s = time.perf_counter() - t0
    assert kinds == ["unchanged"] * len(paths), "the pre-pass must find every file unchanged"
    flow_s = _flow_rerun(folder, config, len(paths))
    return {"setup_s": setup_s, "base_n": len(sampled), "base_s": base_s, "new_n": len(paths), "new_s": new_s,
            "flow_s": flow_s}


def _flow_rerun(folder: Path, config, n: int) -> float:
    """The whole rerun as ``emotivoice ingest`` does it (discovery, settings, pre-pass, run rows), against a
    Prefect server started beforehand (a command starts one once, ~5 s, whatever the folder's size)."""
    import os

    from flows.ingest import ingest_folder
    from flows.server import prefect_api

    os.environ.setdefault("PREFECT_HOME", str(Path(config.data_dir) / "prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    with prefect_api(config):
        t0 = time.perf_counter()
        summary = ingest_folder(folder, options=config)
        took = time.perf_counter() - t0
    assert (summary.status, summary.files_unchanged) == ("completed", n), summary.lines()
    return took


def bench_write(workdir: Path, n_base: int, n_files: int, batch: int) -> dict:
    from warehouse import Warehouse

    stats = (12_345, "1700000000000000000")
    base_store = Warehouse(workdir / "write_base.duckdb")
    base_store.start_run("{}")  # schema created outside the timing
    base_items = [(f"/bench/base/clip_{i:06d}.wav", f"sha-b{i}") for i in range(n_base)]
    base_results = [_result(p) for p, _ in base_items]
    t0 = time.perf_counter()
    for (path, sha), result in zip(base_items, base_results):
        base_store.write_result(path, sha, result, settings_key=KEY, size_bytes=stats[0], stamp=stats[1])
    base_s = time.perf_counter() - t0

    store = Warehouse(workdir / "write_batch.duckdb")
    store.start_run("{}")
    items = [(f"/bench/batch/clip_{i:06d}.wav", f"sha-{i}") for i in range(n_files)]
    results = [_result(p) for p, _ in items]
    t0 = time.perf_counter()
    for lo in range(0, n_files, batch):
        part = list(zip(items[lo:lo + batch], results[lo:lo + batch]))
        store.write_results([(path, sha, r) for (path, sha), r in part], settings_key=KEY,
                            stats={path: stats for (path, _), _ in part})
    new_s = time.perf_counter() - t0
    stored = store.read_df("SELECT count(*) AS n FROM files WHERE stamp IS NOT NULL").n[0]
    assert stored == n_files, f"{stored} of {n_files} batched files stored with their stats"
    return {"base_n": n_base, "base_s": base_s, "new_n": n_files, "new_s": new_s}


def _rows(label: str, fig: dict, base_label: str, new_label: str) -> list[str]:
    base_rate = fig["base_n"] / fig["base_s"]
    new_rate = fig["new_n"] / fig["new_s"]
    return [f"{label}: {base_label:<40} {fig['base_n']:>7} {fig['base_s']:9.2f} {base_rate:10.1f}   1.0x (baseline)",
            f"{label}: {new_label:<40} {fig['new_n']:>7} {fig['new_s']:9.2f} {new_rate:10.1f} "
            f"{new_rate / base_rate:6.1f}x"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files in the unchanged folder (default 10000)")
    parser.add_argument("--sample", type=int, default=1000,
                        help="files the per-file rerun baseline runs on (default 1000; the write baseline: a fifth)")
    parser.add_argument("--write-files", type=int, default=2000, help="files written in batches (default 2000)")
    parser.add_argument("--batch", type=int, default=100, help="files per write_results transaction (default 100)")
    parser.add_argument("--quick", action="store_true", help="1000 files, sample 200, 500 written")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.sample, args.write_files = 1000, 200, 500
    sample = max(1, min(args.sample, args.files))

    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="emotivoice-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rerun = bench_rerun(workdir, args.files, sample)
        write = bench_write(workdir, max(1, sample // 5), args.write_files, args.batch)
        print(f"ingest scale bench in {workdir} ({args.files} files of 0.05 s made and stored in "
              f"{rerun['setup_s']:.1f} s)")
        print(f"{'':<58} {'files':>7} {'seconds':>9} {'files/s':>10}   vs baseline")
        flow_fig = dict(rerun, new_s=rerun["flow_s"])
        for line in (_rows("rerun, unchanged", rerun, "file_sha256 + already_done per file",
                           "Prepass: known_files + stat + plan") +
                     _rows("rerun, unchanged", flow_fig, "file_sha256 + already_done per file",
                           "the whole flow: ingest_folder")[1:] +
                     _rows("write results   ", write, "write_result per file",
                           f"write_results, {args.batch} files per transaction")):
            print(line)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
