"""Export buttons that say when an export fails.

A download button whose data is a callable runs it after the click, outside the page script: when it
raises, the browser gets nothing and the page cannot say why (the issue "the File page's JSON and PDF
exports do nothing, silently"). So the exports here are made in the page script, inside ``try``:

* ``eager``: cheap exports (one file's JSON or CSV) are made on each run and offered as bytes;
* otherwise a **Make …** button makes the export (a PDF with charts takes seconds) and the download
  button appears under it, holding those bytes until the thing exported changes (``token``).

A failure is logged with its traceback and shown as one line naming the export and the reason, and the
page carries on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import streamlit as st

from dashboard.views.common import md_escape

logger = logging.getLogger(__name__)

_MADE = "ev_export_made"


@dataclass(frozen=True)
class Export:
    """One export offered on a page."""

    label: str
    """Button text, e.g. "JSON" or "PDF report"."""
    make: Callable[[], bytes]
    file_name: str
    mime: str
    key: str
    what: str
    """What is exported, for messages ("the PDF report of talk.wav"); user text, shown escaped."""
    eager: bool = False
    """Made on every run (cheap exports) instead of behind a **Make** button."""
    disabled: bool = False
    """Nothing to export (e.g. no chunk selected): the button is shown greyed out."""


def failure_line(what: str, exc: BaseException) -> str:
    """'<what> could not be made: <reason>' on one line (the reason is the exception's message)."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return f"{what} could not be made: {reason}"


def _make(export: Export) -> tuple[bytes | None, str | None]:
    try:
        out = export.make()
        if isinstance(out, str):
            out = out.encode("utf-8")
        return bytes(out), None
    except Exception as exc:  # an export must never take the page down; say what failed and why
        logger.exception("export %s (%s) failed", export.key, export.what)
        return None, failure_line(export.what, exc)


def offer(export: Export, token: Any, *, disabled: bool = False, container=None) -> None:
    """Draw one export (see the module doc). ``token`` identifies what is exported (file id and warehouse
    version, or the filters): a made export is offered only while the token is the same."""
    where = container if container is not None else st
    if disabled or export.disabled:
        where.download_button(export.label, b"", file_name=export.file_name, mime=export.mime,
                              key=export.key, disabled=True)
        return
    if export.eager:
        data, error = _make(export)
        if error is None:
            where.download_button(export.label, data, file_name=export.file_name, mime=export.mime,
                                  key=export.key, on_click="ignore")
        else:
            where.download_button(export.label, b"", file_name=export.file_name, mime=export.mime,
                                  key=export.key, disabled=True)
            where.error(md_escape(error))
        return
    made: dict[str, tuple[Any, bytes | None, str | None]] = st.session_state.setdefault(_MADE, {})
    if where.button(f"Make {export.label}", key=f"{export.key}_make", width="stretch"):
        with st.spinner(f"Making the {export.label}…"):
            data, error = _make(export)
        made[export.key] = (token, data, error)
    entry = made.get(export.key)
    if entry is None or entry[0] != token:
        return
    _, data, error = entry
    if error is not None:
        where.error(md_escape(error))
    else:
        where.download_button(f"Download {export.label}", data, file_name=export.file_name, mime=export.mime,
                              key=export.key, on_click="ignore", type="primary", width="stretch")


def offer_all(exports: list[Export], token: Any, *, disabled: bool = False) -> None:
    """The exports side by side, one column each."""
    for col, export in zip(st.columns(len(exports)), exports):
        offer(export, token, disabled=disabled, container=col)


__all__ = ["Export", "failure_line", "offer", "offer_all"]
