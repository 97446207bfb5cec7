"""Named read queries (trusted SQL through ``read_df``; same locking as every read): the emotion mix,
runs and failures, a file's timeline, a chunk's explanation and the faithfulness summary, table counts.
The Overview's aggregates are in ``warehouse.queries_overview``, one file's and one chunk's rows in
``warehouse.queries_files``; stored rows become objects in ``warehouse.rows``.

Aggregates over emotions leave out results of untrained (random-weight) models unless
``include_untrained=True``: those outputs are not emotions.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from warehouse.filters import LABELS_SQL, Filters
from warehouse.rows import common_folder, faithfulness_of, missing, opt_str, run_summary
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


def emotion_mix(by: str | None = "folder", *, filters: Filters | None = None, include_untrained: bool = False,
                db: DB = None) -> pd.DataFrame:
    """Emotion mix of the chunks ``filters`` selects (default: every analysed file; results of untrained
    models left out unless ``include_untrained`` or ``filters.include_untrained``).

    With ``by=None``, one row per base label (``BASE_EMOTIONS`` order) over the whole selection: ``label``,
    ``dominant_chunks``, ``share`` (of the selection's chunks), ``mean_score`` (NaN when no selected chunk's
    model has the class: absent, not 0), ``present_chunks``.

    With ``by`` a group, one row per (group, base label): ``group``, ``label``, ``mean_score`` (mean
    probability over chunks where the model has the class; NULL when it never has it), ``dominant_chunks``,
    ``dominant_share`` (of the group's chunks), ``chunks`` (in the group).

    Args:
        by: None, or one of ``MIX_GROUPS`` ('folder', 'hour', 'hour_of_day', 'day', 'file', 'source', 'model').
    """
    if by is not None and by not in MIX_GROUPS:
        raise ValueError(f"emotion_mix by must be one of {', '.join(MIX_GROUPS)}, not {by!r}")
    filters = filters or Filters()
    if include_untrained:
        filters = replace(filters, include_untrained=True)
    sel, sp = filters.selection()
    if by is None:
        return read_df(f"""
            WITH sel AS (SELECT c.chunk_id, c.dominant {sel}),
                 d AS (SELECT dominant AS label, count(*) AS n FROM sel WHERE dominant IS NOT NULL GROUP BY 1),
                 m AS (SELECT e.label, avg(e.score) AS mean_score, count(e.score) AS present_chunks
                       FROM emotions e JOIN sel USING (chunk_id) WHERE e.kind = 'base' GROUP BY 1),
                 t AS (SELECT count(*) AS n FROM sel)
            SELECT l.label, coalesce(d.n, 0) AS dominant_chunks, coalesce(d.n, 0) / nullif(t.n, 0) AS share,
                   m.mean_score, coalesce(m.present_chunks, 0) AS present_chunks
            FROM (SELECT unnest({LABELS_SQL}) AS label, generate_subscripts({LABELS_SQL}, 1) AS pos) l
            LEFT JOIN d USING (label) LEFT JOIN m USING (label) CROSS JOIN t
            ORDER BY l.pos
        """, sp or None, db=db)
    sql = f"""
        WITH c AS (
            SELECT c.chunk_id, c.dominant, {MIX_GROUPS[by]} AS grp {sel}),
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
    return read_df(sql, sp or None, db=db)


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


def runs_overview(*, limit: int = 100, db: DB = None) -> pd.DataFrame:
    """The latest runs, newest first, as the Runs page shows them: run_id, folder (the run's root, else the
    deepest folder holding its files), emotion model, whisper, source, status, times, file counts, seconds."""
    df = runs(db=db, limit=limit)
    made = read_df("""
        SELECT run_id, list(DISTINCT folder) FILTER (WHERE folder IS NOT NULL) AS folders,
               string_agg(DISTINCT emotion_model, ', ') AS emotion_models,
               string_agg(DISTINCT coalesce(whisper_model, 'off'), ', ')
                   FILTER (WHERE status = 'ok') AS whisper_models
        FROM files WHERE run_id IN (SELECT run_id FROM runs ORDER BY run_id DESC LIMIT ?) GROUP BY run_id
    """, [limit], db=db).set_index("run_id")
    folder, emotion, whisper = [], [], []
    for r in df.itertuples():
        summary = run_summary(getattr(r, "summary", None))
        models = summary.get("models") if isinstance(summary.get("models"), dict) else {}
        row = made.loc[r.run_id] if r.run_id in made.index else None
        folders = [] if row is None or missing(row["folders"]) else [str(x) for x in row["folders"]]
        root = summary.get("root") or summary.get("folder")
        folder.append(str(root) if root else common_folder(folders))
        emotion.append(models.get("emotion") or (None if row is None else opt_str(row["emotion_models"])))
        whisper.append(models.get("whisper") or (None if row is None else opt_str(row["whisper_models"])))
    keep = ["run_id", "source", "status", "started_at", "finished_at", "n_files", "n_failed", "n_skipped"]
    out = df[[c for c in keep if c in df.columns]].copy()
    out.insert(1, "folder", folder)
    out.insert(2, "emotion model", emotion)
    out.insert(3, "whisper", whisper)
    if "finished_at" in out.columns:
        out["seconds"] = (out["finished_at"] - out["started_at"]).dt.total_seconds()
    return out


def failed_files(*, limit: int = 500, db: DB = None) -> pd.DataFrame:
    """Failed and skipped files, newest first: path, status, reason, error_type, run_id, ingested_at."""
    return read_df(f"""
        SELECT path, status, error AS reason, error_type, run_id, ingested_at FROM files
        WHERE status IN ('failed', 'skipped') ORDER BY ingested_at DESC, file_id DESC LIMIT {int(limit)}
    """, db=db)


def run_file_count(run_id: int, *, db: DB = None) -> int:
    """Files rows written so far by a run."""
    return int(read_df("SELECT count(*) AS n FROM files WHERE run_id = ?", [int(run_id)], db=db)["n"].iloc[0])


def latest_run_since(since: _dt.datetime, *, db: DB = None) -> dict[str, Any] | None:
    """The newest run started at or after ``since`` (UTC, naive); None when none (or no database yet)."""
    if db is not None and not Path(db).exists():
        return None
    df = read_df("SELECT * FROM runs WHERE started_at >= ? ORDER BY run_id DESC LIMIT 1", [since], db=db)
    return None if df.empty else df.iloc[0].to_dict()


def faithfulness_overview(*, db: DB = None) -> pd.DataFrame:
    """Per emotion model and tier, every stored deletion check summarised: how often the explanation's top
    segment is the most harmful single deletion (against chance), top-k overlap, rank agreement and AOPC
    of the top segments against random ones (``pipeline.faithfulness.faithfulness_summary``)."""
    from pipeline.faithfulness import faithfulness_summary

    rows = read_df("""
        SELECT f.emotion_model, e.tier, e.faithfulness FROM explanations e
        JOIN chunks c USING (chunk_id) JOIN files f USING (file_id)
        WHERE e.faithfulness IS NOT NULL AND f.status = 'ok'
    """, db=db)
    out = []
    for (model, tier), group in rows.groupby(["emotion_model", "tier"], sort=True, dropna=False):
        s = faithfulness_summary([faithfulness_of(x) for x in group["faithfulness"]])
        out.append({"emotion model": model, "tier": tier, "chunks checked": s.chunks,
                    "top segment = most harmful": s.top_is_most_harmful_rate, "chance": s.chance_rate,
                    "top-k overlap": s.topk_overlap_mean, "rank agreement": s.rank_agreement_mean,
                    "AOPC top": s.aopc_top_mean, "AOPC random": s.aopc_random_mean,
                    "top beats random": s.top_beats_random_rate})
    return pd.DataFrame(out)
