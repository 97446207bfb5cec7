"""Targeted writes the dashboard makes after ingestion: replacing one chunk's explanation.

The full explanation tier is expensive, so ingestion usually stores the fast tier; the dashboard's
Explain page can run the full tier on demand for one chunk and store it here in place of the old one,
in one short transaction (the rows are prepared before the lock is taken, as in ``warehouse.store``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import pyarrow as pa

from pipeline.runtime import SAMPLE_RATE
from pipeline.types import ChunkResult, Explanation, FileResult, ModelInfo
from warehouse import connection
from warehouse.errors import WarehouseError
from warehouse.inserts import _insert_arrow, result_tables, transaction

logger = logging.getLogger(__name__)

#: Tables holding one chunk's explanation (all keyed by chunk_id).
EXPLANATION_TABLES = ("explanations", "shap", "lime", "attention")


@dataclass(frozen=True)
class ReplacedExplanation:
    """What ``replace_chunk_explanation`` did."""

    chunk_id: int
    tier: str
    target_label: str
    kept_feature_attributions: int
    """Acoustic-feature Shapley rows carried over from the previous explanation (0 when none were)."""


def _explanation_tables(explanation: Explanation) -> dict[str, pa.Table]:
    chunk = ChunkResult(idx=0, start_s=0.0, end_s=0.0, base={}, dominant=None, explanation=explanation)
    result = FileResult(file="<chunk>", duration_s=0.0, sample_rate=SAMPLE_RATE, channels=1,
                        models=ModelInfo(emotion="?", emotion_trained=False, whisper=None), chunks=[chunk])
    return {name: table for name, table in result_tables(result).items() if name in EXPLANATION_TABLES}


def _insert(con, table: str, data: pa.Table, chunk_id: int) -> None:
    if data.num_rows == 0:
        return
    data = data.drop_columns(["pos"]).add_column(0, "chunk_id", pa.array([chunk_id] * data.num_rows, pa.int64()))
    _insert_arrow(con, table, data)


def replace_chunk_explanation(chunk_id: int, explanation: Explanation, *, db: str | os.PathLike | None = None,
                              keep_feature_attributions: bool = True) -> ReplacedExplanation:
    """Store ``explanation`` as the explanation of chunk ``chunk_id``, replacing the stored one.

    Rows of ``explanations``, ``shap``, ``lime`` and ``attention`` of that chunk are deleted and the
    new ones inserted in one transaction. Acoustic-feature Shapley values come from a surrogate fit
    across a whole file, which a one-chunk re-run cannot refit: when ``explanation.shap_features`` is
    empty, ``keep_feature_attributions`` is true and the stored ones explain the same target label,
    they are kept (with their method and the surrogate's R²).

    Raises:
        WarehouseError: no chunk ``chunk_id`` in the database.
    """
    tables = _explanation_tables(explanation)  # prepared before the lock is taken
    with connection.write_connection(db) as con, transaction(con):
        if not con.execute("SELECT 1 FROM chunks WHERE chunk_id = ?", [chunk_id]).fetchall():
            raise WarehouseError(f"chunk {chunk_id} does not exist in {connection.resolve_db(db)}")
        kept = 0
        carry = not explanation.shap_features and keep_feature_attributions
        if carry:
            old = con.execute(
                "SELECT shap_features_method, surrogate_r2 FROM explanations WHERE chunk_id = ? AND target_label = ?",
                [chunk_id, explanation.target_label]).fetchall()
            kept = con.execute(
                "SELECT count(*) FROM shap WHERE chunk_id = ? AND kind = 'acoustic' AND target_label = ?",
                [chunk_id, explanation.target_label]).fetchall()[0][0]
            carry = bool(old) and kept > 0
        if carry:
            con.execute("DELETE FROM shap WHERE chunk_id = ? AND NOT (kind = 'acoustic' AND target_label = ?)",
                        [chunk_id, explanation.target_label])
        else:
            kept = 0
            con.execute("DELETE FROM shap WHERE chunk_id = ?", [chunk_id])
        for table in ("explanations", "lime", "attention"):
            con.execute(f"DELETE FROM {table} WHERE chunk_id = ?", [chunk_id])
        for table in EXPLANATION_TABLES:
            _insert(con, table, tables[table], chunk_id)
        if carry:
            con.execute("UPDATE explanations SET shap_features_method = ?, surrogate_r2 = ? "
                        "WHERE chunk_id = ? AND target_label = ?",
                        [old[0][0], old[0][1], chunk_id, explanation.target_label])
    logger.info("chunk %d: explanation replaced by the %s tier (%s)", chunk_id, explanation.tier,
                explanation.target_label)
    return ReplacedExplanation(chunk_id, explanation.tier, explanation.target_label, int(kept))


__all__ = ["EXPLANATION_TABLES", "ReplacedExplanation", "replace_chunk_explanation"]
