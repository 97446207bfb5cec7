"""Named queries of the Overview: corpus figures and aggregates of a ``Filters`` selection.

Aggregation happens in SQL: only aggregated rows come back to pandas. Every function takes the
selection and ``db`` (a path; None = the configured database) and reads through ``read_df``, so reads
wait for a writer instead of failing. The emotion mix of a selection is ``warehouse.queries.emotion_mix``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.types import BASE_EMOTIONS
from warehouse.filters import GRAINS, NO_LANGUAGE, TIME_SQL, Filters
from warehouse.queries import DB
from warehouse.rows import missing, opt_str
from warehouse.sql import read_df


def _read(sql: str, params: list[Any] | None = None, *, db: DB) -> pd.DataFrame:
    return read_df(sql, params or None, db=db)


def version(*, db: DB) -> tuple | None:
    """What changes whenever the warehouse does (row counts and latest timestamps of files, runs and
    explanations); None when the database file does not exist yet. The dashboard keys its caches on it."""
    if db is not None and not Path(db).exists():
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


def status(*, db: DB) -> Status:
    """Whole-database counts of an existing database."""
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


def filter_options(*, db: DB) -> FilterOptions:
    """The values the sidebar filters can take: folders, languages, emotion models, recording-date range."""
    files = _read(f"""
        SELECT list(DISTINCT folder ORDER BY folder) FILTER (WHERE folder IS NOT NULL) AS folders,
               list(DISTINCT emotion_model ORDER BY emotion_model) FILTER (WHERE emotion_model IS NOT NULL) AS models,
               min(CAST({TIME_SQL} AS DATE)) AS dmin, max(CAST({TIME_SQL} AS DATE)) AS dmax
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


def figures(filters: Filters, *, db: DB) -> Figures:
    """Files, audio and speech hours, chunks of the selection; failed and skipped files of its folders/dates."""
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


def selection_models(filters: Filters, *, db: DB) -> list[tuple[str | None, bool]]:
    """(emotion model, trained) of the analysed files the filters keep (file-level filters), most files first:
    what the model caveats of a page or report have to cover."""
    fw, fp = filters.file_where()
    df = _read(f"""SELECT f.emotion_model, coalesce(f.emotion_trained, false) AS trained, count(*) AS n
                   FROM files f WHERE {fw} GROUP BY ALL ORDER BY n DESC, 1""", fp, db=db)
    return [(opt_str(r.emotion_model), bool(r.trained)) for r in df.itertuples()]


def over_time(filters: Filters, grain: str, *, db: DB) -> pd.DataFrame:
    """Chunks per (period, dominant emotion); period = recording time truncated to ``grain``."""
    if grain not in dict(GRAINS):
        raise ValueError(f"grain must be one of {', '.join(dict(GRAINS))}, not {grain!r}")
    sel, sp = filters.selection()
    return _read(f"""
        SELECT date_trunc('{grain}', {TIME_SQL}) AS period, c.dominant AS label, count(*) AS chunks
        {sel} AND c.dominant IS NOT NULL
        GROUP BY ALL ORDER BY period, label
    """, sp, db=db)


#: Groupings of ``by_group``: (key expression, display-name expression), over files f.
GROUPS = {"folder": ("f.folder", "f.folder"), "file": ("f.file_id", "any_value(f.path)")}


def _check_group(by: str) -> None:
    if by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}, not {by!r}")


def by_group(filters: Filters, by: str, *, top: int = 20, db: DB) -> pd.DataFrame:
    """Chunks per (group, dominant emotion) for the ``top`` groups with most chunks.

    Columns: group (folder, or file path), group_id (folder or file_id), label, chunks, total.
    """
    _check_group(by)
    key, name = GROUPS[by]
    sel, sp = filters.selection()
    return _read(f"""
        WITH sel AS (SELECT {key} AS gid, c.dominant {sel}),
             topg AS (SELECT gid, count(*) AS total FROM sel GROUP BY gid ORDER BY total DESC, gid LIMIT {int(top)}),
             names AS (SELECT {key} AS gid, {name} AS grp FROM files f WHERE {key} IN (SELECT gid FROM topg)
                       GROUP BY {key})
        SELECT n.grp AS "group", CAST(s.gid AS VARCHAR) AS group_id, s.dominant AS label, count(*) AS chunks,
               any_value(t.total) AS total
        FROM sel s JOIN topg t USING (gid) JOIN names n USING (gid)
        WHERE s.dominant IS NOT NULL
        GROUP BY ALL ORDER BY total DESC, "group", label
    """, sp, db=db)


def group_count(filters: Filters, by: str, *, db: DB) -> int:
    """How many groups (folders, or files) of the selection have a chunk with a dominant emotion: the
    "of N" when a chart shows only the top ones."""
    _check_group(by)
    sel, sp = filters.selection()
    return int(_read(f"SELECT count(DISTINCT {GROUPS[by][0]}) AS n {sel} AND c.dominant IS NOT NULL", sp,
                     db=db)["n"].iloc[0])


#: Files with more than one speaker label among their chunks (labels are per file: S1 of one file is not S1 of
#: another, so nothing below joins or sums a label across files).
_MULTI_SPEAKER = ("SELECT file_id FROM chunks WHERE speaker IS NOT NULL GROUP BY file_id "
                  "HAVING count(DISTINCT speaker) > 1")


def speaker_mix(filters: Filters, *, top: int = 20, db: DB) -> pd.DataFrame:
    """Chunks per (file, speaker, dominant emotion) for files with several speakers, the ``top`` such files
    of the selection with most chunks. Chunks without a speaker label are left out.

    Columns: file_id, path, speaker, label, chunks, total (chunks of that file's speaker), file_total.
    """
    sel, sp = filters.selection()
    return _read(f"""
        WITH sel AS (SELECT c.file_id, c.speaker, c.dominant {sel} AND c.speaker IS NOT NULL
                       AND c.dominant IS NOT NULL AND c.file_id IN ({_MULTI_SPEAKER})),
             topf AS (SELECT file_id, count(*) AS file_total FROM sel GROUP BY file_id
                      ORDER BY file_total DESC, file_id LIMIT {int(top)}),
             per AS (SELECT file_id, speaker, count(*) AS total FROM sel GROUP BY ALL)
        SELECT s.file_id, f.path, s.speaker, s.dominant AS label, count(*) AS chunks, any_value(p.total) AS total,
               any_value(t.file_total) AS file_total
        FROM sel s JOIN topf t USING (file_id) JOIN per p USING (file_id, speaker) JOIN files f USING (file_id)
        GROUP BY s.file_id, f.path, s.speaker, s.dominant
        ORDER BY file_total DESC, s.file_id, coalesce(TRY_CAST(substr(s.speaker, 2) AS INTEGER), 1000000),
                 s.speaker, label
    """, sp, db=db)


def speaker_file_count(filters: Filters, *, db: DB) -> int:
    """Files of the selection with several speakers and a labelled chunk (the "of M" of ``speaker_mix``)."""
    sel, sp = filters.selection()
    return int(_read(f"""SELECT count(DISTINCT c.file_id) AS n {sel} AND c.speaker IS NOT NULL
                         AND c.dominant IS NOT NULL AND c.file_id IN ({_MULTI_SPEAKER})""", sp, db=db)["n"].iloc[0])


def selection_file_count(filters: Filters, *, db: DB) -> int:
    """Files of the selection (the "of N" of the files table)."""
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


def time_basis(filters: Filters, *, db: DB) -> TimeBasis:
    sel, sp = filters.selection()
    r = _read(f"""SELECT count(DISTINCT f.file_id) FILTER (WHERE f.recorded_at IS NOT NULL) AS recorded,
                         count(DISTINCT f.file_id) AS files {sel}""", sp, db=db).iloc[0]
    return TimeBasis(int(r["recorded"]), int(r["files"]))


#: Columns of ``files_table``.
FILES_TABLE_COLUMNS = ["file_id", "path", "folder", "duration_s", "chunks", "top_emotion", "emotion_model",
                       "emotion_trained", "recorded_at"]


def files_table(filters: Filters, *, limit: int = 200, db: DB) -> pd.DataFrame:
    """Files of the selection, newest first: file_id, path, folder, duration_s, chunks (selected),
    top_emotion (most frequent dominant), emotion_model, emotion_trained, recorded_at."""
    fw, fp = filters.file_where()
    cw, cp = filters.chunk_where()
    join = "JOIN" if filters.chunk_level else "LEFT JOIN"
    return _read(f"""
        WITH page AS (
            SELECT f.file_id FROM files f WHERE {fw}
              {"AND f.file_id IN (SELECT c.file_id FROM chunks c WHERE " + cw + ")" if filters.chunk_level else ""}
            ORDER BY f.ingested_at DESC, f.file_id DESC LIMIT {int(limit)})
        SELECT f.file_id, f.path, f.folder, f.duration_s, count(c.chunk_id) AS chunks,
               mode(c.dominant) AS top_emotion, f.emotion_model, f.emotion_trained,
               {TIME_SQL} AS recorded_at, f.ingested_at
        FROM files f {join} chunks c ON c.file_id = f.file_id AND {cw}
        WHERE f.file_id IN (SELECT file_id FROM page)
        GROUP BY ALL ORDER BY f.ingested_at DESC, f.file_id DESC
    """, fp + (cp if filters.chunk_level else []) + cp, db=db)


def selection_rows(filters: Filters, *, limit: int = 100_000, db: DB) -> pd.DataFrame:
    """The selected chunks, one row each with their file and six base probabilities (NaN = absent),
    for CSV/JSON exports; at most ``limit`` rows (newest files first)."""
    sel, sp = filters.selection()
    pivots = ", ".join(f"max(e.score) FILTER (WHERE e.label = '{b}') AS {b}" for b in BASE_EMOTIONS)
    return _read(f"""
        WITH picked AS (SELECT c.chunk_id, f.ingested_at {sel} ORDER BY f.ingested_at DESC, c.chunk_id
                        LIMIT {int(limit)})
        SELECT f.file_id, f.path, f.folder, f.emotion_model, f.emotion_trained, {TIME_SQL} AS recorded_at,
               f.ingested_at, c.chunk_id, c.idx AS chunk, c.start_s, c.end_s, c.dominant, c.dominant_score, c.language,
               c.transcript, {pivots}
        FROM picked p JOIN chunks c USING (chunk_id) JOIN files f USING (file_id)
        LEFT JOIN emotions e ON e.chunk_id = c.chunk_id AND e.kind = 'base'
        GROUP BY ALL ORDER BY f.ingested_at DESC, c.chunk_id
    """, sp, db=db)
