"""Stored rows back into objects and plain values (the way in is ``warehouse.inserts.result_tables``).

DuckDB hands back SQL NULL as None, ``pd.NA``, ``pd.NaT`` or NaN depending on the column type, and
MAP columns as dicts or key/value lists: the helpers here turn those into Python values, a stored
explanation back into the pipeline's ``Explanation``, and a run's stored summary into a dict.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.types import Explanation, SegmentWeight

if TYPE_CHECKING:
    from warehouse.queries import ChunkExplanation


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


def opt_float(v: Any) -> float | None:
    """A nullable number as a float, None for SQL NULL."""
    return None if missing(v) else float(v)


def opt_str(v: Any) -> str | None:
    """A nullable value as a str, None for SQL NULL."""
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


def stored_explanation(stored: ChunkExplanation, target_label: str | None = None) -> Explanation | None:
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
        target_label=target, tier=opt_str(row["tier"]) or "?", shap_method=opt_str(row["shap_method"]) or "",
        shap_segments=[SegmentWeight(int(r.segment), float(r.start_s), float(r.end_s), float(r.value))
                       for r in seg.itertuples() if r.value is not None and not pd.isna(r.value)],
        shap_base_value=opt_float(row["shap_base_value"]) or 0.0,
        shap_full_value=opt_float(row["shap_full_value"]) or 0.0,
        lime_method=opt_str(row["lime_method"]) or "",
        lime_segments=[SegmentWeight(int(r.segment), float(r.start_s), float(r.end_s), float(r.weight))
                       for r in lime.itertuples() if r.weight is not None and not pd.isna(r.weight)],
        lime_score=opt_float(row["lime_score"]),
        shap_features={str(r.feature): float(r.value) for r in acoustic.itertuples()
                       if r.value is not None and not pd.isna(r.value)},
        shap_features_method=opt_str(row["shap_features_method"]),
        surrogate_r2=opt_float(row["surrogate_r2"]),
        attention=attention, attention_rollout=stored.attention.get(-1),
        attention_note=opt_str(row["attention_note"]),
        faithfulness=faithfulness_of(row["faithfulness"]),
    )


def run_summary(value: Any) -> dict[str, Any]:
    """A run's stored ``summary`` (JSON text) as a dict; {} when absent or not a JSON object."""
    if missing(value) or not value:
        return {}
    try:
        out = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def common_folder(folders: list[str]) -> str | None:
    """The folder a run ingested, as far as its files tell: the deepest folder holding all of them."""
    if not folders:
        return None
    try:
        return os.path.commonpath(folders)
    except ValueError:  # mixed absolute and relative
        return folders[0]


def feature_percentiles(mine: pd.DataFrame, dist: pd.DataFrame) -> pd.DataFrame:
    """A chunk's acoustic features (``name``, ``value``) against the corpus's percentile points (``name``,
    ``q``: 101 points, ``n``): feature, value, percentile (0..100), p5, p50, p95, corpus_chunks. Undefined
    values and features the corpus lacks are left out."""
    dist = dist.set_index("name") if not mine.empty else pd.DataFrame()
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
