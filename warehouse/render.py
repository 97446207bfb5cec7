"""Query results as text for people: NULL is an empty cell (never "None", "NaN" or "<NA>"), long values
are cut for the screen. Used by ``emotivoice sql`` (table format) and the dashboard's SQL page.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

#: Characters of one cell shown in a table before it is cut with an ellipsis.
CELL_CHARS = 200


def is_null(value: Any) -> bool:
    """SQL NULL as pandas/Arrow deliver it: None, NaN, NaT, pd.NA."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [None if is_null(v) else _plain(v) for v in value]
    if isinstance(value, dict):
        return {k: None if is_null(v) else _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def cell_text(value: Any, max_chars: int | None = CELL_CHARS) -> str:
    """One cell as text: '' for NULL, lists and maps in Python notation, newlines escaped, cut at
    ``max_chars`` characters (None: whole)."""
    if is_null(value):
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).hex()
    elif isinstance(value, (float, np.floating)):
        text = repr(float(value))
    else:
        text = str(_plain(value))
    text = text.replace("\r", "\\r").replace("\n", "\\n")  # one row stays one line
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars - 1] + "…"
    return text


def _needs_text(series: pd.Series) -> bool:
    kind = series.dtype.kind
    if kind in "iub":  # numpy ints and bools cannot hold NULL
        return False
    if kind == "f" and isinstance(series.dtype, np.dtype):
        return bool(series.isna().any())
    return True


def display_frame(df: pd.DataFrame, *, max_chars: int | None = CELL_CHARS) -> pd.DataFrame:
    """A copy of ``df`` for display: columns that hold NULLs or non-numeric values become text with
    NULL as '' (and values cut at ``max_chars``); numeric columns without NULLs stay numeric (they
    sort as numbers)."""
    out = {}
    for i, name in enumerate(df.columns):
        col = df.iloc[:, i]
        out[i] = col.map(lambda v: cell_text(v, max_chars)).astype(object) if _needs_text(col) else col
    frame = pd.DataFrame(out, index=df.index)
    frame.columns = [str(c) for c in df.columns]
    return frame


def format_table(df: pd.DataFrame, *, max_chars: int | None = CELL_CHARS) -> str:
    """``df`` as an aligned text table without its index; '(no columns)' when it has none."""
    if not len(df.columns):
        return "(no columns)"
    return display_frame(df, max_chars=max_chars).to_string(index=False)


__all__ = ["CELL_CHARS", "cell_text", "display_frame", "format_table", "is_null"]
