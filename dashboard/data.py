"""Every query the dashboard runs, as cached calls of the warehouse's named queries.

The SQL lives in ``warehouse`` (``queries_overview``: the Overview's aggregates of a ``Filters``
selection; ``queries_files``: one file and one chunk; ``queries``: emotion mix, runs, failures,
explanations); stored rows become objects in ``warehouse.rows``. This module only caches them.

Results are cached with ``st.cache_data`` keyed on the database path, a *warehouse version* (row
counts and latest timestamps of files, runs and explanations, re-read at most every ``VERSION_TTL_S``
seconds) and the arguments, so a new ingestion, a finished run or a replaced explanation shows up on
the next rerun without clearing anything. (The ``v`` argument of the private cached functions is that
version: unused in the body, it only keys the cache.) Before the database file exists every call
answers its empty value.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pandas as pd
import streamlit as st

import warehouse
from warehouse import queries as wq
from warehouse import queries_files as qf
from warehouse import queries_overview as qo
from warehouse import rows
from warehouse.filters import GRAINS, Filters

#: Seconds between two reads of the warehouse version (the cache key of every other query).
VERSION_TTL_S = 2.0


@st.cache_data(ttl=VERSION_TTL_S, show_spinner=False, max_entries=16)
def version(db: str) -> tuple | None:
    """What changes whenever the warehouse does; None when the database file does not exist yet."""
    return qo.version(db=db)


# --------------------------------------------------------------------------------------------------
# corpus figures and Overview aggregates
# --------------------------------------------------------------------------------------------------

def status(db: str) -> qo.Status:
    v = version(db)
    return qo.Status(exists=False) if v is None else _status(db, v)


@st.cache_data(show_spinner=False, max_entries=32)
def _status(db: str, v: tuple) -> qo.Status:
    return qo.status(db=db)


def filter_options(db: str) -> qo.FilterOptions:
    v = version(db)
    return qo.FilterOptions() if v is None else _filter_options(db, v)


@st.cache_data(show_spinner=False, max_entries=32)
def _filter_options(db: str, v: tuple) -> qo.FilterOptions:
    return qo.filter_options(db=db)


def figures(db: str, filters: Filters) -> qo.Figures:
    v = version(db)
    return qo.Figures(0, 0.0, 0.0, 0, 0, 0) if v is None else _figures(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _figures(db: str, v: tuple, filters: Filters) -> qo.Figures:
    return qo.figures(filters, db=db)


def selection_models(db: str, filters: Filters) -> list[tuple[str | None, bool]]:
    """(emotion model, trained) of the analysed files the filters keep, most files first."""
    v = version(db)
    return [] if v is None else _selection_models(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=32)
def _selection_models(db: str, v: tuple, filters: Filters) -> list[tuple[str | None, bool]]:
    return qo.selection_models(filters, db=db)


def emotion_mix(db: str, filters: Filters) -> pd.DataFrame:
    """Per base label over the selection (``warehouse.queries.emotion_mix(by=None)``)."""
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["label", "dominant_chunks", "share", "mean_score", "present_chunks"])
    return _emotion_mix(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _emotion_mix(db: str, v: tuple, filters: Filters) -> pd.DataFrame:
    return wq.emotion_mix(None, filters=filters, db=db)


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
    return qo.over_time(filters, grain, db=db)


def by_group(db: str, filters: Filters, by: str, *, top: int = 20) -> pd.DataFrame:
    """Chunks per (group, dominant emotion) for the ``top`` groups with most chunks (``qo.by_group``)."""
    if by not in qo.GROUPS:
        raise ValueError(f"by must be one of {', '.join(qo.GROUPS)}, not {by!r}")
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["group", "group_id", "label", "chunks", "total"])
    return _by_group(db, v, filters, by, int(top))


@st.cache_data(show_spinner=False, max_entries=64)
def _by_group(db: str, v: tuple, filters: Filters, by: str, top: int) -> pd.DataFrame:
    return qo.by_group(filters, by, top=top, db=db)


def group_count(db: str, filters: Filters, by: str) -> int:
    """How many groups of the selection have a chunk with a dominant emotion (``qo.group_count``)."""
    if by not in qo.GROUPS:
        raise ValueError(f"by must be one of {', '.join(qo.GROUPS)}, not {by!r}")
    v = version(db)
    return 0 if v is None else _group_count(db, v, filters, by)


@st.cache_data(show_spinner=False, max_entries=64)
def _group_count(db: str, v: tuple, filters: Filters, by: str) -> int:
    return qo.group_count(filters, by, db=db)


def speaker_mix(db: str, filters: Filters, *, top: int = 20) -> pd.DataFrame:
    """Chunks per (file, speaker, dominant emotion) for files with several speakers (``qo.speaker_mix``)."""
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["file_id", "path", "speaker", "label", "chunks", "total", "file_total"])
    return _speaker_mix(db, v, filters, int(top))


@st.cache_data(show_spinner=False, max_entries=64)
def _speaker_mix(db: str, v: tuple, filters: Filters, top: int) -> pd.DataFrame:
    return qo.speaker_mix(filters, top=top, db=db)


def speaker_file_count(db: str, filters: Filters) -> int:
    v = version(db)
    return 0 if v is None else _speaker_file_count(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _speaker_file_count(db: str, v: tuple, filters: Filters) -> int:
    return qo.speaker_file_count(filters, db=db)


def selection_file_count(db: str, filters: Filters) -> int:
    v = version(db)
    return 0 if v is None else _selection_file_count(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _selection_file_count(db: str, v: tuple, filters: Filters) -> int:
    return qo.selection_file_count(filters, db=db)


def time_basis(db: str, filters: Filters) -> qo.TimeBasis:
    v = version(db)
    return qo.TimeBasis(0, 0) if v is None else _time_basis(db, v, filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _time_basis(db: str, v: tuple, filters: Filters) -> qo.TimeBasis:
    return qo.time_basis(filters, db=db)


def files_table(db: str, filters: Filters, *, limit: int = 200) -> pd.DataFrame:
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=qo.FILES_TABLE_COLUMNS)
    return _files_table(db, v, filters, int(limit))


@st.cache_data(show_spinner=False, max_entries=64)
def _files_table(db: str, v: tuple, filters: Filters, limit: int) -> pd.DataFrame:
    return qo.files_table(filters, limit=limit, db=db)


def selection_rows(db: str, filters: Filters, *, limit: int = 100_000) -> pd.DataFrame:
    """The selected chunks with their file and base probabilities, for exports (``qo.selection_rows``)."""
    v = version(db)
    return pd.DataFrame() if v is None else _selection_rows(db, v, filters, int(limit))


@st.cache_data(show_spinner=False, max_entries=8)
def _selection_rows(db: str, v: tuple, filters: Filters, limit: int) -> pd.DataFrame:
    return qo.selection_rows(filters, limit=limit, db=db)


# --------------------------------------------------------------------------------------------------
# one file, one chunk
# --------------------------------------------------------------------------------------------------

def file_choices(db: str, search: str = "", *, limit: int = 500) -> pd.DataFrame:
    v = version(db)
    if v is None:
        return pd.DataFrame(columns=["file_id", "path", "n_chunks", "emotion_trained"])
    return _file_choices(db, v, search.strip(), int(limit))


@st.cache_data(show_spinner=False, max_entries=64)
def _file_choices(db: str, v: tuple, search: str, limit: int) -> pd.DataFrame:
    return qf.file_choices(search, limit=limit, db=db)


def file_info(db: str, file_id: int) -> dict[str, Any] | None:
    v = version(db)
    return None if v is None else _file_info(db, v, int(file_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _file_info(db: str, v: tuple, file_id: int) -> dict[str, Any] | None:
    return qf.file_info(file_id, db=db)


def file_chunks(db: str, file_id: int) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame() if v is None else _file_chunks(db, v, int(file_id))


@st.cache_data(show_spinner=False, max_entries=32)
def _file_chunks(db: str, v: tuple, file_id: int) -> pd.DataFrame:
    return qf.file_chunks(file_id, db=db)


def chunk_emotions(db: str, chunk_id: int) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame() if v is None else _chunk_emotions(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _chunk_emotions(db: str, v: tuple, chunk_id: int) -> pd.DataFrame:
    return qf.chunk_emotions(chunk_id, db=db)


def chunk_words(db: str, chunk_id: int) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame() if v is None else _chunk_words(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _chunk_words(db: str, v: tuple, chunk_id: int) -> pd.DataFrame:
    return qf.chunk_words(chunk_id, db=db)


def chunk_context(db: str, chunk_id: int) -> qf.ChunkContext | None:
    v = version(db)
    return None if v is None else _chunk_context(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _chunk_context(db: str, v: tuple, chunk_id: int) -> qf.ChunkContext | None:
    return qf.chunk_context(chunk_id, db=db)


def feature_distribution(db: str) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame(columns=["name", "q", "n"]) if v is None else _feature_distribution(db, v)


@st.cache_data(show_spinner=False, max_entries=8)
def _feature_distribution(db: str, v: tuple) -> pd.DataFrame:
    return qf.feature_distribution(db=db)


def chunk_features(db: str, chunk_id: int) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame(columns=["name", "value"]) if v is None else _chunk_features(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _chunk_features(db: str, v: tuple, chunk_id: int) -> pd.DataFrame:
    return qf.chunk_features(chunk_id, db=db)


def feature_percentiles(db: str, chunk_id: int) -> pd.DataFrame:
    """The chunk's acoustic features against the corpus (``warehouse.rows.feature_percentiles``)."""
    mine = chunk_features(db, chunk_id)
    dist = feature_distribution(db) if not mine.empty else pd.DataFrame(columns=["name", "q", "n"])
    return rows.feature_percentiles(mine, dist)


def file_export_dict(db: str, file_id: int) -> dict[str, Any] | None:
    """One file's stored results as a JSON-ready dict (``warehouse.queries_files.file_export``)."""
    info = file_info(db, file_id)
    if info is None:
        return None
    return qf.file_export(info, file_chunks(db, file_id), db=db)


# --------------------------------------------------------------------------------------------------
# explanations
# --------------------------------------------------------------------------------------------------

def chunk_explanation(db: str, chunk_id: int) -> wq.ChunkExplanation | None:
    v = version(db)
    return None if v is None else _chunk_explanation(db, v, int(chunk_id))


@st.cache_data(show_spinner=False, max_entries=32)
def _chunk_explanation(db: str, v: tuple, chunk_id: int) -> wq.ChunkExplanation:
    return wq.chunk_explanation(chunk_id, db=db)


def faithfulness_overview(db: str) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame() if v is None else _faithfulness_overview(db, v)


@st.cache_data(show_spinner=False, max_entries=16)
def _faithfulness_overview(db: str, v: tuple) -> pd.DataFrame:
    return wq.faithfulness_overview(db=db)


# --------------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------------

def runs(db: str, *, limit: int = 100) -> pd.DataFrame:
    v = version(db)
    return pd.DataFrame() if v is None else _runs(db, v, int(limit))


@st.cache_data(show_spinner=False, max_entries=16)
def _runs(db: str, v: tuple, limit: int) -> pd.DataFrame:
    return wq.runs_overview(limit=limit, db=db)


def failures(db: str) -> pd.DataFrame:
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
    return wq.failed_files(limit=limit, db=db)


def run_file_count(db: str, run_id: int) -> int:
    """Files rows written so far by a run (uncached: for progress polling)."""
    return wq.run_file_count(run_id, db=db)


def latest_run_since(db: str, since: _dt.datetime) -> dict[str, Any] | None:
    """The newest run started at or after ``since`` (UTC, naive), uncached."""
    return wq.latest_run_since(since, db=db)


def clear_caches() -> None:
    """Forget every cached query (after this process wrote to the warehouse)."""
    st.cache_data.clear()


def run_sql(db: str, sql: str, *, limit: int = 10_000) -> warehouse.QueryResult:
    """Analyst SQL through the warehouse's read-only sandbox (never cached: analysts expect fresh rows).

    Raises:
        warehouse.WarehouseError: (QueryError) DuckDB's own message.
    """
    return warehouse.query(sql, db=db, limit=limit)


__all__ = [
    "VERSION_TTL_S", "by_group", "chunk_context", "chunk_emotions", "chunk_explanation", "chunk_features",
    "chunk_words", "clear_caches", "emotion_mix", "failed_files", "failures", "faithfulness_overview",
    "feature_distribution", "feature_percentiles", "figures", "file_chunks", "file_choices", "file_export_dict",
    "file_info", "files_table", "filter_options", "group_count", "latest_run_since", "over_time", "run_file_count",
    "run_sql", "runs", "selection_file_count", "selection_models", "selection_rows", "speaker_file_count",
    "speaker_mix", "status", "time_basis", "version",
]
