"""Tables of the warehouse and the versioned migrations that build and upgrade them.

``MIGRATIONS[i]`` turns a version-``i`` database into version ``i + 1``; a new file runs all of them,
so the upgrade path is exercised on every fresh database. Each step runs in its own transaction and
records itself in ``schema_version``. A file whose version is newer than ``SCHEMA_VERSION`` is refused.

Version 1 is the original contract: runs, files, chunks, emotions (base/granular/complex), features,
shap, lime, attention. Its conventions, which version 2 converts:
  * absent base emotions had no row at all;
  * segment Shapley values were rows of ``shap`` with ``feature = 'segment:<i>'`` and no times.

Version 2 adds provenance and explanation metadata (see docs/schema.md): files.folder/source/
emotion_trained/settings_key/ingested_at/notes/absent_labels/..., chunks.dominant/
language_probability, a ``words`` table, emotions of kind 'extra' and NULL-score rows for absent base
labels, shap.method/kind/segment/start_s/end_s, lime.method/score, an ``explanations`` table.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass
from typing import Callable

import duckdb

from warehouse.errors import SchemaVersionError

logger = logging.getLogger(__name__)

BASE_LABELS = ("anger", "fear", "happiness", "sadness", "surprise", "neutral")
"""Same order as pipeline.types.BASE_EMOTIONS (kept here so migrations never change with it)."""

#: Tables whose rows belong to one chunk (``chunk_id``); they follow their chunk on delete/copy/export.
CHUNK_TABLES = ("emotions", "features", "shap", "lime", "attention", "explanations", "words")
#: Every table of the current schema, parents first.
TABLES = ("schema_version", "runs", "files", "chunks") + CHUNK_TABLES


def utc_now() -> _dt.datetime:
    """Current UTC time as a naive datetime (the warehouse's TIMESTAMP convention)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def folder_of(path: str) -> str:
    """The parent directory of a stored path ('.' for a bare name), as files.folder stores it."""
    return os.path.dirname(path) or "."


# ----------------------------------------------------------------------------- version 1
_V1 = """
CREATE TABLE schema_version (
    version INTEGER NOT NULL,
    applied_at TIMESTAMP NOT NULL,
    description VARCHAR
);
CREATE SEQUENCE run_id_seq START 1;
CREATE SEQUENCE file_id_seq START 1;
CREATE SEQUENCE chunk_id_seq START 1;
CREATE TABLE runs (
    run_id BIGINT PRIMARY KEY,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    status VARCHAR NOT NULL,
    n_files INTEGER,
    n_failed INTEGER,
    config VARCHAR
);
CREATE TABLE files (
    file_id BIGINT PRIMARY KEY,
    path VARCHAR NOT NULL,
    sha256 VARCHAR,
    duration_s DOUBLE,
    sample_rate INTEGER,
    channels INTEGER,
    status VARCHAR NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
    error VARCHAR,
    run_id BIGINT,
    emotion_model VARCHAR,
    whisper_model VARCHAR
);
CREATE TABLE chunks (
    chunk_id BIGINT NOT NULL,
    file_id BIGINT NOT NULL,
    idx INTEGER NOT NULL,
    start_s DOUBLE NOT NULL,
    end_s DOUBLE NOT NULL,
    transcript VARCHAR,
    language VARCHAR
);
CREATE TABLE emotions (
    chunk_id BIGINT NOT NULL,
    kind VARCHAR NOT NULL CHECK (kind IN ('base', 'granular', 'complex')),
    label VARCHAR NOT NULL,
    score DOUBLE
);
CREATE TABLE features (
    chunk_id BIGINT NOT NULL,
    name VARCHAR NOT NULL,
    value DOUBLE
);
CREATE TABLE shap (
    chunk_id BIGINT NOT NULL,
    target_label VARCHAR NOT NULL,
    feature VARCHAR NOT NULL,
    value DOUBLE
);
CREATE TABLE lime (
    chunk_id BIGINT NOT NULL,
    target_label VARCHAR NOT NULL,
    segment INTEGER NOT NULL,
    start_s DOUBLE,
    end_s DOUBLE,
    weight DOUBLE
);
CREATE TABLE attention (
    chunk_id BIGINT NOT NULL,
    layer INTEGER NOT NULL,
    n INTEGER NOT NULL,
    data FLOAT[]
);
"""


def _v1(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_V1)


# ----------------------------------------------------------------------------- version 2
_V2_DDL = """
ALTER TABLE runs ADD COLUMN source VARCHAR DEFAULT 'batch';
ALTER TABLE runs ADD COLUMN n_skipped INTEGER;
ALTER TABLE runs ADD COLUMN summary VARCHAR;

ALTER TABLE files ADD COLUMN folder VARCHAR;
ALTER TABLE files ADD COLUMN source VARCHAR DEFAULT 'batch';
ALTER TABLE files ADD COLUMN emotion_trained BOOLEAN;
ALTER TABLE files ADD COLUMN settings_key VARCHAR;
ALTER TABLE files ADD COLUMN settings VARCHAR;
ALTER TABLE files ADD COLUMN ingested_at TIMESTAMP;
ALTER TABLE files ADD COLUMN recorded_at TIMESTAMP;
ALTER TABLE files ADD COLUMN notes VARCHAR[];
ALTER TABLE files ADD COLUMN emotion_labels VARCHAR[];
ALTER TABLE files ADD COLUMN absent_labels VARCHAR[];
ALTER TABLE files ADD COLUMN error_type VARCHAR;
ALTER TABLE files ADD COLUMN n_chunks INTEGER;
ALTER TABLE files ADD COLUMN reused_from BIGINT;

ALTER TABLE chunks ADD COLUMN dominant VARCHAR;
ALTER TABLE chunks ADD COLUMN dominant_score DOUBLE;
ALTER TABLE chunks ADD COLUMN language_probability DOUBLE;

ALTER TABLE shap ADD COLUMN method VARCHAR;
ALTER TABLE shap ADD COLUMN kind VARCHAR;
ALTER TABLE shap ADD COLUMN segment INTEGER;
ALTER TABLE shap ADD COLUMN start_s DOUBLE;
ALTER TABLE shap ADD COLUMN end_s DOUBLE;

ALTER TABLE lime ADD COLUMN method VARCHAR;
ALTER TABLE lime ADD COLUMN score DOUBLE;

CREATE TABLE words (
    chunk_id BIGINT NOT NULL,
    idx INTEGER NOT NULL,
    word VARCHAR NOT NULL,
    start_s DOUBLE,
    end_s DOUBLE,
    probability DOUBLE
);
CREATE TABLE explanations (
    chunk_id BIGINT NOT NULL,
    target_label VARCHAR NOT NULL,
    tier VARCHAR,
    shap_method VARCHAR,
    shap_base_value DOUBLE,
    shap_full_value DOUBLE,
    shap_features_method VARCHAR,
    surrogate_r2 DOUBLE,
    lime_method VARCHAR,
    lime_score DOUBLE,
    faithfulness MAP(VARCHAR, DOUBLE),
    attention_layers INTEGER,
    attention_n INTEGER,
    attention_note VARCHAR
);
"""

# Widening emotions.kind's CHECK (DuckDB cannot alter a constraint) means rebuilding the table.
_V2_EMOTIONS = """
ALTER TABLE emotions RENAME TO emotions_v1;
CREATE TABLE emotions (
    chunk_id BIGINT NOT NULL,
    kind VARCHAR NOT NULL CHECK (kind IN ('base', 'extra', 'granular', 'complex')),
    label VARCHAR NOT NULL,
    score DOUBLE,
    granular_kind VARCHAR
);
INSERT INTO emotions (chunk_id, kind, label, score)
    SELECT chunk_id, kind, label, score FROM emotions_v1 ORDER BY chunk_id;
DROP TABLE emotions_v1;
"""


def _v2(con: duckdb.DuckDBPyConnection) -> None:
    import pyarrow as pa

    labels_sql = "[" + ", ".join(f"'{e}'" for e in BASE_LABELS) + "]"
    con.execute(_V2_DDL)
    con.execute(_V2_EMOTIONS)
    # files.folder: computed by the same function the writer uses.
    paths = [r[0] for r in con.execute("SELECT DISTINCT path FROM files").fetchall()]
    if paths:
        con.register("_v2_folders", pa.table({"path": paths, "folder": [folder_of(p) for p in paths]}))
        con.execute("UPDATE files SET folder = m.folder FROM _v2_folders m WHERE files.path = m.path")
        con.unregister("_v2_folders")
    con.execute("UPDATE files SET source = 'batch' WHERE source IS NULL")
    con.execute("""
        UPDATE files SET ingested_at = coalesce(
            (SELECT r.started_at FROM runs r WHERE r.run_id = files.run_id), ?)
    """, [utc_now()])
    con.execute("UPDATE files SET notes = []::VARCHAR[] WHERE notes IS NULL")
    con.execute("UPDATE runs SET source = 'batch' WHERE source IS NULL")
    con.execute("""
        UPDATE files SET n_chunks = (SELECT count(*) FROM chunks c WHERE c.file_id = files.file_id)
        WHERE status = 'ok'
    """)
    # Absent base labels: version 1 left them out; version 2 stores a NULL-score row for each
    # (a base label a chunk has no row for) and lists them on files.absent_labels.
    con.execute(f"""
        INSERT INTO emotions (chunk_id, kind, label, score)
        SELECT c.chunk_id, 'base', l.label, NULL
        FROM (SELECT DISTINCT chunk_id FROM emotions WHERE kind = 'base') c
        CROSS JOIN (SELECT unnest({labels_sql}) AS label) l
        WHERE NOT EXISTS (SELECT 1 FROM emotions e
                          WHERE e.chunk_id = c.chunk_id AND e.kind = 'base' AND e.label = l.label)
    """)
    con.execute(f"""
        UPDATE files SET absent_labels = a.labels FROM (
            SELECT c.file_id,
                   coalesce(list_sort(list(DISTINCT e.label) FILTER (WHERE e.score IS NULL)),
                            []::VARCHAR[]) AS labels
            FROM chunks c JOIN emotions e ON e.chunk_id = c.chunk_id AND e.kind = 'base'
            GROUP BY c.file_id
        ) a WHERE files.file_id = a.file_id
    """)
    con.execute(f"""
        UPDATE files SET emotion_labels = list_filter({labels_sql}, lambda x: NOT list_contains(absent_labels, x))
        WHERE absent_labels IS NOT NULL
    """)
    # chunks.dominant: the highest present base score, ties broken by the canonical order.
    con.execute(f"""
        UPDATE chunks SET dominant = d.label, dominant_score = d.score FROM (
            SELECT chunk_id, label, score FROM (
                SELECT chunk_id, label, score, row_number() OVER (
                    PARTITION BY chunk_id ORDER BY score DESC, list_position({labels_sql}, label)) AS rk
                FROM emotions WHERE kind = 'base' AND score IS NOT NULL)
            WHERE rk = 1
        ) d WHERE chunks.chunk_id = d.chunk_id
    """)
    # shap: 'segment:<i>' rows become kind 'segment' with their index, timed from lime's segments.
    con.execute("""
        UPDATE shap SET kind = CASE WHEN feature LIKE 'segment:%' THEN 'segment' ELSE 'acoustic' END,
                        segment = CASE WHEN feature LIKE 'segment:%'
                                       THEN TRY_CAST(split_part(feature, ':', 2) AS INTEGER) END
    """)
    con.execute("""
        UPDATE shap SET start_s = l.start_s, end_s = l.end_s
        FROM (SELECT DISTINCT chunk_id, segment, start_s, end_s FROM lime) l
        WHERE shap.kind = 'segment' AND shap.chunk_id = l.chunk_id AND shap.segment = l.segment
    """)
    _reseat_sequences(con)
    # One explanations row per explained (chunk, target); version 1 had no metadata to fill it.
    con.execute("""
        INSERT INTO explanations (chunk_id, target_label)
        SELECT DISTINCT chunk_id, target_label FROM (
            SELECT chunk_id, target_label FROM shap UNION SELECT chunk_id, target_label FROM lime)
    """)


def _reseat_sequences(con: duckdb.DuckDBPyConnection) -> None:
    """Restart each id sequence above the highest id stored (rows written with explicit ids by an
    older writer or an import would otherwise collide with new ones). Never moves a sequence back."""
    for seq, table, col in (("run_id_seq", "runs", "run_id"), ("file_id_seq", "files", "file_id"),
                            ("chunk_id_seq", "chunks", "chunk_id")):
        nxt = con.execute(f"SELECT nextval('{seq}')").fetchall()[0][0]
        top = con.execute(f"SELECT coalesce(max({col}), 0) FROM {table}").fetchall()[0][0]
        start = max(int(nxt), int(top) + 1)
        con.execute(f"DROP SEQUENCE {seq}")
        con.execute(f"CREATE SEQUENCE {seq} START {start}")


# ----------------------------------------------------------------------------- version 3
def _v3_runs_process(con: duckdb.DuckDBPyConnection) -> None:
    """runs.host/pid: the process that runs it, so a run left 'running' by a dead process can be told
    from a live one (``warehouse.runs``). Older rows keep NULL: their process is unknown."""
    con.execute("ALTER TABLE runs ADD COLUMN host VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")


# ----------------------------------------------------------------------------- version 4
def _v4_chunk_speaker(con: duckdb.DuckDBPyConnection) -> None:
    """chunks.speaker: who spoke within the file ('S1', 'S2', ... by first appearance; pipeline.speakers).
    Older rows keep NULL: they were never labelled (re-ingesting the file labels them)."""
    con.execute("ALTER TABLE chunks ADD COLUMN speaker VARCHAR")


# ----------------------------------------------------------------------------- version 5
def _v5_file_stats(con: duckdb.DuckDBPyConnection) -> None:
    """files.size_bytes/stamp: what the file looked like when its row was written (a local file's
    st_mtime_ns, a remote object's ETag), so a rerun knows an unchanged file without reading it
    (``flows.prepass``). Older rows keep NULL: the next run hashes them, as before."""
    con.execute("ALTER TABLE files ADD COLUMN size_bytes BIGINT")
    con.execute("ALTER TABLE files ADD COLUMN stamp VARCHAR")


@dataclass(frozen=True)
class Migration:
    version: int
    """The version this step produces."""
    description: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, files, chunks, emotions, features, shap, lime, attention", _v1),
    Migration(2, "provenance, explanation metadata, words, extra and absent emotion labels", _v2),
    Migration(3, "runs.host/pid (runs of dead processes are marked interrupted)", _v3_runs_process),
    Migration(4, "chunks.speaker (per-chunk speaker labels within a file)", _v4_chunk_speaker),
    Migration(5, "files.size_bytes/stamp (reruns skip unchanged files without hashing them)", _v5_file_stats),
)
#: The version this code writes and reads.
SCHEMA_VERSION = MIGRATIONS[-1].version


def read_version(con: duckdb.DuckDBPyConnection, where: str = "database") -> int:
    """The schema version of an open database (0 for an empty file).

    Raises:
        SchemaVersionError: tables without a schema_version table (not ours), or a newer version.
    """
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT temporary").fetchall()}
    if "schema_version" not in tables:
        if tables:
            raise SchemaVersionError(
                f"{where} is not an EmotiVoice database (it has tables {', '.join(sorted(tables)[:5])} "
                f"but no schema_version table); use another --db")
        return 0
    version = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where} has schema version {version}, written by a newer EmotiVoice; this version reads up "
            f"to version {SCHEMA_VERSION}. Upgrade EmotiVoice or use another --db.")
    return int(version)


def migrate(con: duckdb.DuckDBPyConnection, where: str = "database", *,
            target: int = SCHEMA_VERSION) -> int:
    """Apply the pending migrations up to ``target`` on a read-write connection; returns the version.

    Each step is one transaction: a failure leaves the file at the previous version.
    """
    version = read_version(con, where)
    for step in MIGRATIONS:
        if step.version <= version or step.version > target:
            continue
        con.begin()
        try:
            step.apply(con)
            con.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                        [step.version, utc_now(), step.description])
            con.commit()
        except BaseException:
            con.rollback()
            raise
        logger.info("%s: schema upgraded to version %d (%s)", where, step.version, step.description)
        version = step.version
    return version
