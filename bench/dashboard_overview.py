"""How long the dashboard's Overview takes on a big warehouse (not part of the test suite).

Synthesizes a database with ``warehouse.synth.synthesize_database`` (default 1,000,000 chunks; the
synthetic model is marked trained so every aggregate runs) unless one is given, then renders the
Overview page through Streamlit's AppTest: once cold (empty caches), once warm (same warehouse
version: cached), and once with a filter (folder + minimum confidence; uncached aggregates). Also
times each query of ``dashboard.data`` (cached calls of the warehouse's named queries) alone, cold.

    python -m bench.dashboard_overview [--db PATH] [--chunks N]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="existing database to use (default: synthesize one in a temp folder)")
    parser.add_argument("--chunks", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    sys.path.insert(0, str(ROOT))
    tmp = None
    if args.db:
        db = Path(args.db)
    else:
        from warehouse.synth import synthesize_database

        tmp = tempfile.TemporaryDirectory(prefix="ev-bench-")
        db = Path(tmp.name) / "big.duckdb"
        t = time.perf_counter()
        stats = synthesize_database(db, args.chunks, trained=True)
        print(f"synthesized {stats.files:,} files, {stats.chunks:,} chunks in {time.perf_counter() - t:.1f} s")

    from dashboard import data
    from warehouse.filters import Filters, time_grain

    flt = Filters()
    opts = data.filter_options(str(db))
    queries = {
        "status": lambda: data.status(str(db)),
        "figures": lambda: data.figures(str(db), flt),
        "emotion_mix": lambda: data.emotion_mix(str(db), flt),
        "over_time": lambda: data.over_time(str(db), flt, time_grain(opts.date_min, opts.date_max)),
        "by_group folder": lambda: data.by_group(str(db), flt, "folder"),
        "by_group file": lambda: data.by_group(str(db), flt, "file"),
        "files_table": lambda: data.files_table(str(db), flt),
    }
    print("queries (cold, each alone):")
    for name, fn in queries.items():
        t = time.perf_counter()
        fn()
        print(f"  {name:<16} {time.perf_counter() - t:6.2f} s")
    data.clear_caches()

    from streamlit.testing.v1 import AppTest

    os.environ["EMOTIVOICE_DB"] = str(db)
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    t = time.perf_counter()
    at.run()
    cold = time.perf_counter() - t
    assert not at.exception, [e.value for e in at.exception]
    t = time.perf_counter()
    at.run()
    warm = time.perf_counter() - t
    at.multiselect(key="f_folders").select(opts.folders[0])
    at.slider(key="f_conf").set_value(0.5)
    t = time.perf_counter()
    at.run()
    filtered = time.perf_counter() - t
    charts = len(at.get("vega_lite_chart"))
    chunks = next(m.value for m in at.metric if m.label == "Chunks")
    print(f"Overview page: cold {cold:.2f} s, warm {warm:.2f} s, filtered (cold) {filtered:.2f} s "
          f"({charts} charts; filtered selection has {chunks} chunks)")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
