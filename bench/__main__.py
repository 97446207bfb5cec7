"""`python -m bench [--quick] [NAME ...]`: run the benchmarks, each printing ratios vs a same-run baseline.

Speed and memory targets live here, never in timed tests. Record results with the hardware in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

BENCHES = {
    "hubert": "bench.hubert_speed",
    "whisper": "bench.whisper_speed",
    "whisper_fw": "bench.whisper_fw",
    "dashboard": "bench.dashboard_overview",
    "explain": "bench.explain_cost",
    "warehouse": "bench.warehouse_bench",
    "ingest": "bench.ingest_throughput",
    "live": "bench.live_latency",
    "decode": "bench.decode_memory",
    "vad": "bench.vad_bench",
    "diarization": "bench.diarization_bench",
    "full": "bench.full_analysis",
    "words_in_chunks": "bench.transcript_attribution",
    "cluster": "bench.cluster_bench",
    "ingest_scale": "bench.ingest_scale",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and clips")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    import torch

    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"python {platform.python_version()}, torch {torch.__version__}")
    failed = 0
    for name in args.names or list(BENCHES):
        module_name = BENCHES[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            print(f"\n== {name}: not available ({exc})")
            continue
        print(f"\n== {name} ({module_name})", flush=True)
        t0 = time.perf_counter()
        try:
            module.main(["--quick"] if args.quick else [])
        except Exception as exc:  # one broken bench must not hide the others
            failed += 1
            print(f"!! {name} failed: {type(exc).__name__}: {exc}")
        print(f"-- {name} took {time.perf_counter() - t0:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
