"""The Overview's selection as SQL: ``Filters`` (folders, recording dates, languages, emotion models,
dominant emotions, minimum dominant probability, untrained models) turned into WHERE conditions on
``files f`` and ``chunks c``, and the time grains of the over-time chart.

Results of untrained (random-weight) models are left out unless ``include_untrained`` is set: their
scores are not emotions.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any

from pipeline.types import BASE_EMOTIONS

#: Value of the language filter that selects chunks without a detected language.
NO_LANGUAGE = "(none)"
#: Recording-time grains of the "over time" chart, finest first, with the longest span (days) each suits.
GRAINS = (("hour", 3), ("day", 120), ("week", 1000), ("month", math.inf))
#: The base labels as a DuckDB list literal, in ``BASE_EMOTIONS`` order.
LABELS_SQL = "[" + ", ".join(f"'{e}'" for e in BASE_EMOTIONS) + "]"
#: A file's time: when it was recorded, else when it was ingested (UTC).
TIME_SQL = "coalesce(f.recorded_at, f.ingested_at)"


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
            conds.append(f"CAST({TIME_SQL} AS DATE) >= ?")
            params.append(self.date_from)
        if self.date_to is not None:
            conds.append(f"CAST({TIME_SQL} AS DATE) <= ?")
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


def time_grain(date_min: _dt.date | None, date_max: _dt.date | None) -> str:
    """The finest grain that keeps the over-time chart readable for this span."""
    if date_min is None or date_max is None:
        return "day"
    span = (date_max - date_min).days + 1
    return next(g for g, days in GRAINS if span <= days)
