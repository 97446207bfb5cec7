"""How one file's results become rows: Arrow tables prepared outside the database lock, inserted in the
caller's transaction (``insert_prepared``), plus the small value helpers the writes share.

``warehouse.store.Warehouse`` is the only caller that opens the database; ``warehouse.rows`` is the way
back (rows into objects).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa

# The one settings hash (the flow keys its work by it too); aliased: write parameters are named settings_key.
from pipeline.analyze import settings_key as _key_of
from pipeline.types import BASE_EMOTIONS, ChunkResult, FileResult
from warehouse.schema import CHUNK_TABLES, folder_of, utc_now

logger = logging.getLogger(__name__)

SOURCES = ("batch", "live")


def normalize_path(path: str | os.PathLike) -> str:
    """How paths are stored and compared: absolute, without resolving symlinks; URLs unchanged."""
    text = os.fspath(path)
    return text if "://" in text else os.path.abspath(text)


def _first(rows: list) -> Any:
    """First row of a fully fetched result, or None. (Results are always fetched to the end: DuckDB 2
    refuses new work on a connection with an unfinished result.)"""
    return rows[0] if rows else None


def _num(value: Any) -> float | None:
    """A finite float, or None (NaN/inf/None become SQL NULL, never a fake number)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _mtime_utc(path: str) -> _dt.datetime | None:
    try:
        ts = os.stat(path).st_mtime
    except OSError:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).replace(tzinfo=None)


# ----------------------------------------------------------------------------- Arrow row sets
# Column types of the rows a FileResult produces; ``pos`` is the chunk's position in the result,
# replaced by its chunk_id once ids are allocated under the lock.
_SCHEMAS: dict[str, pa.Schema] = {
    "chunks": pa.schema([("pos", pa.int32()), ("idx", pa.int32()), ("start_s", pa.float64()),
                         ("end_s", pa.float64()), ("transcript", pa.string()), ("language", pa.string()),
                         ("language_probability", pa.float64()), ("dominant", pa.string()),
                         ("dominant_score", pa.float64()), ("speaker", pa.string())]),
    "emotions": pa.schema([("pos", pa.int32()), ("kind", pa.string()), ("label", pa.string()),
                           ("score", pa.float64()), ("granular_kind", pa.string())]),
    "features": pa.schema([("pos", pa.int32()), ("name", pa.string()), ("value", pa.float64())]),
    "words": pa.schema([("pos", pa.int32()), ("idx", pa.int32()), ("word", pa.string()),
                        ("start_s", pa.float64()), ("end_s", pa.float64()), ("probability", pa.float64())]),
    "explanations": pa.schema([
        ("pos", pa.int32()), ("target_label", pa.string()), ("tier", pa.string()),
        ("shap_method", pa.string()), ("shap_base_value", pa.float64()), ("shap_full_value", pa.float64()),
        ("shap_features_method", pa.string()), ("surrogate_r2", pa.float64()), ("lime_method", pa.string()),
        ("lime_score", pa.float64()), ("faithfulness", pa.map_(pa.string(), pa.float64())),
        ("attention_layers", pa.int32()), ("attention_n", pa.int32()), ("attention_note", pa.string())]),
    "shap": pa.schema([("pos", pa.int32()), ("target_label", pa.string()), ("feature", pa.string()),
                       ("value", pa.float64()), ("method", pa.string()), ("kind", pa.string()),
                       ("segment", pa.int32()), ("start_s", pa.float64()), ("end_s", pa.float64())]),
    "lime": pa.schema([("pos", pa.int32()), ("target_label", pa.string()), ("segment", pa.int32()),
                       ("start_s", pa.float64()), ("end_s", pa.float64()), ("weight", pa.float64()),
                       ("method", pa.string()), ("score", pa.float64())]),
    "attention": pa.schema([("pos", pa.int32()), ("layer", pa.int32()), ("n", pa.int32()),
                            ("data", pa.list_(pa.float32()))]),
}


class _Rows:
    """Column lists for one table, turned into an Arrow table at the end."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.cols: dict[str, list] = {n: [] for n in schema.names}

    def add(self, *values: Any) -> None:
        for name, value in zip(self.schema.names, values, strict=True):
            self.cols[name].append(value)

    def table(self) -> pa.Table:
        return pa.table({n: pa.array(v, type=self.schema.field(n).type) for n, v in self.cols.items()},
                        schema=self.schema)


def _chunk_rows(pos: int, ch: ChunkResult, rows: dict[str, _Rows]) -> None:
    present = [(e, _num(ch.base.get(e))) for e in BASE_EMOTIONS]
    dom_score = _num(ch.base.get(ch.dominant)) if ch.dominant else None
    rows["chunks"].add(pos, ch.idx, float(ch.start_s), float(ch.end_s), ch.transcript, ch.language,
                       _num(ch.language_probability), ch.dominant, dom_score, ch.speaker)
    emo = rows["emotions"]
    for label, score in present:  # absent labels: a row with NULL score (never 0)
        emo.add(pos, "base", label, score, None)
    for label, score in ch.extra.items():
        emo.add(pos, "extra", str(label), _num(score), None)
    for g in ch.granular:
        emo.add(pos, "granular", g.name, _num(g.confidence), g.kind)
    for c in ch.complex:
        emo.add(pos, "complex", c.name, _num(c.confidence), None)
    for name, value in ch.features.items():
        rows["features"].add(pos, str(name), _num(value))
    for i, w in enumerate(ch.words):
        rows["words"].add(pos, i, w.word, _num(w.start_s), _num(w.end_s), _num(w.probability))
    ex = ch.explanation
    if ex is None:
        return
    att = None if ex.attention is None else np.asarray(ex.attention, dtype=np.float32)
    roll = None if ex.attention_rollout is None else np.asarray(ex.attention_rollout, dtype=np.float32)
    if att is not None and att.ndim == 2:
        att = att[None]
    n_side = att.shape[-1] if att is not None else (roll.shape[-1] if roll is not None else None)
    faith = None
    if ex.faithfulness is not None:
        faith = [(str(k), _num(v)) for k, v in ex.faithfulness.items()]
    rows["explanations"].add(
        pos, ex.target_label, ex.tier, ex.shap_method, _num(ex.shap_base_value), _num(ex.shap_full_value),
        ex.shap_features_method, _num(ex.surrogate_r2), ex.lime_method, _num(ex.lime_score), faith,
        None if att is None else int(att.shape[0]), n_side, ex.attention_note)
    for s in ex.shap_segments:
        rows["shap"].add(pos, ex.target_label, f"segment:{s.segment}", _num(s.value), ex.shap_method,
                         "segment", int(s.segment), _num(s.start_s), _num(s.end_s))
    for name, value in ex.shap_features.items():
        rows["shap"].add(pos, ex.target_label, str(name), _num(value), ex.shap_features_method,
                         "acoustic", None, None, None)
    for s in ex.lime_segments:
        rows["lime"].add(pos, ex.target_label, int(s.segment), _num(s.start_s), _num(s.end_s),
                         _num(s.value), ex.lime_method, _num(ex.lime_score))
    if att is not None:
        for layer in range(att.shape[0]):
            rows["attention"].add(pos, layer, int(att.shape[-1]), att[layer].ravel())
    if roll is not None:
        rows["attention"].add(pos, -1, int(roll.shape[-1]), roll.ravel())


def result_tables(result: FileResult) -> dict[str, pa.Table]:
    """The child rows of one FileResult as Arrow tables keyed by table name (``pos`` = chunk position)."""
    rows = {name: _Rows(schema) for name, schema in _SCHEMAS.items()}
    for pos, ch in enumerate(result.chunks):
        _chunk_rows(pos, ch, rows)
    return {name: r.table() for name, r in rows.items()}


def _insert_arrow(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    if data.num_rows == 0:
        return
    cols = ", ".join(data.column_names)
    view = f"_ins_{table}"
    con.register(view, data)
    try:
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view}")
    finally:
        con.unregister(view)


def _with_chunk_ids(data: pa.Table, ids: np.ndarray) -> pa.Table:
    pos = data.column("pos").to_numpy()
    out = data.drop_columns(["pos"])
    return out.add_column(0, "chunk_id", pa.array(ids[pos], type=pa.int64()))


def _next_ids(con: duckdb.DuckDBPyConnection, sequence: str, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    got = con.execute(f"SELECT nextval('{sequence}') FROM range(?)", [n]).fetchnumpy()
    return np.asarray(next(iter(got.values())), dtype=np.int64)


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.begin()
    try:
        yield
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _delete_paths(con: duckdb.DuckDBPyConnection, paths: str | Sequence[str]) -> int:
    """Delete every row stored for ``paths``; returns how many file rows went."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        return 0
    ids = [int(r[0]) for r in con.execute(
        "SELECT file_id FROM files WHERE list_contains(?, path)", [paths]).fetchall()]
    if not ids:
        return 0
    id_list = ", ".join(map(str, ids))
    lo, hi = con.execute(
        f"SELECT min(chunk_id), max(chunk_id) FROM chunks WHERE file_id IN ({id_list})").fetchall()[0]
    if lo is not None:
        # The constant range lets DuckDB skip row groups by their min/max (ids of a file are allocated
        # together), so a replacement does not scan the whole emotions table.
        for table in CHUNK_TABLES:
            con.execute(f"DELETE FROM {table} WHERE chunk_id BETWEEN {int(lo)} AND {int(hi)} "
                        f"AND chunk_id IN (SELECT chunk_id FROM chunks WHERE file_id IN ({id_list}))")
        con.execute(f"DELETE FROM chunks WHERE file_id IN ({id_list})")
    con.execute(f"DELETE FROM files WHERE file_id IN ({id_list})")
    return len(ids)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()]


_FILES_SCHEMA = pa.schema([
    ("file_id", pa.int64()), ("path", pa.string()), ("sha256", pa.string()), ("duration_s", pa.float64()),
    ("sample_rate", pa.int32()), ("channels", pa.int32()), ("status", pa.string()), ("error", pa.string()),
    ("run_id", pa.int64()), ("emotion_model", pa.string()), ("whisper_model", pa.string()),
    ("folder", pa.string()), ("source", pa.string()), ("emotion_trained", pa.bool_()),
    ("settings_key", pa.string()), ("settings", pa.string()), ("ingested_at", pa.timestamp("us")),
    ("recorded_at", pa.timestamp("us")), ("notes", pa.list_(pa.string())),
    ("emotion_labels", pa.list_(pa.string())), ("absent_labels", pa.list_(pa.string())),
    ("error_type", pa.string()), ("n_chunks", pa.int32()), ("reused_from", pa.int64()),
    ("size_bytes", pa.int64()), ("stamp", pa.string())])

#: What ``write_results(stats=...)`` and ``update_file_stats`` take per path: (size_bytes, stamp).
FileStats = tuple[int | None, str | None]


def _insert_files(con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert file rows (missing columns NULL, ``ingested_at`` now unless given)."""
    now = utc_now()
    unknown = {k for r in rows for k in r} - set(_FILES_SCHEMA.names)
    if unknown:
        raise ValueError(f"unknown files column(s): {', '.join(sorted(unknown))}")
    table = pa.Table.from_pylist([{"ingested_at": now, **r} for r in rows], schema=_FILES_SCHEMA)
    _insert_arrow(con, "files", table)


@dataclass(frozen=True)
class PreparedFile:
    """One FileResult turned into rows, ready to insert (built without touching the database)."""

    path: str
    sha256: str
    settings_key: str
    file_values: dict[str, Any]
    tables: dict[str, pa.Table]

    @property
    def n_chunks(self) -> int:
        return self.tables["chunks"].num_rows


def prepare_result(path: str | os.PathLike | None, sha256: str, result: FileResult, *,
                   settings_key: str | None = None, run_id: int | None = None, source: str = "batch",
                   recorded_at: _dt.datetime | None = None, size_bytes: int | None = None,
                   stamp: str | None = None) -> PreparedFile:
    """The rows of ``result`` as Arrow tables plus the file row (see ``Warehouse.write_result``)."""
    if source not in SOURCES:
        raise ValueError(f"file source must be one of {SOURCES}, not {source!r}")
    stored_path = normalize_path(path if path is not None else result.file)
    key = settings_key or _key_of(result.settings)
    file_values = {
        "path": stored_path, "sha256": sha256, "duration_s": _num(result.duration_s),
        "sample_rate": int(result.sample_rate), "channels": int(result.channels), "status": "ok",
        "run_id": run_id, "emotion_model": result.models.emotion, "whisper_model": result.models.whisper,
        "folder": folder_of(stored_path), "source": source,
        "emotion_trained": bool(result.models.emotion_trained), "settings_key": key,
        "settings": json.dumps(result.settings, sort_keys=True, default=str),
        "recorded_at": recorded_at if recorded_at is not None else _mtime_utc(stored_path),
        "notes": [str(n) for n in result.notes],
        "emotion_labels": [str(x) for x in result.models.emotion_labels],
        "absent_labels": [str(x) for x in result.models.absent_labels],
        "n_chunks": len(result.chunks), "size_bytes": size_bytes, "stamp": stamp,
    }
    return PreparedFile(stored_path, sha256, key, file_values, result_tables(result))


def insert_prepared(con: duckdb.DuckDBPyConnection, prepared: PreparedFile | Sequence[PreparedFile]
                    ) -> tuple[int, str] | list[tuple[int, str]]:
    """Insert prepared files inside the caller's transaction; returns (file_id, action) per file
    (a single tuple when given a single PreparedFile).

    ``action`` is 'unchanged' (same path, content and settings already stored: only the file's
    size_bytes/stamp are updated, when given), 'replaced' (earlier rows of the path deleted first) or
    'inserted'. Each table gets one insert for the whole batch.
    """
    single = isinstance(prepared, PreparedFile)
    batch: list[PreparedFile] = [prepared] if single else list(prepared)
    paths = [p.path for p in batch]
    if len(set(paths)) != len(paths):
        dup = sorted({p for p in paths if paths.count(p) > 1})
        raise ValueError(f"the same path twice in one batch: {', '.join(dup[:3])}")
    keys = pa.table({"path": paths, "sha256": [p.sha256 for p in batch],
                     "settings_key": [p.settings_key for p in batch]})
    con.register("_batch_keys", keys)
    try:
        unchanged = dict(con.execute(
            "SELECT k.path, f.file_id FROM _batch_keys k JOIN files f ON f.path = k.path "
            "AND f.sha256 = k.sha256 AND f.settings_key = k.settings_key AND f.status = 'ok'").fetchall())
    finally:
        con.unregister("_batch_keys")
    _set_file_stats(con, {p.path: (p.file_values["size_bytes"], p.file_values["stamp"])
                          for p in batch if p.path in unchanged})
    todo = [p for p in batch if p.path not in unchanged]
    known = {r[0] for r in con.execute("SELECT DISTINCT path FROM files WHERE list_contains(?, path)",
                                       [[p.path for p in todo]]).fetchall()} if todo else set()
    _delete_paths(con, [p.path for p in todo])
    file_ids = _next_ids(con, "file_id_seq", len(todo))
    counts = [p.n_chunks for p in todo]
    chunk_ids = _next_ids(con, "chunk_id_seq", sum(counts))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    _insert_files(con, [{"file_id": int(fid), **p.file_values} for fid, p in zip(file_ids, todo)])
    for name in ("chunks",) + CHUNK_TABLES:
        parts = []
        for k, p in enumerate(todo):
            part = _with_chunk_ids(p.tables[name], chunk_ids[offsets[k]:offsets[k + 1]])
            if name == "chunks":
                part = part.add_column(1, "file_id", pa.array(np.full(part.num_rows, file_ids[k]), type=pa.int64()))
            if part.num_rows:
                parts.append(part)
        if parts:
            _insert_arrow(con, name, pa.concat_tables(parts))
    done = {p.path: (int(fid), "replaced" if p.path in known else "inserted") for fid, p in zip(file_ids, todo)}
    out = [(int(unchanged[p.path]), "unchanged") if p.path in unchanged else done[p.path] for p in batch]
    return out[0] if single else out


def _set_file_stats(con: duckdb.DuckDBPyConnection, stats: Mapping[str, FileStats]) -> int:
    """Set size_bytes/stamp on the rows of the given (normalised) paths, inside the caller's
    transaction; entries whose size and stamp are both None are left alone. Returns rows updated."""
    given = {path: st for path, st in stats.items() if st[0] is not None or st[1] is not None}
    if not given:
        return 0
    data = pa.table({"path": pa.array(list(given), pa.string()),
                     "size_bytes": pa.array([st[0] for st in given.values()], pa.int64()),
                     "stamp": pa.array([st[1] for st in given.values()], pa.string())})
    con.register("_file_stats", data)
    try:
        rows = con.execute("UPDATE files SET size_bytes = s.size_bytes, stamp = s.stamp FROM _file_stats s "
                           "WHERE files.path = s.path RETURNING files.file_id").fetchall()
    finally:
        con.unregister("_file_stats")
    return len(rows)
