"""The child process that runs analyst SQL and exports (``warehouse.sandbox`` starts it).

Run as a script (``python -I warehouse/sandbox_child.py``), never imported by the parent: it imports
nothing of EmotiVoice, only ``duckdb`` and ``pyarrow``, so it starts in a fraction of a second.
Before it opens anything it caps its own address space (``RLIMIT_AS``), drops core dumps and asks
the kernel to kill it when its parent dies; DuckDB's ``memory_limit``, ``threads`` and no spilling
to disk are the first line of defence, the address-space cap the one that holds whatever DuckDB,
Arrow or Python allocate.

Protocol: the parent writes one pickled request to stdin. In ``query`` mode the result goes to
stdout as an Arrow IPC stream, fetched in batches and cut at ``max_rows`` rows or ``max_bytes``
bytes (Arrow buffer size), whichever comes first. ``export`` mode writes the tables' files. Either
way the last stderr line is ``EMOTIVOICE-SANDBOX <json>``: ``{"ok": true, ...}`` or
``{"ok": false, "kind": "sql"|"memory"|"io"|"other", "error": "..."}``.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import sys
import time

STATUS_PREFIX = "EMOTIVOICE-SANDBOX "
_MIB = 1 << 20


def _limit_self(memory_mb: int | None) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb:
        cap = int(memory_mb) * _MIB
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:  # die with the parent (Linux); a parent already gone is checked right after
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _status(**fields) -> None:
    sys.stderr.write(STATUS_PREFIX + json.dumps(fields, default=str) + "\n")
    sys.stderr.flush()


def _connect(req: dict):
    import duckdb

    config = dict(req["read_config"])
    config.update({"memory_limit": f"{int(req['duckdb_memory_mb'])}MB", "threads": str(int(req["threads"])),
                   "temp_directory": ""})  # no spilling: a query cannot fill the disk
    return duckdb.connect(req["db"], read_only=True, config=config)


def _kind(exc: BaseException) -> str:
    import duckdb

    text = str(exc)
    if isinstance(exc, (MemoryError, getattr(duckdb, "OutOfMemoryException", MemoryError))) \
            or "Out of Memory" in text or "bad allocation" in text or "std::bad_alloc" in text \
            or type(exc).__name__ == "ArrowMemoryError":
        return "memory"
    if isinstance(exc, OSError):
        return "io"
    if isinstance(exc, duckdb.Error):
        return "sql"
    return "other"


# ----------------------------------------------------------------------------- query
def _fit(batch, budget: int) -> int:
    """How many leading rows of ``batch`` fit in ``budget`` bytes (binary search on slice sizes)."""
    lo, hi = 0, batch.num_rows
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if batch.slice(0, mid).nbytes <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _query(req: dict) -> dict:
    import pyarrow as pa

    con = _connect(req)
    t0 = time.perf_counter()
    rel = con.sql(req["sql"], params=req.get("params") or None)
    if rel is None:
        return {"ok": True, "rows": 0, "truncated_by": None, "elapsed_s": time.perf_counter() - t0, "empty": True}
    reader = (getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader)(int(req["batch_rows"]))
    max_rows, max_bytes = req.get("max_rows"), req.get("max_bytes")
    rows = size = 0
    truncated_by = None
    out = sys.stdout.buffer
    with pa.ipc.new_stream(out, reader.schema) as writer:
        for batch in reader:
            if max_rows is not None and rows + batch.num_rows > max_rows:
                batch, truncated_by = batch.slice(0, max_rows - rows), "rows"
            if max_bytes is not None and size + batch.nbytes > max_bytes:
                batch, truncated_by = batch.slice(0, _fit(batch, max_bytes - size)), "bytes"
            if batch.num_rows:
                writer.write_batch(batch)
                rows += batch.num_rows
                size += batch.nbytes
            if truncated_by:
                break
    out.flush()
    return {"ok": True, "rows": rows, "bytes": size, "truncated_by": truncated_by,
            "elapsed_s": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- export
def _jsonable(value):
    import datetime as dt
    import decimal
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _write_table(reader, path: str, fmt: str) -> int:
    import pyarrow as pa

    n = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(path, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                n += batch.num_rows
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        with pcsv.CSVWriter(path, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                n += batch.num_rows
    else:
        maps = [f.name for f in reader.schema if pa.types.is_map(f.type)]
        with open(path, "w", encoding="utf-8") as fh:
            for batch in reader:
                for row in batch.to_pylist():
                    for m in maps:
                        if row[m] is not None:
                            row[m] = dict(row[m])
                    fh.write(json.dumps(_jsonable(row), ensure_ascii=False, allow_nan=False) + "\n")
                n += batch.num_rows
            fh.flush()
            os.fsync(fh.fileno())
    return n


def _export(req: dict) -> dict:
    con = _connect(req)
    con.execute(f"CREATE TEMP TABLE _export_files AS {req['selector']}")
    rows: dict[str, int] = {}
    for table, select, target, tmp in req["tables"]:
        rel = con.sql(select)
        reader = (getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader)(int(req["batch_rows"]))
        try:
            rows[table] = _write_table(reader, tmp, req["fmt"])
            os.replace(tmp, target)
        except OSError as exc:
            _remove(tmp)
            where = exc.filename or tmp
            raise OSError(exc.errno, f"cannot write {target}: {exc.strerror or exc}", where) from None
        except BaseException:
            _remove(tmp)
            raise
    return {"ok": True, "rows": rows}


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def main() -> int:
    req = pickle.load(sys.stdin.buffer)
    _limit_self(req.get("memory_mb"))
    if os.getppid() != req.get("parent_pid", os.getppid()):
        return 1  # the parent is gone already
    try:
        status = _query(req) if req["mode"] == "query" else _export(req)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as a reason
        kind = _kind(exc)
        text = exc.strerror if kind == "io" and getattr(exc, "strerror", None) else str(exc)
        if kind == "io" and "cannot write" not in text:
            text = f"{getattr(exc, 'filename', None) or 'a file'}: {text}"
        status = {"ok": False, "kind": kind, "error": text}
    _status(**status)
    return 0


if __name__ == "__main__":
    try:
        code = main()
    finally:
        try:
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - the parent stopped reading (it cut the result)
            pass
    os._exit(code)  # skip interpreter teardown (and DuckDB's checkpoint attempts): the work is done
