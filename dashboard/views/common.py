"""Pieces every page shares: configuration and database, empty states, error display, file and chunk
pickers (kept in ``st.session_state`` and in the URL's query parameters, so a link opens the same view).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from pathlib import Path
from typing import Iterator

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.safe_text import md_escape  # noqa: F401  (pages use common.md_escape)
from pipeline import Config, load_config
from warehouse.queries_overview import Status

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
    """Make a deep link (e.g. ``/file?file=3``) on a fresh server run through ``dashboard/app.py``.

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
        st.warning(f"The database is busy right now ({md_escape(exc)}). Try again in a moment.")
        st.stop()
    except SchemaVersionError as exc:
        st.error(md_escape(exc))
        st.stop()
    except WarehouseError as exc:
        logger.exception("dashboard query failed")
        st.error(f"The warehouse could not answer: {md_escape(exc)}")
        st.stop()


def empty_state(db: str, status: Status) -> bool:
    """Draw the friendly empty state when there is nothing to show; True when drawn."""
    if not status.exists or status.empty:
        where = f"No database yet at {md_escape(db)}" if not status.exists else f"The warehouse {md_escape(db)} is empty"
        st.info(f"{where}. Ingest recordings with `emotivoice ingest FOLDER` (the command below), or start an "
                "ingestion from the **Runs** page.")
        st.code(f"emotivoice ingest FOLDER --db {shlex.quote(str(db))}", language="bash")
        return True
    return False


def untrained_warning(model: str | None) -> None:
    st.warning(f"⚠️ **Not emotions.** These results come from an untrained (random-weight) emotion model "
               f"({md_escape(model)}): its scores are model outputs, not emotions. Use them only to check the "
               "pipeline.")


def caveats(models: list[tuple[str | None, bool]]) -> None:
    """What the emotion model(s) behind the page are, trained on what, how well they do on unseen speakers,
    and the intended-use / consent notice (``dashboard.caveats``), as plain captions."""
    from dashboard import caveats as cv

    for text in cv.model_caveats(models):
        st.caption(md_escape(text))
    st.caption(md_escape(cv.INTENDED_USE))


def _link_id(name: str) -> tuple[int | None, str | None]:
    """The id in the page's URL query (``?file=3``): (id, None), (None, the raw text) when it is not a
    number, or (None, None) when absent."""
    raw = st.query_params.get(name)
    if raw is None:
        return None, None
    try:
        return int(raw), None
    except ValueError:
        return None, str(raw)


def current_file_id() -> int | None:
    """The file chosen on any page (or given by the link, before a picker checked it)."""
    link, _ = _link_id("file")
    return st.session_state.get(FILE_KEY, link)


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


def _bad_link(name: str, raw: str) -> None:
    st.warning(f"The link's {name} id “{md_escape(raw)}” is not a number: pick a {name} below.")
    st.query_params.pop(name, None)


def pick_file(db: str, *, key: str) -> int | None:
    """A searchable file picker; returns the chosen file_id (remembered across pages and in the URL).

    A link's ``?file=ID`` is checked: an id that is not (or no longer) an analysed file of this warehouse
    is named in a warning. A search selects its (first) match unless the current file matches, and says
    when nothing matches.
    """
    link, bad = _link_id("file")
    if bad is not None:
        _bad_link("file", bad)
    current = st.session_state.get(FILE_KEY)
    if link is not None and link != current:  # a link opened in a new session, or a page switch with ?file=
        info = data.file_info(db, link)
        if info is None or info.get("status") != "ok":
            why = "is not in this warehouse (re-ingested or removed)" if info is None else \
                f"has no results (its ingestion {info.get('status')})"
            st.warning(f"File #{link} from the link {why}: pick a file below.")
            st.query_params.pop("file", None)
            st.query_params.pop("chunk", None)
        else:
            current = link
            st.session_state[FILE_KEY] = link
    search = st.text_input("Find a file (part of its path)", key=f"{key}_search", placeholder="e.g. Actor_01 or .wav")
    choices = data.file_choices(db, search)
    if search.strip() and choices.empty:
        st.warning(f"No analysed file's path contains “{md_escape(search.strip())}”.")
        choices = data.file_choices(db, "")
    elif search.strip() and current not in set(int(x) for x in choices["file_id"]):
        current = int(choices["file_id"].iloc[0])  # the search selects its match
    ids = [int(x) for x in choices["file_id"]]
    names = {int(r.file_id): r.path for r in choices.itertuples()}
    if current is not None and current not in ids and not search.strip():
        info = data.file_info(db, current)
        if info is not None and info.get("status") == "ok":  # older than the newest files listed
            ids.insert(0, current)
            names[current] = info["path"]
    if not ids:
        st.info("No analysed files yet.")
        return None
    wkey = f"{key}_file"
    if current in ids:
        st.session_state[wkey] = current
    elif st.session_state.get(wkey) not in ids:
        st.session_state[wkey] = ids[0]
    chosen = st.selectbox("File", ids, key=wkey, format_func=lambda i: f"{names.get(i, i)}  (#{i})",
                          on_change=lambda: set_file(st.session_state[wkey]))
    set_file(chosen)
    return chosen


def pick_chunk(chunks: pd.DataFrame, *, key: str, trained: bool = True) -> int | None:
    """A chunk picker over a file's chunks; returns the chosen chunk_id (remembered across pages and in
    the URL). A link's ``?chunk=ID`` that is not a chunk of this file is named in a warning."""
    if chunks.empty:
        return None
    ids = [int(x) for x in chunks["chunk_id"]]
    link, bad = _link_id("chunk")
    if bad is not None:
        _bad_link("chunk", bad)
    current = st.session_state.get(CHUNK_KEY)
    if link is not None and link != current:
        if link in ids:
            current = link
            st.session_state[CHUNK_KEY] = link
        else:
            st.warning(f"Chunk #{link} from the link is not a chunk of this file: showing its first chunk.")
            st.query_params.pop("chunk", None)
    rows = {int(r.chunk_id): r for r in chunks.itertuples()}
    tag = "" if trained else " (not an emotion)"

    def fmt(cid: int) -> str:
        r = rows[cid]
        dom = r.dominant if isinstance(r.dominant, str) else "—"
        return f"chunk {r.idx}: {r.start_s:.2f}–{r.end_s:.2f} s · {dom}{tag}"

    wkey = f"{key}_chunk"
    if current in ids:
        st.session_state[wkey] = current
    elif st.session_state.get(wkey) not in ids:
        st.session_state[wkey] = ids[0]
    chosen = st.selectbox("Chunk", ids, key=wkey, format_func=fmt,
                          on_change=lambda: set_chunk(st.session_state[wkey]))
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
