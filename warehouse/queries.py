"""Named read queries for the dashboard (trusted SQL through ``read_df``; same locking as every read).

Aggregates over emotions leave out results of untrained (random-weight) models unless
``include_untrained=True``: those outputs are not emotions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from warehouse.sql import read_df

DB = str | os.PathLike | None

#: Grouping expressions ``emotion_mix`` accepts (all over files f).
MIX_GROUPS = {
    "folder": "f.folder",
    "hour": "date_trunc('hour', coalesce(f.recorded_at, f.ingested_at))",
    "hour_of_day": "hour(coalesce(f.recorded_at, f.ingested_at))",
    "day": "CAST(coalesce(f.recorded_at, f.ingested_at) AS DATE)",
    "file": "f.path",
    "source": "f.source",
    "model": "f.emotion_model",
}


def emotion_mix(by: str = "folder", *, include_untrained: bool = False, db: DB = None) -> pd.DataFrame:
    """Emotion mix per group: one row per (group, base label).

    Columns: ``group``, ``label``, ``mean_score`` (mean probability over chunks where the model has the
    class; NULL when it never has it), ``dominant_chunks``, ``dominant_share`` (of the group's chunks),
    ``chunks`` (in the group).

    Args:
        by: one of ``MIX_GROUPS`` ('folder', 'hour', 'hour_of_day', 'day', 'file', 'source', 'model').
    """
    if by not in MIX_GROUPS:
        raise ValueError(f"emotion_mix by must be one of {', '.join(MIX_GROUPS)}, not {by!r}")
    trained = "" if include_untrained else "AND f.emotion_trained"
    sql = f"""
        WITH c AS (
            SELECT c.chunk_id, c.dominant, {MIX_GROUPS[by]} AS grp
            FROM chunks c JOIN files f USING (file_id)
            WHERE f.status = 'ok' {trained}),
        m AS (
            SELECT c.grp, e.label, avg(e.score) AS mean_score
            FROM c JOIN emotions e USING (chunk_id) WHERE e.kind = 'base' GROUP BY ALL),
        d AS (SELECT grp, dominant AS label, count(*) AS dominant_chunks FROM c
              WHERE dominant IS NOT NULL GROUP BY ALL),
        t AS (SELECT grp, count(*) AS chunks FROM c GROUP BY grp)
        SELECT m.grp AS "group", m.label, m.mean_score,
               coalesce(d.dominant_chunks, 0) AS dominant_chunks,
               coalesce(d.dominant_chunks, 0) / t.chunks AS dominant_share, t.chunks
        FROM m JOIN t USING (grp) LEFT JOIN d USING (grp, label)
        ORDER BY "group", m.label
    """
    return read_df(sql, db=db)


def runs(*, db: DB = None, limit: int = 100) -> pd.DataFrame:
    """The latest runs, newest first."""
    return read_df("SELECT * FROM runs ORDER BY run_id DESC LIMIT ?", [limit], db=db)


def files(*, status: str | None = None, db: DB = None, limit: int = 10_000) -> pd.DataFrame:
    """Files (newest first) with status, model, trained flag, chunks and error; ``status`` filters."""
    where = "WHERE status = ?" if status else ""
    params = ([status] if status else []) + [limit]
    return read_df(
        f"SELECT file_id, path, folder, status, error, source, emotion_model, emotion_trained, whisper_model, "
        f"duration_s, n_chunks, absent_labels, notes, ingested_at, recorded_at, run_id, reused_from "
        f"FROM files {where} ORDER BY ingested_at DESC, file_id DESC LIMIT ?", params, db=db)


def failures_by_reason(*, db: DB = None) -> pd.DataFrame:
    """Failed and skipped files grouped by status and reason."""
    return read_df(
        "SELECT status, error AS reason, count(*) AS files, min(path) AS example_path FROM files "
        "WHERE status IN ('failed', 'skipped') GROUP BY ALL ORDER BY files DESC", db=db)


def file_timeline(file_id: int, *, db: DB = None) -> pd.DataFrame:
    """One row per chunk of a file: times, dominant, transcript and one column per base emotion
    (NaN where the model lacks the class)."""
    from pipeline.types import BASE_EMOTIONS

    pivots = ", ".join(f"max(e.score) FILTER (WHERE e.label = '{b}') AS {b}" for b in BASE_EMOTIONS)
    return read_df(
        f"SELECT c.chunk_id, c.idx, c.start_s, c.end_s, c.dominant, c.dominant_score, c.transcript, "
        f"c.language, {pivots} FROM chunks c LEFT JOIN emotions e ON e.chunk_id = c.chunk_id AND e.kind = 'base' "
        f"WHERE c.file_id = ? GROUP BY ALL ORDER BY c.start_s", [file_id], db=db)


@dataclass
class ChunkExplanation:
    """Everything stored about one chunk's explanation."""

    chunk_id: int
    meta: pd.DataFrame
    """explanations rows (one per target label)."""
    shap: pd.DataFrame
    lime: pd.DataFrame
    attention: dict[int, np.ndarray] = field(default_factory=dict)
    """layer -> (n, n) map; layer -1 is the rollout."""


def chunk_explanation(chunk_id: int, *, db: DB = None) -> ChunkExplanation:
    """The explanation rows, Shapley values, LIME weights and attention maps of one chunk."""
    from warehouse.connection import read_connection

    with read_connection(db) as con:  # one open for the four reads
        meta = con.execute("SELECT * FROM explanations WHERE chunk_id = ?", [chunk_id]).df()
        shap = con.execute("SELECT * FROM shap WHERE chunk_id = ? ORDER BY kind DESC, segment, feature",
                           [chunk_id]).df()
        lime = con.execute("SELECT * FROM lime WHERE chunk_id = ? ORDER BY segment", [chunk_id]).df()
        att = con.execute("SELECT layer, n, data FROM attention WHERE chunk_id = ? ORDER BY layer", [chunk_id]).df()
    maps = {int(r.layer): np.asarray(r.data, dtype=np.float32).reshape(int(r.n), -1) for r in att.itertuples()}
    return ChunkExplanation(chunk_id, meta, shap, lime, maps)


def table_counts(*, db: DB = None) -> pd.DataFrame:
    """Rows per table."""
    from warehouse.schema import TABLES

    return read_df(" UNION ALL ".join(f"SELECT '{t}' AS table_name, count(*) AS rows FROM {t}" for t in TABLES),
                   db=db)
