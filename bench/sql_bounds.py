"""Hostile analyst queries through the real CLI: time, peak memory of the whole process tree, output size.

    python -m bench.sql_bounds [--db PATH]

Runs ``emotivoice sql`` (``python -m flows.cli sql``) on queries that used to run for minutes and take
14-17 GB, samples the resident memory of the command and all its children (``/proc``, every 20 ms)
and prints one line per query: exit code, wall seconds, peak tree RSS, bytes written to stdout and the
stderr line. The trust issue's bar: each stops within 60 s, under 3 GB, printing nothing large.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERIES = (
    "SELECT repeat('x', 2000000000)",
    "SELECT list(range) FROM range(1000000000)",
    "SELECT repeat('x', 1000000) AS s FROM range(100000)",
    "SELECT * FROM range(1000000000)",
)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _rss_kb(p)
        todo += _children(p)
    return total


def run(sql: str, db: Path) -> dict:
    cmd = [sys.executable, "-m", "flows.cli", "sql", sql, "--db", str(db)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0]
    out_bytes = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_kb(proc.pid))
            time.sleep(0.02)

    def drain() -> None:
        while chunk := proc.stdout.read(1 << 16):
            out_bytes[0] += len(chunk)

    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=drain, daemon=True)]
    for t in threads:
        t.start()
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.wait()
    for t in threads:
        t.join(timeout=5)
    return {"sql": sql, "rc": proc.returncode, "wall_s": time.monotonic() - t0, "peak_mb": peak[0] / 1024,
            "stdout_bytes": out_bytes[0], "stderr": err.strip().splitlines()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database to query (default: a fresh one in a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "bench.duckdb"
        if not args.db:
            from warehouse.connection import ensure_database

            ensure_database(db)
        for sql in QUERIES:
            r = run(sql, db)
            print(f"{r['sql']}\n  exit {r['rc']}  {r['wall_s']:.1f} s  peak tree RSS {r['peak_mb']:.0f} MB  "
                  f"stdout {r['stdout_bytes']} bytes  stderr {len(r['stderr'])} line(s): "
                  f"{r['stderr'][-1] if r['stderr'] else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
