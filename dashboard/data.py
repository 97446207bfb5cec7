"""Every query the dashboard runs, in one place: cached wrappers over the warehouse's read functions.

Aggregation happens in SQL (``warehouse.read_df``); only aggregated rows, one file's chunks or one
chunk's explanation come back to pandas. Results are cached with ``st.cache_data`` keyed on the
database path, a *warehouse version* (row counts and latest timestamps of files, runs and
explanations, re-read at most every ``VERSION_TTL_S`` seconds) and the arguments, so a new ingestion,
a finished run or a replaced explanation shows up on the next rerun without clearing anything. (The ``v`` argument of
the private cached functions is that version: unused in the body, it only keys the cache.)

Reads go through the warehouse's read-only connections, which wait for a writer (the ingestion flow
holds the file for tens of milliseconds per file) instead of failing.

Filters (``Filters``) apply to every Overview aggregate: folders, a date range on the recording time
(``coalesce(recorded_at, ingested_at)``, UTC), transcript languages, emotion models, dominant emotions
and a minimum dominant-emotion probability. Results of untrained (random-weight) models are left out
unless ``include_untrained`` is set: their scores are not emotions.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import warehouse
from pipeline.types import BASE_EMOTIONS, Explanation, SegmentWeight
from warehouse import queries as wq

#: Seconds between two reads of the warehouse version (the cache key of every other query).
VERSION_TTL_S = 2.0
#: Value of the language filter that selects chunks without a detected language.
NO_LANGUAGE = "(none)"
#: Recording-time grains of the "over time" chart, finest first, with the longest span (days) each suits.
GRAINS = (("hour", 3), ("day", 120), ("week", 1000), ("month", math.inf))
_LABELS_SQL = "[" + ", ".join(f"'{e}'" for e in BASE_EMOTIONS) + "]"
_TIME = "coalesce(f.recorded_at, f.ingested_at)"


@dataclass(frozen=True)
class Filters:
    """The Overview's sidebar filters (empty tuple = no restriction)."""

    folders: tuple[str, ...] = ()
    date_from: _dt.date | None = None
    date_to: _dt.date | None = None
    """Inclusive range of recording dates (UTC)."""
    languages: tuple[str, ...] = ()
    """Detected transcript languages; ``NO_LANGUAGE`` selects chunks without one."""
    models: tuple[str, ...] = ()
    emotions: tuple[str, ...] = ()
    """Dominant emotions of the chunks kept."""
    min_confidence: float = 0.0
    """Keep chunks whose dominant-emotion probability is at least this (0..1)."""
    include_untrained: bool = False

    @property
    def chunk_level(self) -> bool:
        """Whether a filter selects chunks (not just files)."""
        return bool(self.languages or self.emotions or self.min_confidence > 0)

    def file_where(self, *, status: str | None = "ok") -> tuple[str, list[Any]]:
        """SQL condition on ``files f`` and its parameters."""
        conds: list[str] = []
        params: list[Any] = []
        if status:
            conds.append("f.status = ?")
            params.append(status)
        if status == "ok" and not self.include_untrained:
            conds.append("f.emotion_trained")
        if self.folders:
            conds.append("list_contains(?, f.folder)")
            params.append(list(self.folders))
        if self.date_from is not None:
            conds.append(f"CAST({_TIME} AS DATE) >= ?")
            params.append(self.date_from)
        if self.date_to is not None:
            conds.append(f"CAST({_TIME} AS DATE) <= ?")
            params.append(self.date_to)
        if self.models and status == "ok":
            conds.append("list_contains(?, f.emotion_model)")
            params.append(list(self.models))
        return (" AND ".join(conds) or "true"), params

    def chunk_where(self) -> tuple[str, list[Any]]:
        """SQL condition on ``chunks c`` and its parameters."""
        conds: list[str] = []
        params: list[Any] = []
        if self.languages:
            langs = [x for x in self.languages if x != NO_LANGUAGE]
            cond = "list_contains(?, c.language)"
            if NO_LANGUAGE in self.languages:
                cond = f"({cond} OR c.language IS NULL)"
            conds.append(cond)
            params.append(langs)
        if self.emotions:
            conds.append("list_contains(?, c.dominant)")
            params.append(list(self.emotions))
        if self.min_confidence > 0:
            conds.append("c.dominant_score >= ?")
            params.append(float(self.min_confidence))
        return (" AND ".join(conds) or "true"), params

    def selection(self) -> tuple[str, list[Any]]:
        """``FROM files f JOIN chunks c ... WHERE ...`` selecting the filtered chunks, with parameters."""
        fw, fp = self.file_where()
        cw, cp = self.chunk_where()
        return f"FROM files f JOIN chunks c USING (file_id) WHERE {fw} AND {cw}", fp + cp

    def describe(self) -> list[str]:
        """Plain lines saying what the filters keep (for exports and captions)."""
        out = []
        if self.folders:
            out.append("folders: " + ", ".join(self.folders))
        if self.date_from or self.date_to:
            out.append(f"recorded: {self.date_from or '…'} to {self.date_to or '…'} (UTC)")
        if self.languages:
            out.append("languages: " + ", ".join(self.languages))
        if self.models:
            out.append("emotion models: " + ", ".join(self.models))
        if self.emotions:
            out.append("dominant emotions: " + ", ".join(self.emotions))
        if self.min_confidence > 0:
            out.append(f"dominant probability ≥ {self.min_confidence:.2f}")
        out.append("untrained models: included (their scores are not emotions)" if self.include_untrained
                   else "untrained models: left out")
        return out


def missing(value: Any) -> bool:
    """Whether a value read from DuckDB is SQL NULL: None, ``pd.NA``, ``pd.NaT`` or a float NaN.

    Containers (lists, dicts, arrays: MAP and LIST columns) are never missing, however they look; a plain
    ``pd.isna`` would answer element-wise for them, and ``x is None`` misses ``pd.NA``.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return False


def _read(sql: str, params: list[Any] | None = None, *, db: str) -> pd.DataFrame:
    return warehouse.read_df(sql, params or None, db=db)


# --------------------------------------------------------------------------------------------------
# version and corpus figures
# --------------------------------------------------------------------------------------------------

@st.cache_data(ttl=VERSION_TTL_S, show_spinner=False, max_entries=16)
def version(db: str) -> tuple | None:
    """What changes whenever the warehouse does; None when the database file does not exist yet."""
    if not Path(db).exists():
        return None
    row = _read("""
        SELECT (SELECT count(*) FROM files), (SELECT max(ingested_at) FROM files),
               (SELECT count(*) FROM runs), (SELECT max(coalesce(finished_at, started_at)) FROM runs),
               (SELECT count(*) FILTER (WHERE status = 'running') FROM runs),
               (SELECT count(*) FROM explanations),
               (SELECT count(*) FILTER (WHERE tier = 'full') FROM explanations)
    """, db=db).iloc[0].tolist()
    return tuple(str(v) for v in row)


@dataclass(frozen=True)
class Status:
    """Whole-database counts (no filters), for empty states and notices."""

    exists: bool
    files: int = 0
    ok_files: int = 0
    trained_files: int = 0
    untrained_files: int = 0
    failed_files: int = 0
    skipped_files: int = 0
    chunks: int = 0
    runs: int = 0

    @property
    def empty(self) -> bool:
        return self.files == 0 and self.runs == 0


def status(db: str) -> Status:
    v = version(db)
    if v is None:
        return Status(exists=False)
    return _status(db, v)


@st.cache_data(show_spinner=False, max_entries=32)
def _status(db: str, v: tuple) -> Status:
    r = _read("""
        SELECT count(*) AS files,
               count(*) FILTER (WHERE status = 'ok') AS ok_files,
               count(*) FILTER (WHERE status = 'ok' AND emotion_trained) AS trained_files,
               count(*) FILTER (WHERE status = 'ok' AND emotion_trained IS NOT TRUE) AS untrained_files,
               count(*) FILTER (WHERE status = 'failed') AS failed_files,
               count(*) FILTER (WHERE status = 'skipped') AS skipped_files,
               coalesce(sum(n_chunks) FILTER (WHERE status = 'ok'), 0) AS chunks,
               (SELECT count(*) FROM runs) AS runs
        FROM files
    """, db=db).iloc[0]
    return Status(exists=True, **{k: int(r[k]) for k in r.index})


@dataclass(frozen=True)
class FilterOptions:
    folders: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    date_min: _dt.date | None = None
    date_max: _dt.date | None = None


def filter_options(db: str) -> FilterOptions:
    v = version(db)
    return FilterOptions() if v is None else _filter_options(db, v)


@st.cache_data(show_spinner=False, max_entries=32)
def _filter_options(db: str, v: tuple) -> FilterOptions:
    files = _read(f"""
        SELECT list(DISTINCT folder ORDER BY folder) FILTER (WHERE folder IS NOT NULL) AS folders,
               list(DISTINCT emotion_model ORDER BY emotion_model) FILTER (WHERE emotion_model IS NOT NULL) AS models,
               min(CAST({_TIME} AS DATE)) AS dmin, max(CAST({_TIME} AS DATE)) AS dmax
        FROM files f WHERE status = 'ok'
    """, db=db).iloc[0]
    langs = _read("SELECT DISTINCT coalesce(language, ?) AS lang FROM chunks ORDER BY lang", [NO_LANGUAGE], db=db)

    def _tuple(v: Any) -> tuple[str, ...]:
        return () if missing(v) else tuple(v)

    def _date(v: Any) -> _dt.date | None:
        return None if v is None or pd.isna(v) else pd.Timestamp(v).date()

    return FilterOptions(_tuple(files["folders"]), tuple(langs["lang"]), _tuple(files["models"]),
                         _date(files["dmin"]), _date(files["dmax"]))


@dataclass(frozen=True)
class Figures:
    """Corpus figures of a selection."""

    files: int
    audio_hours: float
    speech_hours: float
    chunks: int
    failed_files: int
    skipped_files: int


def figures(db: str, filters: Filters) -> Figures:
    v = version(db)
    return Figures(0, 0.0, 0.0, 0, 0, 0) if v is None else _figures(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _figures(db: str, v: tuple, filters: Filters) -> Figures:
    fw, fp = filters.file_where()
    sel, sp = filters.selection()
    if filters.chunk_level:
        file_set = f"SELECT DISTINCT c.file_id {sel}"
        params = sp + sp
    else:
        file_set = f"SELECT f.file_id FROM files f WHERE {fw}"
        params = fp + sp
    bad_w, bad_p = Filters(folders=filters.folders, date_from=filters.date_from,
                           date_to=filters.date_to).file_where(status=None)
    r = _read(f"""
        WITH fs AS ({file_set}),
             ch AS (SELECT count(*) AS n, coalesce(sum(c.end_s - c.start_s), 0) AS speech_s {sel})
        SELECT (SELECT count(*) FROM fs) AS files,
               (SELECT coalesce(sum(duration_s), 0) FROM files WHERE file_id IN (SELECT file_id FROM fs)) AS audio_s,
               (SELECT speech_s FROM ch) AS speech_s, (SELECT n FROM ch) AS chunks,
               (SELECT count(*) FROM files f WHERE {bad_w} AND f.status = 'failed') AS failed,
               (SELECT count(*) FROM files f WHERE {bad_w} AND f.status = 'skipped') AS skipped
    """, params + bad_p + bad_p, db=db).iloc[0]
    return Figures(int(r["files"]), float(r["audio_s"]) / 3600, float(r["speech_s"]) / 3600, int(r["chunks"]),
                   int(r["failed"]), int(r["skipped"]))


# --------------------------------------------------------------------------------------------------
# Overview aggregates
# --------------------------------------------------------------------------------------------------

def selection_models(db: str, filters: Filters) -> list[tuple[str | None, bool]]:
    """(emotion model, trained) of the analysed files the filters keep (file-level filters), most files first:
    what the model caveats of a page or report have to cover."""
    v = version(db)
    return [] if v is None else _selection_models(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=32)
def _selection_models(db: str, v: tuple, filters: Filters) -> list[tuple[str | None, bool]]:
    fw, fp = filters.file_where()
    df = _read(f"""SELECT f.emotion_model, coalesce(f.emotion_trained, false) AS trained, count(*) AS n
                   FROM files f WHERE {fw} GROUP BY ALL ORDER BY n DESC, 1""", fp, db=db)
    return [(_opt_str(r.emotion_model), bool(r.trained)) for r in df.itertuples()]


def emotion_mix(db: str, filters: Filters) -> pd.DataFrame:
    """Per base label: dominant_chunks, share (of the selection's chunks), mean_score (NaN when no
    selected chunk's model has the class: absent, not 0), present_chunks."""
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["label", "dominant_chunks", "share", "mean_score", "present_chunks"])
    return _emotion_mix(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _emotion_mix(db: str, v: tuple, filters: Filters) -> pd.DataFrame:
    sel, sp = filters.selection()
    return _read(f"""
        WITH sel AS (SELECT c.chunk_id, c.dominant {sel}),
             d AS (SELECT dominant AS label, count(*) AS n FROM sel WHERE dominant IS NOT NULL GROUP BY 1),
             m AS (SELECT e.label, avg(e.score) AS mean_score, count(e.score) AS present_chunks
                   FROM emotions e JOIN sel USING (chunk_id) WHERE e.kind = 'base' GROUP BY 1),
             t AS (SELECT count(*) AS n FROM sel)
        SELECT l.label, coalesce(d.n, 0) AS dominant_chunks, coalesce(d.n, 0) / nullif(t.n, 0) AS share,
               m.mean_score, coalesce(m.present_chunks, 0) AS present_chunks
        FROM (SELECT unnest({_LABELS_SQL}) AS label, generate_subscripts({_LABELS_SQL}, 1) AS pos) l
        LEFT JOIN d USING (label) LEFT JOIN m USING (label) CROSS JOIN t
        ORDER BY l.pos
    """, sp, db=db)


def time_grain(date_min: _dt.date | None, date_max: _dt.date | None) -> str:
    """The finest grain that keeps the over-time chart readable for this span."""
    if date_min is None or date_max is None:
        return "day"
    span = (date_max - date_min).days + 1
    return next(g for g, days in GRAINS if span <= days)


def over_time(db: str, filters: Filters, grain: str) -> pd.DataFrame:
    """Chunks per (period, dominant emotion); period = recording time truncated to ``grain``."""
    if grain not in dict(GRAINS):
        raise ValueError(f"grain must be one of {', '.join(dict(GRAINS))}, not {grain!r}")
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["period", "label", "chunks"])
    return _over_time(db, v, filters, grain)


@st.cache_data(show_spinner=False, max_entries=64)
def _over_time(db: str, v: tuple, filters: Filters, grain: str) -> pd.DataFrame:
    sel, sp = filters.selection()
    return _read(f"""
        SELECT date_trunc('{grain}', {_TIME}) AS period, c.dominant AS label, count(*) AS chunks
        {sel} AND c.dominant IS NOT NULL
        GROUP BY ALL ORDER BY period, label
    """, sp, db=db)


_GROUPS = {"folder": ("f.folder", "f.folder"), "file": ("f.file_id", "any_value(f.path)")}


def by_group(db: str, filters: Filters, by: str, *, top: int = 20) -> pd.DataFrame:
    """Chunks per (group, dominant emotion) for the ``top`` groups with most chunks.

    Columns: group (folder, or file path), group_id (folder or file_id), label, chunks, total.
    """
    if by not in _GROUPS:
        raise ValueError(f"by must be one of {', '.join(_GROUPS)}, not {by!r}")
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["group", "group_id", "label", "chunks", "total"])
    return _by_group(db, v, filters, by, int(top))


@st.cache_data(show_spinner=False, max_entries=64)
def _by_group(db: str, v: tuple, filters: Filters, by: str, top: int) -> pd.DataFrame:
    key, name = _GROUPS[by]
    sel, sp = filters.selection()
    return _read(f"""
        WITH sel AS (SELECT {key} AS gid, c.dominant {sel}),
             topg AS (SELECT gid, count(*) AS total FROM sel GROUP BY gid ORDER BY total DESC, gid LIMIT {top}),
             names AS (SELECT {key} AS gid, {name} AS grp FROM files f WHERE {key} IN (SELECT gid FROM topg)
                       GROUP BY {key})
        SELECT n.grp AS "group", CAST(s.gid AS VARCHAR) AS group_id, s.dominant AS label, count(*) AS chunks,
               any_value(t.total) AS total
        FROM sel s JOIN topg t USING (gid) JOIN names n USING (gid)
        WHERE s.dominant IS NOT NULL
        GROUP BY ALL ORDER BY total DESC, "group", label
    """, sp, db=db)


def group_count(db: str, filters: Filters, by: str) -> int:
    """How many groups (folders, or files) of the selection have a chunk with a dominant emotion: the
    "of N" when a chart shows only the top ones."""
    if by not in _GROUPS:
        raise ValueError(f"by must be one of {', '.join(_GROUPS)}, not {by!r}")
    v = version(db)
    return 0 if v is None else _group_count(db, v, filters, by)


@st.cache_data(show_spinner=False, max_entries=64)
def _group_count(db: str, v: tuple, filters: Filters, by: str) -> int:
    sel, sp = filters.selection()
    return int(_read(f"SELECT count(DISTINCT {_GROUPS[by][0]}) AS n {sel} AND c.dominant IS NOT NULL", sp,
                     db=db)["n"].iloc[0])


#: Files with more than one speaker label among their chunks (labels are per file: S1 of one file is not S1 of
#: another, so nothing below joins or sums a label across files).
_MULTI_SPEAKER = ("SELECT file_id FROM chunks WHERE speaker IS NOT NULL GROUP BY file_id "
                  "HAVING count(DISTINCT speaker) > 1")


def speaker_mix(db: str, filters: Filters, *, top: int = 20) -> pd.DataFrame:
    """Chunks per (file, speaker, dominant emotion) for files with several speakers, the ``top`` such files
    of the selection with most chunks. Chunks without a speaker label are left out.

    Columns: file_id, path, speaker, label, chunks, total (chunks of that file's speaker), file_total.
    """
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["file_id", "path", "speaker", "label", "chunks", "total", "file_total"])
    return _speaker_mix(db, v, filters, int(top))


@st.cache_data(show_spinner=False, max_entries=64)
def _speaker_mix(db: str, v: tuple, filters: Filters, top: int) -> pd.DataFrame:
    sel, sp = filters.selection()
    return _read(f"""
        WITH sel AS (SELECT c.file_id, c.speaker, c.dominant {sel} AND c.speaker IS NOT NULL
                       AND c.dominant IS NOT NULL AND c.file_id IN ({_MULTI_SPEAKER})),
             topf AS (SELECT file_id, count(*) AS file_total FROM sel GROUP BY file_id
                      ORDER BY file_total DESC, file_id LIMIT {top}),
             per AS (SELECT file_id, speaker, count(*) AS total FROM sel GROUP BY ALL)
        SELECT s.file_id, f.path, s.speaker, s.dominant AS label, count(*) AS chunks, any_value(p.total) AS total,
               any_value(t.file_total) AS file_total
        FROM sel s JOIN topf t USING (file_id) JOIN per p USING (file_id, speaker) JOIN files f USING (file_id)
        GROUP BY s.file_id, f.path, s.speaker, s.dominant
        ORDER BY file_total DESC, s.file_id, coalesce(TRY_CAST(substr(s.speaker, 2) AS INTEGER), 1000000),
                 s.speaker, label
    """, sp, db=db)


def speaker_file_count(db: str, filters: Filters) -> int:
    """Files of the selection with several speakers and a labelled chunk (the "of M" of ``speaker_mix``)."""
    v = version(db)
    return 0 if v is None else _speaker_file_count(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _speaker_file_count(db: str, v: tuple, filters: Filters) -> int:
    sel, sp = filters.selection()
    return int(_read(f"""SELECT count(DISTINCT c.file_id) AS n {sel} AND c.speaker IS NOT NULL
                         AND c.dominant IS NOT NULL AND c.file_id IN ({_MULTI_SPEAKER})""", sp, db=db)["n"].iloc[0])


def selection_file_count(db: str, filters: Filters) -> int:
    """Files of the selection (the "of N" of the files table)."""
    v = version(db)
    return 0 if v is None else _selection_file_count(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _selection_file_count(db: str, v: tuple, filters: Filters) -> int:
    if filters.chunk_level:
        sel, sp = filters.selection()
        return int(_read(f"SELECT count(DISTINCT c.file_id) AS n {sel}", sp, db=db)["n"].iloc[0])
    fw, fp = filters.file_where()
    return int(_read(f"SELECT count(*) AS n FROM files f WHERE {fw}", fp, db=db)["n"].iloc[0])


@dataclass(frozen=True)
class TimeBasis:
    """What the over-time chart's time is: files of the selection with a recording time, and in all."""

    recorded: int
    files: int

    @property
    def axis_title(self) -> str:
        """The time axis' name for what it really holds (recording time, ingestion time or a mix)."""
        if self.files and self.recorded == self.files:
            return "recording time"
        if self.recorded == 0:
            return "ingestion time (no recording times known)"
        return f"recording time, or ingestion time for {self.files - self.recorded} of {self.files} files"


def time_basis(db: str, filters: Filters) -> TimeBasis:
    v = version(db)
    return TimeBasis(0, 0) if v is None else _time_basis(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _time_basis(db: str, v: tuple, filters: Filters) -> TimeBasis:
    sel, sp = filters.selection()
    r = _read(f"""SELECT count(DISTINCT f.file_id) FILTER (WHERE f.recorded_at IS NOT NULL) AS recorded,
                         count(DISTINCT f.file_id) AS files {sel}""", sp, db=db).iloc[0]
    return TimeBasis(int(r["recorded"]), int(r["files"]))


def files_table(db: str, filters: Filters, *, limit: int = 200) -> pd.DataFrame:
    """Files of the selection, newest first: file_id, path, folder, duration_s, chunks (selected),
    top_emotion (most frequent dominant), emotion_model, emotion_trained, recorded_at."""
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["file_id", "path", "folder", "duration_s", "chunks", "top_emotion",
                                     "emotion_model", "emotion_trained", "recorded_at"])
    return _files_table(db, v, filters, int(limit))


@st.cache_data(show_spinner=False, max_entries=64)
def _files_table(db: str, v: tuple, filters: Filters, limit: int) -> pd.DataFrame:
    fw, fp = filters.file_where()
    cw, cp = filters.chunk_where()
    join = "JOIN" if filters.chunk_level else "LEFT JOIN"
    return _read(f"""
        WITH page AS (
            SELECT f.file_id FROM files f WHERE {fw}
              {"AND f.file_id IN (SELECT c.file_id FROM chunks c WHERE " + cw + ")" if filters.chunk_level else ""}
            ORDER BY f.ingested_at DESC, f.file_id DESC LIMIT {limit})
        SELECT f.file_id, f.path, f.folder, f.duration_s, count(c.chunk_id) AS chunks,
               mode(c.dominant) AS top_emotion, f.emotion_model, f.emotion_trained,
               {_TIME} AS recorded_at, f.ingested_at
        FROM files f {join} chunks c ON c.file_id = f.file_id AND {cw}
        WHERE f.file_id IN (SELECT file_id FROM page)
        GROUP BY ALL ORDER BY f.ingested_at DESC, f.file_id DESC
    """, fp + (cp if filters.chunk_level else []) + cp, db=db)


def selection_rows(db: str, filters: Filters, *, limit: int = 100_000) -> pd.DataFrame:
    """The selected chunks, one row each with their file and six base probabilities (NaN = absent),
    for CSV/JSON exports; at most ``limit`` rows (newest files first)."""
    v = version(db)
    if v is None:
        return pd.DataFrame()
    return _selection_rows(db, v, filters, int(limit))


@st.cache_data(show_spinner=False, max_entries=8)
def _selection_rows(db: str, v: tuple, filters: Filters, limit: int) -> pd.DataFrame:
    sel, sp = filters.selection()
    pivots = ", ".join(f"max(e.score) FILTER (WHERE e.label = '{b}') AS {b}" for b in BASE_EMOTIONS)
    return _read(f"""
        WITH picked AS (SELECT c.chunk_id, f.ingested_at {sel} ORDER BY f.ingested_at DESC, c.chunk_id LIMIT {limit})
        SELECT f.file_id, f.path, f.folder, f.emotion_model, f.emotion_trained, {_TIME} AS recorded_at,
               f.ingested_at, c.chunk_id, c.idx AS chunk, c.start_s, c.end_s, c.dominant, c.dominant_score, c.language,
               c.transcript, {pivots}
        FROM picked p JOIN chunks c USING (chunk_id) JOIN files f USING (file_id)
        LEFT JOIN emotions e ON e.chunk_id = c.chunk_id AND e.kind = 'base'
        GROUP BY ALL ORDER BY f.ingested_at DESC, c.chunk_id
    """, sp, db=db)


# --------------------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------------------

def file_choices(db: str, search: str = "", *, limit: int = 500) -> pd.DataFrame:
    """Files with results whose path contains ``search`` (case-insensitive), newest first:
    file_id, path, n_chunks, emotion_trained."""
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["file_id", "path", "n_chunks", "emotion_trained"])
    return _file_choices(db, v, search.strip(), int(limit))


@st.cache_data(show_spinner=False, max_entries=64)
def _file_choices(db: str, v: tuple, search: str, limit: int) -> pd.DataFrame:
    return _read(f"""
        SELECT file_id, path, n_chunks, emotion_trained FROM files
        WHERE status = 'ok' AND (? = '' OR contains(lower(path), lower(?)))
        ORDER BY ingested_at DESC, file_id DESC LIMIT {limit}
    """, [search, search], db=db)


def file_info(db: str, file_id: int) -> dict[str, Any] | None:
    """The ``files`` row of ``file_id`` as a dict (lists as lists), or None."""
    v = version(db)
    return None if v is None else _file_info(db, v, int(file_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _file_info(db: str, v: tuple, file_id: int) -> dict[str, Any] | None:
    df = _read("SELECT * FROM files WHERE file_id = ?", [file_id], db=db)
    if df.empty:
        return None
    row = df.iloc[0].to_dict()
    for key in ("notes", "emotion_labels", "absent_labels"):
        value = row.get(key)
        row[key] = [] if missing(value) else list(value)
    return row


def file_chunks(db: str, file_id: int) -> pd.DataFrame:
    """One row per chunk of a file: chunk_id, idx, start_s, end_s, dominant, dominant_score, speaker
    ('S1', 'S2', ... within this file; None = not labelled), transcript, language, language_probability,
    the six base probabilities (NaN = absent), granular / complex / extra (text "name 0.62, ..."), tiers
    (explanation tiers stored)."""
    v = version(db)
    return pd.DataFrame() if v is None else _file_chunks(db, v, int(file_id))


@st.cache_data(show_spinner=False, max_entries=32)
def _file_chunks(db: str, v: tuple, file_id: int) -> pd.DataFrame:
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
    """, [file_id], db=db)


def chunk_emotions(db: str, chunk_id: int) -> pd.DataFrame:
    """Long-form emotions of one chunk: kind, label, score (NULL = absent), granular_kind."""
    v = version(db)
    return pd.DataFrame() if v is None else _chunk_emotions(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _chunk_emotions(db: str, v: tuple, chunk_id: int) -> pd.DataFrame:
    return _read(f"""
        SELECT kind, label, score, granular_kind FROM emotions WHERE chunk_id = ?
        ORDER BY CASE kind WHEN 'base' THEN 0 WHEN 'extra' THEN 1 WHEN 'granular' THEN 2 ELSE 3 END,
                 coalesce(list_position({_LABELS_SQL}, label), 99), score DESC NULLS LAST, label
    """, [chunk_id], db=db)


def chunk_words(db: str, chunk_id: int) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame() if v is None else _chunk_words(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _chunk_words(db: str, v: tuple, chunk_id: int) -> pd.DataFrame:
    return _read("SELECT idx, word, start_s, end_s, probability FROM words WHERE chunk_id = ? ORDER BY idx",
                 [chunk_id], db=db)


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


def chunk_context(db: str, chunk_id: int) -> ChunkContext | None:
    v = version(db)
    return None if v is None else _chunk_context(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _chunk_context(db: str, v: tuple, chunk_id: int) -> ChunkContext | None:
    df = _read("""
        SELECT c.chunk_id, c.file_id, c.idx, c.start_s, c.end_s, f.path, f.emotion_model,
               coalesce(f.emotion_trained, false) AS emotion_trained, f.whisper_model,
               coalesce(f.absent_labels, []::VARCHAR[]) AS absent_labels, c.dominant
        FROM chunks c JOIN files f USING (file_id) WHERE c.chunk_id = ?
    """, [chunk_id], db=db)
    if df.empty:
        return None
    r = df.iloc[0]
    return ChunkContext(int(r.chunk_id), int(r.file_id), int(r.idx), float(r.start_s), float(r.end_s), str(r.path),
                        None if pd.isna(r.emotion_model) else str(r.emotion_model), bool(r.emotion_trained),
                        None if pd.isna(r.whisper_model) else str(r.whisper_model), tuple(r.absent_labels),
                        None if pd.isna(r.dominant) else str(r.dominant))


# --------------------------------------------------------------------------------------------------
# explanations
# --------------------------------------------------------------------------------------------------

def chunk_explanation(db: str, chunk_id: int) -> wq.ChunkExplanation | None:
    """Stored explanation rows of a chunk (``warehouse.queries.chunk_explanation``)."""
    v = version(db)
    return None if v is None else _chunk_explanation(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=32)
def _chunk_explanation(db: str, v: tuple, chunk_id: int) -> wq.ChunkExplanation:
    return wq.chunk_explanation(chunk_id, db=db)


def faithfulness_overview(db: str) -> pd.DataFrame:
    """Per emotion model and tier, every stored deletion check summarised: how often the explanation's top
    segment is the most harmful single deletion (against chance), top-k overlap, rank agreement and AOPC
    of the top segments against random ones (``pipeline.faithfulness.faithfulness_summary``)."""
    v = version(db)
    return pd.DataFrame() if v is None else _faithfulness_overview(db, v)


@st.cache_data(show_spinner=False, max_entries=16)
def _faithfulness_overview(db: str, v: tuple) -> pd.DataFrame:
    from pipeline.faithfulness import faithfulness_summary

    rows = _read("""
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


def _opt_float(v: Any) -> float | None:
    return None if missing(v) else float(v)


def _opt_str(v: Any) -> str | None:
    return None if missing(v) else str(v)


def faithfulness_of(value: Any) -> dict[str, float] | None:
    """A stored MAP(VARCHAR, DOUBLE) as a dict (DuckDB returns dicts or key/value lists); None for SQL NULL
    (``pd.NA`` in object columns: most chunks have no faithfulness check, ``faithfulness_sample``)."""
    if missing(value):
        return None
    if isinstance(value, dict):
        if set(value) == {"key", "value"} and isinstance(value["key"], (list, np.ndarray)):
            return {str(k): float(v) for k, v in zip(value["key"], value["value"])}
        return {str(k): float(v) for k, v in value.items() if v is not None}
    return {str(k): float(v) for k, v in value}


def stored_explanation(stored: wq.ChunkExplanation, target_label: str | None = None) -> Explanation | None:
    """Rebuild the pipeline's ``Explanation`` from stored rows (for pipeline.plots and reports)."""
    meta = stored.meta
    if meta is None or meta.empty:
        return None
    row = meta.iloc[0] if target_label is None else meta[meta["target_label"] == target_label].iloc[0]
    target = str(row["target_label"])
    shap = stored.shap[stored.shap["target_label"] == target]
    seg = shap[shap["kind"] == "segment"].sort_values("segment")
    acoustic = shap[shap["kind"] == "acoustic"]
    lime = stored.lime[stored.lime["target_label"] == target].sort_values("segment")
    layers = sorted(k for k in stored.attention if k >= 0)
    attention = np.stack([stored.attention[k] for k in layers]) if layers else None
    return Explanation(
        target_label=target, tier=_opt_str(row["tier"]) or "?", shap_method=_opt_str(row["shap_method"]) or "",
        shap_segments=[SegmentWeight(int(r.segment), float(r.start_s), float(r.end_s), float(r.value))
                       for r in seg.itertuples() if r.value is not None and not pd.isna(r.value)],
        shap_base_value=_opt_float(row["shap_base_value"]) or 0.0,
        shap_full_value=_opt_float(row["shap_full_value"]) or 0.0,
        lime_method=_opt_str(row["lime_method"]) or "",
        lime_segments=[SegmentWeight(int(r.segment), float(r.start_s), float(r.end_s), float(r.weight))
                       for r in lime.itertuples() if r.weight is not None and not pd.isna(r.weight)],
        lime_score=_opt_float(row["lime_score"]),
        shap_features={str(r.feature): float(r.value) for r in acoustic.itertuples()
                       if r.value is not None and not pd.isna(r.value)},
        shap_features_method=_opt_str(row["shap_features_method"]),
        surrogate_r2=_opt_float(row["surrogate_r2"]),
        attention=attention, attention_rollout=stored.attention.get(-1),
        attention_note=_opt_str(row["attention_note"]),
        faithfulness=faithfulness_of(row["faithfulness"]),
    )


#: Quantile points kept per acoustic feature (percentiles 0..100).
_QUANTILES = [i / 100 for i in range(101)]


def feature_distribution(db: str) -> pd.DataFrame:
    """Per acoustic feature over every chunk of the corpus: name, q (101 approximate percentiles), n."""
    v = version(db)
    return pd.DataFrame(columns=["name", "q", "n"]) if v is None else _feature_distribution(db, v)


@st.cache_data(show_spinner=False, max_entries=8)
def _feature_distribution(db: str, v: tuple) -> pd.DataFrame:
    return _read(f"""
        SELECT name, approx_quantile(value, {_QUANTILES}) AS q, count(value) AS n
        FROM features WHERE value IS NOT NULL AND isfinite(value) GROUP BY name ORDER BY name
    """, db=db)


def chunk_features(db: str, chunk_id: int) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame(columns=["name", "value"]) if v is None else _chunk_features(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _chunk_features(db: str, v: tuple, chunk_id: int) -> pd.DataFrame:
    return _read("SELECT name, value FROM features WHERE chunk_id = ? ORDER BY name", [chunk_id], db=db)


def feature_percentiles(db: str, chunk_id: int) -> pd.DataFrame:
    """The chunk's acoustic features against the corpus: feature, value, percentile (0..100, from the
    corpus's approximate percentiles), p5, p50, p95, corpus_chunks. Undefined values are left out."""
    mine = chunk_features(db, chunk_id)
    dist = feature_distribution(db).set_index("name") if not mine.empty else pd.DataFrame()
    rows = []
    for r in mine.itertuples():
        if r.value is None or pd.isna(r.value) or r.name not in dist.index:
            continue
        q = np.asarray(dist.loc[r.name, "q"], dtype=np.float64)
        value = float(r.value)
        # position among the percentile points; ties (flat stretches) take the middle of the stretch
        lo, hi = np.searchsorted(q, value, side="left"), np.searchsorted(q, value, side="right")
        pct = float(np.clip((lo + hi) / 2 - 0.5, 0, 100)) if hi > lo else float(np.clip(lo - 0.5, 0, 100))
        rows.append({"feature": r.name, "value": value, "percentile": pct, "p5": q[5], "p50": q[50], "p95": q[95],
                     "corpus_chunks": int(dist.loc[r.name, "n"])})
    return pd.DataFrame(rows, columns=["feature", "value", "percentile", "p5", "p50", "p95", "corpus_chunks"])


# --------------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------------

def runs(db: str, *, limit: int = 100) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame() if v is None else _runs(db, v, int(limit))


@st.cache_data(show_spinner=False, max_entries=16)
def _runs(db: str, v: tuple, limit: int) -> pd.DataFrame:
    df = wq.runs(db=db, limit=limit)
    made = _read("""
        SELECT run_id, list(DISTINCT folder) FILTER (WHERE folder IS NOT NULL) AS folders,
               string_agg(DISTINCT emotion_model, ', ') AS emotion_models,
               string_agg(DISTINCT coalesce(whisper_model, 'off'), ', ')
                   FILTER (WHERE status = 'ok') AS whisper_models
        FROM files WHERE run_id IN (SELECT run_id FROM runs ORDER BY run_id DESC LIMIT ?) GROUP BY run_id
    """, [limit], db=db).set_index("run_id")
    folder, emotion, whisper = [], [], []
    for r in df.itertuples():
        summary = _run_summary(getattr(r, "summary", None))
        models = summary.get("models") if isinstance(summary.get("models"), dict) else {}
        row = made.loc[r.run_id] if r.run_id in made.index else None
        folders = [] if row is None or missing(row["folders"]) else [str(x) for x in row["folders"]]
        root = summary.get("root") or summary.get("folder")
        folder.append(str(root) if root else _common_folder(folders))
        emotion.append(models.get("emotion") or (None if row is None else _opt_str(row["emotion_models"])))
        whisper.append(models.get("whisper") or (None if row is None else _opt_str(row["whisper_models"])))
    keep = ["run_id", "source", "status", "started_at", "finished_at", "n_files", "n_failed", "n_skipped"]
    out = df[[c for c in keep if c in df.columns]].copy()
    out.insert(1, "folder", folder)
    out.insert(2, "emotion model", emotion)
    out.insert(3, "whisper", whisper)
    if "finished_at" in out.columns:
        out["seconds"] = (out["finished_at"] - out["started_at"]).dt.total_seconds()
    return out


def _run_summary(value: Any) -> dict[str, Any]:
    if missing(value) or not value:
        return {}
    try:
        out = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _common_folder(folders: list[str]) -> str | None:
    """The folder a run ingested, as far as its files tell: the deepest folder holding all of them."""
    if not folders:
        return None
    try:
        return os.path.commonpath(folders)
    except ValueError:  # mixed absolute and relative
        return folders[0]


def failures(db: str) -> pd.DataFrame:
    """Failed and skipped files grouped by reason (``warehouse.queries.failures_by_reason``)."""
    v = version(db)
    return pd.DataFrame() if v is None else _failures(db, v)


@st.cache_data(show_spinner=False, max_entries=16)
def _failures(db: str, v: tuple) -> pd.DataFrame:
    return wq.failures_by_reason(db=db)


def failed_files(db: str, *, limit: int = 500) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame() if v is None else _failed_files(db, v, int(limit))


@st.cache_data(show_spinner=False, max_entries=16)
def _failed_files(db: str, v: tuple, limit: int) -> pd.DataFrame:
    return _read(f"""
        SELECT path, status, error AS reason, error_type, run_id, ingested_at FROM files
        WHERE status IN ('failed', 'skipped') ORDER BY ingested_at DESC, file_id DESC LIMIT {limit}
    """, db=db)


def run_file_count(db: str, run_id: int) -> int:
    """Files rows written so far by a run (uncached: for progress polling)."""
    return int(_read("SELECT count(*) AS n FROM files WHERE run_id = ?", [int(run_id)], db=db)["n"].iloc[0])


def latest_run_since(db: str, since: _dt.datetime) -> dict[str, Any] | None:
    """The newest run started at or after ``since`` (UTC, naive), uncached."""
    if not Path(db).exists():
        return None
    df = _read("SELECT * FROM runs WHERE started_at >= ? ORDER BY run_id DESC LIMIT 1", [since], db=db)
    return None if df.empty else df.iloc[0].to_dict()


def clear_caches() -> None:
    """Forget every cached query (after this process wrote to the warehouse)."""
    st.cache_data.clear()


# --------------------------------------------------------------------------------------------------
# SQL tab
# --------------------------------------------------------------------------------------------------

def run_sql(db: str, sql: str, *, limit: int = 10_000) -> warehouse.QueryResult:
    """Analyst SQL through the warehouse's read-only sandbox (never cached: analysts expect fresh rows).

    Raises:
        warehouse.WarehouseError: (QueryError) DuckDB's own message.
    """
    return warehouse.query(sql, db=db, limit=limit)


def file_export_dict(db: str, file_id: int) -> dict[str, Any] | None:
    """One file's stored results as a JSON-ready dict: the file row and its chunks with every emotion
    (base: None = absent), words and explanation summary."""
    info = file_info(db, file_id)
    if info is None:
        return None
    chunks = file_chunks(db, file_id)
    long = _read("""
        SELECT e.chunk_id, e.kind, e.label, e.score, e.granular_kind FROM emotions e
        WHERE e.chunk_id IN (SELECT chunk_id FROM chunks WHERE file_id = ?) ORDER BY e.chunk_id
    """, [int(file_id)], db=db)
    expl = _read("""
        SELECT chunk_id, target_label, tier, shap_method, shap_base_value, shap_full_value, lime_method, lime_score,
               surrogate_r2, faithfulness FROM explanations
        WHERE chunk_id IN (SELECT chunk_id FROM chunks WHERE file_id = ?)
    """, [int(file_id)], db=db)
    by_chunk: dict[int, list] = {}
    for r in long.itertuples():
        by_chunk.setdefault(int(r.chunk_id), []).append(r)
    out_chunks = []
    for c in chunks.itertuples():
        rows = by_chunk.get(int(c.chunk_id), [])
        ex = expl[expl["chunk_id"] == c.chunk_id]
        out_chunks.append({
            "chunk_id": int(c.chunk_id), "idx": int(c.idx), "start_s": float(c.start_s), "end_s": float(c.end_s),
            "dominant": _opt_str(c.dominant), "dominant_score": _opt_float(c.dominant_score),
            "speaker": _opt_str(c.speaker),
            "base": {r.label: _opt_float(r.score) for r in rows if r.kind == "base"},
            "extra": {r.label: _opt_float(r.score) for r in rows if r.kind == "extra"},
            "granular": [{"name": r.label, "confidence": _opt_float(r.score), "kind": _opt_str(r.granular_kind)}
                         for r in rows if r.kind == "granular"],
            "complex": [{"name": r.label, "confidence": _opt_float(r.score)} for r in rows if r.kind == "complex"],
            "transcript": _opt_str(c.transcript), "language": _opt_str(c.language),
            "explanations": [{
                "target_label": e.target_label, "tier": _opt_str(e.tier), "shap_method": _opt_str(e.shap_method),
                "shap_base_value": _opt_float(e.shap_base_value), "shap_full_value": _opt_float(e.shap_full_value),
                "lime_method": _opt_str(e.lime_method), "lime_score": _opt_float(e.lime_score),
                "surrogate_r2": _opt_float(e.surrogate_r2), "faithfulness": faithfulness_of(e.faithfulness),
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


__all__ = [
    "ChunkContext", "Figures", "FilterOptions", "Filters", "NO_LANGUAGE", "Status", "by_group", "chunk_context",
    "chunk_emotions", "chunk_explanation", "chunk_features", "chunk_words", "clear_caches", "emotion_mix",
    "failed_files", "failures", "feature_distribution", "feature_percentiles", "figures", "file_chunks",
    "file_choices", "file_export_dict", "file_info", "files_table", "filter_options", "latest_run_since",
    "over_time", "run_file_count", "run_sql", "runs", "selection_rows", "speaker_file_count", "speaker_mix",
    "status", "stored_explanation", "time_grain", "version",
]
