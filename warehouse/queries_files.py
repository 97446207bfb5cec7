"""Named queries of one file and one chunk: the file picker, a file's row and chunks, a chunk's
emotions, words, context and acoustic features, and a file's results as a JSON-ready export.

Every function takes ``db`` (a path; None = the configured database) and reads through ``read_df``.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.types import BASE_EMOTIONS
from warehouse.filters import LABELS_SQL
from warehouse.queries import DB
from warehouse.rows import faithfulness_of, missing, opt_float, opt_str
from warehouse.sql import read_df


def _read(sql: str, params: list[Any] | None = None, *, db: DB) -> pd.DataFrame:
    return read_df(sql, params or None, db=db)


def file_choices(search: str = "", *, limit: int = 500, db: DB) -> pd.DataFrame:
    """Files with results whose path contains ``search`` (case-insensitive), newest first:
    file_id, path, n_chunks, emotion_trained."""
    return _read(f"""
        SELECT file_id, path, n_chunks, emotion_trained FROM files
        WHERE status = 'ok' AND (? = '' OR contains(lower(path), lower(?)))
        ORDER BY ingested_at DESC, file_id DESC LIMIT {int(limit)}
    """, [search, search], db=db)


def file_info(file_id: int, *, db: DB) -> dict[str, Any] | None:
    """The ``files`` row of ``file_id`` as a dict (lists as lists), or None."""
    df = _read("SELECT * FROM files WHERE file_id = ?", [int(file_id)], db=db)
    if df.empty:
        return None
    row = df.iloc[0].to_dict()
    for key in ("notes", "emotion_labels", "absent_labels"):
        value = row.get(key)
        row[key] = [] if missing(value) else list(value)
    return row


def file_chunks(file_id: int, *, db: DB) -> pd.DataFrame:
    """One row per chunk of a file: chunk_id, idx, start_s, end_s, dominant, dominant_score, speaker
    ('S1', 'S2', ... within this file; None = not labelled), transcript, language, language_probability,
    the six base probabilities (NaN = absent), granular / complex / extra (text "name 0.62, ..."), tiers
    (explanation tiers stored)."""
    pivots = ", ".join(f"max(e.score) FILTER (WHERE e.kind = 'base' AND e.label = '{b}') AS {b}"
                       for b in BASE_EMOTIONS)

    def agg(kind: str) -> str:
        return (f"string_agg(e.label || ' ' || printf('%.2f', e.score), ', ' ORDER BY e.score DESC, e.label) "
                f"FILTER (WHERE e.kind = '{kind}') AS {kind}")

    return _read(f"""
        SELECT c.chunk_id, c.idx, c.start_s, c.end_s, c.dominant, c.dominant_score, c.speaker, c.transcript,
               c.language, c.language_probability, {pivots}, {agg('granular')}, {agg('complex')}, {agg('extra')},
               (SELECT string_agg(DISTINCT x.tier, ', ') FROM explanations x WHERE x.chunk_id = c.chunk_id) AS tiers
        FROM chunks c LEFT JOIN emotions e ON e.chunk_id = c.chunk_id
        WHERE c.file_id = ?
        GROUP BY ALL ORDER BY c.idx
    """, [int(file_id)], db=db)


def chunk_emotions(chunk_id: int, *, db: DB) -> pd.DataFrame:
    """Long-form emotions of one chunk: kind, label, score (NULL = absent), granular_kind."""
    return _read(f"""
        SELECT kind, label, score, granular_kind FROM emotions WHERE chunk_id = ?
        ORDER BY CASE kind WHEN 'base' THEN 0 WHEN 'extra' THEN 1 WHEN 'granular' THEN 2 ELSE 3 END,
                 coalesce(list_position({LABELS_SQL}, label), 99), score DESC NULLS LAST, label
    """, [int(chunk_id)], db=db)


def chunk_words(chunk_id: int, *, db: DB) -> pd.DataFrame:
    """The recognised words of one chunk: idx, word, start_s, end_s, probability."""
    return _read("SELECT idx, word, start_s, end_s, probability FROM words WHERE chunk_id = ? ORDER BY idx",
                 [int(chunk_id)], db=db)


@dataclass(frozen=True)
class ChunkContext:
    """Where a chunk lives and what produced it."""

    chunk_id: int
    file_id: int
    idx: int
    start_s: float
    end_s: float
    path: str
    emotion_model: str | None
    emotion_trained: bool
    whisper_model: str | None
    absent_labels: tuple[str, ...] = ()
    dominant: str | None = None


def chunk_context(chunk_id: int, *, db: DB) -> ChunkContext | None:
    """The chunk's file, times and models; None when no such chunk."""
    df = _read("""
        SELECT c.chunk_id, c.file_id, c.idx, c.start_s, c.end_s, f.path, f.emotion_model,
               coalesce(f.emotion_trained, false) AS emotion_trained, f.whisper_model,
               coalesce(f.absent_labels, []::VARCHAR[]) AS absent_labels, c.dominant
        FROM chunks c JOIN files f USING (file_id) WHERE c.chunk_id = ?
    """, [int(chunk_id)], db=db)
    if df.empty:
        return None
    r = df.iloc[0]
    return ChunkContext(int(r.chunk_id), int(r.file_id), int(r.idx), float(r.start_s), float(r.end_s), str(r.path),
                        None if pd.isna(r.emotion_model) else str(r.emotion_model), bool(r.emotion_trained),
                        None if pd.isna(r.whisper_model) else str(r.whisper_model), tuple(r.absent_labels),
                        None if pd.isna(r.dominant) else str(r.dominant))


#: Quantile points kept per acoustic feature (percentiles 0..100).
_QUANTILES = [i / 100 for i in range(101)]


def feature_distribution(*, db: DB) -> pd.DataFrame:
    """Per acoustic feature over every chunk of the corpus: name, q (101 approximate percentiles), n."""
    return _read(f"""
        SELECT name, approx_quantile(value, {_QUANTILES}) AS q, count(value) AS n
        FROM features WHERE value IS NOT NULL AND isfinite(value) GROUP BY name ORDER BY name
    """, db=db)


def chunk_features(chunk_id: int, *, db: DB) -> pd.DataFrame:
    """The acoustic features of one chunk: name, value."""
    return _read("SELECT name, value FROM features WHERE chunk_id = ? ORDER BY name", [int(chunk_id)], db=db)


def file_export(info: dict[str, Any], chunks: pd.DataFrame, *, db: DB) -> dict[str, Any]:
    """One file's stored results as a JSON-ready dict: the file row and its chunks with every emotion
    (base: None = absent), words and explanation summary. ``info`` and ``chunks`` are ``file_info`` and
    ``file_chunks`` of the file (the caller may hold them already)."""
    file_id = int(info["file_id"])
    long = _read("""
        SELECT e.chunk_id, e.kind, e.label, e.score, e.granular_kind FROM emotions e
        WHERE e.chunk_id IN (SELECT chunk_id FROM chunks WHERE file_id = ?) ORDER BY e.chunk_id
    """, [file_id], db=db)
    expl = _read("""
        SELECT chunk_id, target_label, tier, shap_method, shap_base_value, shap_full_value, lime_method, lime_score,
               surrogate_r2, faithfulness FROM explanations
        WHERE chunk_id IN (SELECT chunk_id FROM chunks WHERE file_id = ?)
    """, [file_id], db=db)
    by_chunk: dict[int, list] = {}
    for r in long.itertuples():
        by_chunk.setdefault(int(r.chunk_id), []).append(r)
    out_chunks = []
    for c in chunks.itertuples():
        rows = by_chunk.get(int(c.chunk_id), [])
        ex = expl[expl["chunk_id"] == c.chunk_id]
        out_chunks.append({
            "chunk_id": int(c.chunk_id), "idx": int(c.idx), "start_s": float(c.start_s), "end_s": float(c.end_s),
            "dominant": opt_str(c.dominant), "dominant_score": opt_float(c.dominant_score),
            "speaker": opt_str(c.speaker),
            "base": {r.label: opt_float(r.score) for r in rows if r.kind == "base"},
            "extra": {r.label: opt_float(r.score) for r in rows if r.kind == "extra"},
            "granular": [{"name": r.label, "confidence": opt_float(r.score), "kind": opt_str(r.granular_kind)}
                         for r in rows if r.kind == "granular"],
            "complex": [{"name": r.label, "confidence": opt_float(r.score)} for r in rows if r.kind == "complex"],
            "transcript": opt_str(c.transcript), "language": opt_str(c.language),
            "explanations": [{
                "target_label": e.target_label, "tier": opt_str(e.tier), "shap_method": opt_str(e.shap_method),
                "shap_base_value": opt_float(e.shap_base_value), "shap_full_value": opt_float(e.shap_full_value),
                "lime_method": opt_str(e.lime_method), "lime_score": opt_float(e.lime_score),
                "surrogate_r2": opt_float(e.surrogate_r2), "faithfulness": faithfulness_of(e.faithfulness),
            } for e in ex.itertuples()],
        })
    file_row = {k: (v.isoformat() if isinstance(v, (_dt.datetime, pd.Timestamp)) else
                    (None if missing(v) else v))
                for k, v in info.items() if k != "settings"}
    try:
        file_row["settings"] = json.loads(info.get("settings") or "null")
    except (TypeError, ValueError):
        file_row["settings"] = info.get("settings")
    note = None if info.get("emotion_trained") else "untrained (random-weight) emotion model: scores are not emotions"
    return {"file": file_row, "warning": note, "chunks": out_chunks}
