"""Pieces every page shares: configuration and database, empty states, error display, file and chunk
pickers (kept in ``st.session_state`` and in the URL's query parameters, so a link opens the same view).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import pandas as pd
import streamlit as st

from dashboard import data
from pipeline.config import Config, load_config

logger = logging.getLogger(__name__)

FILE_KEY = "ev_file_id"
CHUNK_KEY = "ev_chunk_id"
#: Page files, relative to dashboard/app.py (for st.switch_page).
PAGES = {
    "overview": "pages/1_Overview.py",
    "file": "pages/2_File.py",
    "explain": "pages/3_Explain.py",
    "sql": "pages/4_SQL.py",
    "runs": "pages/5_Runs.py",
    "live": "pages/6_Live.py",
}


_NAVIGATION_FIXED = False


def ensure_app_navigation() -> None:
    """Make a deep link (e.g. ``/File?file=3``) on a fresh server run through ``dashboard/app.py``.

    Streamlit treats an app whose main script has a ``pages/`` folder beside it as an old-style
    multipage app until ``st.navigation`` has run once in the process; until then a deep link runs the
    page file alone (no app navigation, no page config). Switching that mode off and rerunning makes
    the main script, and so ``st.navigation``, run and pick the same page. Done once per process (the
    first run has no widget interaction a rerun could lose).
    """
    global _NAVIGATION_FIXED
    if _NAVIGATION_FIXED:  # once per process: after that st.navigation has run and the mode is set
        return
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without this internal: nothing to fix
        return
    _NAVIGATION_FIXED = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def config() -> Config:
    """The configuration (``EMOTIVOICE_*`` variables, ``emotivoice.toml``), read on every rerun."""
    return load_config()


def db_path(cfg: Config) -> str:
    from warehouse import resolve_db

    return str(resolve_db(cfg.db))


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show warehouse problems as a plain message (never a traceback) and stop the page."""
    from warehouse import SchemaVersionError, WarehouseBusyError, WarehouseError

    try:
        yield
    except WarehouseBusyError as exc:
        st.warning(f"The database is busy right now ({exc}). Try again in a moment.")
        st.stop()
    except SchemaVersionError as exc:
        st.error(str(exc))
        st.stop()
    except WarehouseError as exc:
        logger.exception("dashboard query failed")
        st.error(f"The warehouse could not answer: {exc}")
        st.stop()


def empty_state(db: str, status: data.Status) -> bool:
    """Draw the friendly empty state when there is nothing to show; True when drawn."""
    if not status.exists:
        st.info(f"No database yet at `{db}`. Ingest recordings first:\n\n"
                f"```\nemotivoice ingest FOLDER --db {db}\n```\n\nor start an ingestion from the **Runs** page.")
        return True
    if status.empty:
        st.info(f"The warehouse `{db}` is empty. Ingest recordings with\n\n"
                f"```\nemotivoice ingest FOLDER --db {db}\n```\n\nor start an ingestion from the **Runs** page.")
        return True
    return False


def untrained_warning(model: str | None) -> None:
    st.warning(f"⚠️ **Not emotions.** These results come from an untrained (random-weight) emotion model "
               f"(`{model}`): its scores are model outputs, not emotions. Use them only to check the pipeline.")


def _query_int(name: str) -> int | None:
    value = st.query_params.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def current_file_id() -> int | None:
    qp = _query_int("file")
    if qp is not None:
        st.session_state[FILE_KEY] = qp
    return st.session_state.get(FILE_KEY)


def set_file(file_id: int | None) -> None:
    if file_id is None:
        return
    if st.session_state.get(FILE_KEY) != file_id:
        st.session_state.pop(CHUNK_KEY, None)
        st.query_params.pop("chunk", None)
    st.session_state[FILE_KEY] = int(file_id)
    st.query_params["file"] = str(int(file_id))


def set_chunk(chunk_id: int | None) -> None:
    if chunk_id is None:
        return
    st.session_state[CHUNK_KEY] = int(chunk_id)
    st.query_params["chunk"] = str(int(chunk_id))


def pick_file(db: str, *, key: str) -> int | None:
    """A searchable file picker; returns the chosen file_id (remembered across pages)."""
    current = current_file_id()
    search = st.text_input("Find a file (part of its path)", key=f"{key}_search", placeholder="e.g. Actor_01 or .wav")
    choices = data.file_choices(db, search)
    ids = [int(x) for x in choices["file_id"]]
    names = {int(r.file_id): r.path for r in choices.itertuples()}
    if current is not None and current not in ids:
        info = data.file_info(db, current)
        if info is not None and info.get("status") == "ok":
            ids.insert(0, current)
            names[current] = info["path"]
    if not ids:
        st.info("No analysed file matches." if search else "No analysed files yet.")
        return None
    index = ids.index(current) if current in ids else 0
    chosen = st.selectbox("File", ids, index=index, key=f"{key}_file",
                          format_func=lambda i: f"{names.get(i, i)}  (#{i})")
    set_file(chosen)
    return chosen


def pick_chunk(chunks: pd.DataFrame, *, key: str, trained: bool = True) -> int | None:
    """A chunk picker over a file's chunks; returns the chosen chunk_id (remembered across pages)."""
    if chunks.empty:
        return None
    ids = [int(x) for x in chunks["chunk_id"]]
    qp = _query_int("chunk")
    if qp in ids:
        st.session_state[CHUNK_KEY] = qp
    current = st.session_state.get(CHUNK_KEY)
    index = ids.index(current) if current in ids else 0
    rows = {int(r.chunk_id): r for r in chunks.itertuples()}
    tag = "" if trained else " (not an emotion)"

    def fmt(cid: int) -> str:
        r = rows[cid]
        dom = r.dominant if isinstance(r.dominant, str) else "—"
        return f"chunk {r.idx}: {r.start_s:.2f}–{r.end_s:.2f} s · {dom}{tag}"

    chosen = st.selectbox("Chunk", ids, index=index, key=f"{key}_chunk", format_func=fmt)
    set_chunk(chosen)
    return chosen


def base_cells(value: float | None, absent: bool) -> str:
    """A base probability as table text: 'absent' for a class the model lacks (never 0)."""
    if absent:
        return "absent"
    if value is None or pd.isna(value):
        return "—"
    return f"{value:.3f}"


def short(path: str, n: int = 60) -> str:
    name = Path(path).name
    return name if len(name) <= n else "…" + name[-n:]


def file_page(title: str, *, key: str):
    """The shared opening of the File and Explain pages: title, empty state, file picker.

    Returns (config, db, file_id), or None when there is nothing to show (the page says why).
    """
    ensure_app_navigation()
    cfg = config()
    db = db_path(cfg)
    st.title(title)
    file_id = None
    with guard():
        if empty_state(db, data.status(db)):
            return None
        file_id = pick_file(db, key=key)
    return None if file_id is None else (cfg, db, file_id)
