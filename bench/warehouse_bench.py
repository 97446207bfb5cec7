"""Warehouse benchmark: bulk insert, dashboard aggregation over a million chunks, write lock hold time.

    python -m bench.warehouse_bench [--chunks 100000] [--big-chunks 1000000] [--dir DIR] [--tiny]

Every figure is printed next to a baseline measured in the same run:
  1. inserting N chunks with their emotion rows through the warehouse's Arrow path, vs a plain
     ``executemany`` of the same rows (per-row cost, baseline measured on a subset because it is slow);
     plus the per-file cost of ``Warehouse.write_result`` (open, lock, transaction, close per file);
  2. ``queries.emotion_mix`` by folder and by hour over a synthesized database of ``--big-chunks``
     chunks, vs one full scan of the emotions table (``count(*), avg(score)``);
  3. how long a write holds the database lock (what readers wait), for a typical file of 20 chunks
     with explanations, on the big database and on a small one, vs an empty write (open + close).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pipeline.types import BASE_EMOTIONS


def _fake_results(n_chunks: int, chunks_per_file: int, *, seed: int = 0, trained: bool = False):
    from warehouse.synth import fake_file_result

    results = []
    n_files = max(1, n_chunks // chunks_per_file)
    for i in range(n_files):
        r = fake_file_result(seed + i, f"/bench/folder_{i % 10}/clip_{i:06d}.wav", n_chunks=chunks_per_file,
                             explain=False, trained=trained)
        for ch in r.chunks:  # chunks with their emotions only
            ch.features, ch.words = {}, []
        results.append(r)
    return results


def bench_insert(workdir: Path, n_chunks: int, chunks_per_file: int = 100, baseline_chunks: int = 300,
                 api_files: int = 50) -> dict:
    """Arrow-path bulk insert vs executemany (per emotion/chunk row) and per-file write_result."""
    from warehouse import Warehouse
    from warehouse.connection import write_connection
    from warehouse.inserts import insert_prepared, prepare_result, transaction

    results = _fake_results(n_chunks, chunks_per_file)
    db = workdir / "insert.duckdb"
    t0 = time.perf_counter()
    prepared = [prepare_result(r.file, f"sha-{i}", r) for i, r in enumerate(results)]
    t_prepare = time.perf_counter() - t0
    t0 = time.perf_counter()
    with write_connection(db) as con:
        with transaction(con):  # one transaction, one insert per table (Warehouse.write_results)
            insert_prepared(con, prepared)
        counts = con.execute("SELECT (SELECT count(*) FROM chunks), (SELECT count(*) FROM emotions)").fetchall()[0]
    t_insert = time.perf_counter() - t0
    rows = int(counts[0]) + int(counts[1])

    # Baseline: executemany of the same kind of rows (chunks + emotions) into the same schema.
    base_db = workdir / "baseline.duckdb"
    sub = _fake_results(baseline_chunks, min(chunks_per_file, baseline_chunks), seed=10_000)
    chunk_rows, emo_rows = [], []
    cid = 0
    for r in sub:
        for ch in r.chunks:
            cid += 1
            chunk_rows.append((cid, 1, ch.idx, ch.start_s, ch.end_s, ch.transcript, ch.language, ch.dominant))
            emo_rows += [(cid, "base", e, ch.base[e]) for e in BASE_EMOTIONS]
            emo_rows += [(cid, "granular", g.name, g.confidence) for g in ch.granular]
            emo_rows += [(cid, "complex", c.name, c.confidence) for c in ch.complex]
    with write_connection(base_db) as con:
        t0 = time.perf_counter()
        con.begin()
        con.executemany("INSERT INTO chunks (chunk_id, file_id, idx, start_s, end_s, transcript, language, "
                        "dominant) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", chunk_rows)
        con.executemany("INSERT INTO emotions (chunk_id, kind, label, score) VALUES (?, ?, ?, ?)", emo_rows)
        con.commit()
        t_base = time.perf_counter() - t0
    base_rows = len(chunk_rows) + len(emo_rows)

    # Per-file writes through the public API (open + lock + transaction + checkpoint on close each).
    n_api = max(1, min(len(results), api_files))
    store = Warehouse(workdir / "api.duckdb")
    store.start_run("{}")  # creates the schema outside the timing
    t0 = time.perf_counter()
    for i, r in enumerate(results[:n_api]):
        store.write_result(r.file, f"sha-{i}", r)
    t_api = (time.perf_counter() - t0) / n_api

    per_row = t_insert / rows
    per_row_base = t_base / base_rows
    return {
        "chunks": int(counts[0]), "emotion_rows": int(counts[1]), "prepare_s": t_prepare, "insert_s": t_insert,
        "rows_per_s": rows / t_insert, "baseline_rows": base_rows, "baseline_rows_per_s": base_rows / t_base,
        "speedup_vs_executemany": per_row_base / per_row, "api_file_s": t_api,
        "api_chunks_per_file": chunks_per_file, "bulk_file_s": t_insert / len(prepared),
    }


def bench_aggregate(workdir: Path, n_chunks: int, repeats: int = 3) -> tuple[dict, Path]:
    """emotion_mix by folder / by hour over a synthesized database vs a full scan of emotions."""
    from warehouse import queries, read_df
    from warehouse.synth import synthesize_database

    db = workdir / "big.duckdb"
    stats = synthesize_database(db, n_chunks)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_scan = best(lambda: read_df("SELECT count(*), avg(score) FROM emotions", db=db))
    t_folder = best(lambda: queries.emotion_mix("folder", include_untrained=True, db=db))
    t_hour = best(lambda: queries.emotion_mix("hour", include_untrained=True, db=db))
    return {"chunks": stats.chunks, "emotion_rows": stats.emotion_rows, "synth_s": stats.seconds,
            "scan_s": t_scan, "folder_s": t_folder, "hour_s": t_hour}, db


def bench_lock_hold(db: Path, small_db: Path, repeats: int = 5) -> dict:
    """Median lock hold of one typical file write (20 chunks, explanations) vs an empty write."""
    from warehouse import Warehouse
    from warehouse.connection import recent_lock_holds, write_connection
    from warehouse.synth import fake_file_result

    out = {}
    for name, target in (("big", db), ("small", small_db)):
        store = Warehouse(target)
        with write_connection(target):  # schema exists before timing
            pass
        empty, full, replace = [], [], []
        for i in range(repeats):
            with write_connection(target):
                pass
            empty.append(recent_lock_holds("write")[-1].hold_s)
            r = fake_file_result(500 + i, f"/bench/hold/clip_{i}.wav", n_chunks=20)
            store.write_result(r.file, f"hold-{i}", r)
            full.append(recent_lock_holds("write")[-1].hold_s)
            r2 = fake_file_result(900 + i, r.file, n_chunks=20)
            store.write_result(r2.file, f"hold-new-{i}", r2)  # new content at a known path
            replace.append(recent_lock_holds("write")[-1].hold_s)
        out[name] = {"empty_s": statistics.median(empty), "write_s": statistics.median(full),
                     "replace_s": statistics.median(replace)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.warehouse_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks for the bulk insert (default 100000)")
    parser.add_argument("--big-chunks", type=int, default=1_000_000,
                        help="chunks in the synthesized database (default 1000000)")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed after)")
    parser.add_argument("--tiny", action="store_true", help="smoke-test sizes (seconds, numbers meaningless)")
    args = parser.parse_args(argv)
    n_insert, n_big = (1_000, 10_000) if args.tiny else (args.chunks, args.big_chunks)

    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="emotivoice-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"warehouse bench in {workdir}")
        ins = bench_insert(workdir, n_insert, baseline_chunks=50 if args.tiny else 300, api_files=3 if args.tiny else 50)
        print(f"\n1. bulk insert: {ins['chunks']} chunks + {ins['emotion_rows']} emotion rows "
              f"(files of {ins['api_chunks_per_file']} chunks, one transaction)")
        print(f"   arrow path:     {ins['insert_s']:8.2f} s  {ins['rows_per_s']:>12,.0f} rows/s  "
              f"(+ {ins['prepare_s']:.2f} s building rows, outside the lock)")
        print(f"   executemany:    baseline {ins['baseline_rows']} rows  {ins['baseline_rows_per_s']:>12,.0f} rows/s")
        print(f"   ratio:          {ins['speedup_vs_executemany']:8.1f}x faster per row than executemany")
        print(f"   write_result:   {ins['api_file_s'] * 1000:8.1f} ms per file of {ins['api_chunks_per_file']} "
              f"chunks through the public API\n"
              f"                   (open + lock + own transaction + commit + checkpoint + close per file; "
              f"= {ins['api_file_s'] / ins['bulk_file_s']:.1f}x the bulk cost per file)")

        agg, big_db = bench_aggregate(workdir, n_big)
        print(f"\n2. dashboard aggregation over {agg['chunks']:,} chunks / {agg['emotion_rows']:,} emotion rows "
              f"(synthesized in {agg['synth_s']:.1f} s)")
        print(f"   full scan of emotions (baseline): {agg['scan_s'] * 1000:8.1f} ms")
        for key, label in (("folder_s", "emotion mix by folder"), ("hour_s", "emotion mix by hour")):
            print(f"   {label:<31} {agg[key] * 1000:8.1f} ms  = {agg[key] / agg['scan_s']:5.1f}x the scan, "
                  f"{agg[key] / agg['chunks'] * 1e9:6.0f} ns per chunk (open + query + close)")

        small_db = workdir / "small.duckdb"
        hold = bench_lock_hold(big_db, small_db, repeats=1 if args.tiny else 5)
        print("\n3. write lock hold time (median; what a reader waits at worst), file of 20 chunks with explanations")
        for name, h in hold.items():
            size = f"{agg['chunks']:,}-chunk" if name == "big" else "empty"
            print(f"   {size:>16} db: empty write {h['empty_s'] * 1000:7.1f} ms (baseline)   "
                  f"write {h['write_s'] * 1000:7.1f} ms = {h['write_s'] / h['empty_s']:4.1f}x   "
                  f"replace {h['replace_s'] * 1000:7.1f} ms = {h['replace_s'] / h['empty_s']:4.1f}x")
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
