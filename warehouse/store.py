"""Writes: runs, one file's results in one transaction, failures, idempotency and reuse by content.

Every write prepares its rows as Arrow tables *before* taking the database lock, then opens, inserts
in one transaction and closes, so the lock is held for about a tenth of a second per file (most of
it DuckDB's commit and checkpoint; see bench/warehouse_bench.py).

Idempotency rules (``path`` is stored absolute):
  * the same content (sha256) with the same settings key at a path that already has ``ok`` results
    is a no-op (``write_result`` returns the existing file_id);
  * anything else written at a known path replaces every row of that path (latest outcome wins);
  * the same content at another path is copied from the stored rows (``find_reusable`` +
    ``copy_file_results``), without running the models again.

Every write may also record the file's ``size_bytes`` and change ``stamp`` (st_mtime_ns of a local file,
the ETag of a remote object); ``known_files`` reads them back for a whole folder in one query, so a rerun
(``flows.prepass``) knows an unchanged file without reading it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipeline.types import FileResult
from warehouse import connection
from warehouse.errors import WarehouseError
from warehouse.inserts import (
    SOURCES,
    FileStats,
    _columns,
    _delete_paths,
    _first,
    _insert_files,
    _mtime_utc,
    _next_ids,
    _set_file_stats,
    insert_prepared,
    normalize_path,
    prepare_result,
    transaction,
)
from warehouse.schema import CHUNK_TABLES, folder_of, utc_now

logger = logging.getLogger(__name__)

#: Failure types the ingestion flow retries on every run even when the file is unchanged (the cause may
#: go away: a permission, a vanished or unreadable file). Other failures come from the content itself.
RETRIED_ERROR_TYPES = ("unreadable",)


@dataclass(frozen=True, slots=True)
class KnownFile:
    """The newest stored row of one path, as ``Warehouse.known_files`` returns it."""

    file_id: int
    sha256: str | None
    size_bytes: int | None
    stamp: str | None
    status: str
    """'ok', 'failed' or 'skipped'."""
    error: str | None
    error_type: str | None
    settings_key: str | None

    def same_stats(self, size_bytes: int | None, stamp: str | None) -> bool:
        """True when the file still has the size and stamp recorded with this row (both known on
        both sides: an unknown one never vouches for an unchanged file)."""
        return (None not in (size_bytes, stamp, self.size_bytes, self.stamp)
                and int(size_bytes) == self.size_bytes and str(stamp) == self.stamp)

    def done_for(self, settings_key: str) -> bool:
        """The row holds this path's outcome for these settings (``already_done``'s rule, less the sha)."""
        return self.status in ("ok", "skipped") and self.settings_key == settings_key

    @property
    def content_failure(self) -> bool:
        """A failure caused by the content, not retried while the file is unchanged (``failed_before``'s
        rule, less the sha)."""
        return (self.status == "failed" and self.error_type is not None
                and self.error_type not in RETRIED_ERROR_TYPES)


# ----------------------------------------------------------------------------- the store
@dataclass(frozen=True)
class Warehouse:
    """The results store at ``db`` (default: the configuration's database).

    Every method opens the file, does one short transaction and closes it again, so any number of
    processes and threads may share one Warehouse path; see ``warehouse.connection``.
    """

    db: str | os.PathLike | None = None

    @property
    def path(self) -> Path:
        return connection.resolve_db(self.db)

    # --- runs
    def start_run(self, config_json: str | Mapping[str, Any] | None = None, *, source: str = "batch") -> int:
        """Record the start of an ingestion run (with this process's host and pid); returns its run_id.

        Runs of this host left 'running' by a process that no longer exists are marked 'interrupted'
        first (``warehouse.runs.mark_stale_runs``).

        Args:
            config_json: the configuration of the run (JSON text or a mapping).
            source: 'batch' (a folder ingestion) or 'live' (a live session).
        """
        from warehouse import runs

        if source not in SOURCES:
            raise ValueError(f"run source must be one of {SOURCES}, not {source!r}")
        config = config_json if config_json is None or isinstance(config_json, str) else \
            json.dumps(dict(config_json), sort_keys=True, default=str)
        host, pid = runs.this_process()
        with connection.write_connection(self.db) as con, transaction(con):
            runs.mark_stale_runs(con)
            run_id = con.execute(
                "INSERT INTO runs (run_id, started_at, status, config, source, host, pid) "
                "VALUES (nextval('run_id_seq'), ?, 'running', ?, ?, ?, ?) RETURNING run_id",
                [utc_now(), config, source, host, pid]).fetchall()[0][0]
        return int(run_id)

    def interrupt_process_runs(self, *, wait_s: float | None = None) -> list[int]:
        """Mark every run this process still has 'running' as 'interrupted' (a forced stop); their ids.

        Args:
            wait_s: give up (``WarehouseBusyError``) when the file stays locked this long.
        """
        from warehouse import runs

        with connection.write_connection(self.db, wait_s=wait_s) as con:
            return runs.mark_process_runs(con, "interrupted")

    def finish_run(self, run_id: int, status: str, *, n_files: int | None = None, n_failed: int | None = None,
                   n_skipped: int | None = None, summary: Mapping[str, Any] | str | None = None) -> None:
        """Close a run: its final status ('completed', 'failed', 'cancelled', ...) and counts.

        Counts left as None are counted from the run's files rows (ok / failed / skipped).
        """
        text = summary if summary is None or isinstance(summary, str) else \
            json.dumps(dict(summary), sort_keys=True, default=str)
        with connection.write_connection(self.db) as con:
            counts = dict(con.execute(
                "SELECT status, count(*) FROM files WHERE run_id = ? GROUP BY status", [run_id]).fetchall())
            updated = con.execute(
                "UPDATE runs SET finished_at = ?, status = ?, n_files = ?, n_failed = ?, n_skipped = ?, "
                "summary = ? WHERE run_id = ? RETURNING run_id",
                [utc_now(), status,
                 counts.get("ok", 0) if n_files is None else n_files,
                 counts.get("failed", 0) if n_failed is None else n_failed,
                 counts.get("skipped", 0) if n_skipped is None else n_skipped,
                 text, run_id]).fetchall()
        if not updated:
            raise WarehouseError(f"run {run_id} does not exist in {self.path}")

    # --- lookups
    def already_done(self, path: str | os.PathLike, sha256: str, settings_key: str) -> bool:
        """True when ``path`` already holds this content's outcome for these settings.

        An ``ok`` or ``skipped`` row counts as done; a ``failed`` row does not (see ``failed_before``).
        """
        with connection.read_connection(self.db) as con:
            row = _first(con.execute(
                "SELECT 1 FROM files WHERE path = ? AND sha256 = ? AND settings_key = ? "
                "AND status IN ('ok', 'skipped') LIMIT 1",
                [normalize_path(path), sha256, settings_key]).fetchall())
        return row is not None

    def failed_before(self, path: str | os.PathLike, sha256: str) -> tuple[str, str] | None:
        """(error, error_type) when ``path`` holds a ``failed`` row for this very content whose failure
        came from the content (error_type other than those in ``RETRIED_ERROR_TYPES``): the flow does not
        retry it while the file is unchanged (``--retry-failed`` does). None otherwise."""
        with connection.read_connection(self.db) as con:
            row = _first(con.execute(
                "SELECT error, error_type FROM files WHERE path = ? AND sha256 = ? AND status = 'failed' "
                "AND error_type IS NOT NULL AND NOT list_contains(?, error_type) LIMIT 1",
                [normalize_path(path), sha256, list(RETRIED_ERROR_TYPES)]).fetchall())
        return None if row is None else (str(row[0]), str(row[1]))

    def find_reusable(self, sha256: str, settings_key: str) -> int | None:
        """The file_id of stored ``ok`` results for this content and settings (any path), or None."""
        with connection.read_connection(self.db) as con:
            row = _first(con.execute(
                "SELECT file_id FROM files WHERE sha256 = ? AND settings_key = ? AND status = 'ok' "
                "ORDER BY file_id LIMIT 1", [sha256, settings_key]).fetchall())
        return None if row is None else int(row[0])

    def known_files(self, settings_key: str, under: str | os.PathLike | None = None) -> dict[str, KnownFile]:
        """What the warehouse holds per path, in one query: the newest row of each path stored with
        ``settings_key``, or failed (a failure is judged whatever the settings; see ``failed_before``).

        Args:
            settings_key: the settings of the run asking.
            under: only paths in this folder or below it (a local folder or a URL prefix; normalised
                like stored paths). None: every path.

        Returns:
            ``{normalised path: KnownFile}``.
        """
        sql = ("SELECT path, file_id, sha256, size_bytes, stamp, status, error, error_type, settings_key "
               "FROM files WHERE (settings_key = ? OR status = 'failed')")
        params: list[Any] = [settings_key]
        if under is not None:
            top = normalize_path(under)
            sql += " AND (path = ? OR starts_with(path, ?))"
            params += [top, top.rstrip("/") + "/"]
        sql += " QUALIFY row_number() OVER (PARTITION BY path ORDER BY ingested_at DESC NULLS LAST, file_id DESC) = 1"
        with connection.read_connection(self.db) as con:
            rows = con.execute(sql, params).fetchall()
        return {r[0]: KnownFile(int(r[1]), r[2], None if r[3] is None else int(r[3]), *r[4:]) for r in rows}

    def file_id(self, path: str | os.PathLike) -> int | None:
        """The file_id stored for ``path`` (any status), or None."""
        with connection.read_connection(self.db) as con:
            row = _first(con.execute("SELECT file_id FROM files WHERE path = ?",
                                     [normalize_path(path)]).fetchall())
        return None if row is None else int(row[0])

    # --- writes
    def write_result(self, path: str | os.PathLike | None, sha256: str, result: FileResult, *,
                     settings_key: str | None = None, run_id: int | None = None, source: str = "batch",
                     recorded_at: _dt.datetime | None = None, size_bytes: int | None = None,
                     stamp: str | None = None) -> int:
        """Store one analysed file (file row, chunks, emotions, features, words, explanations,
        shap, lime, attention) in one transaction; returns its file_id.

        Args:
            path: where the audio lives (default ``result.file``); stored absolute.
            sha256: hex digest of the file's bytes.
            result: the pipeline's result.
            settings_key: key of the settings that shaped it (default: hash of ``result.settings``).
            run_id: the run this belongs to.
            source: 'batch' or 'live'.
            recorded_at: when the audio was captured (UTC, naive); default the file's mtime.
            size_bytes: the file's size in bytes, when known.
            stamp: the file's change stamp (``st_mtime_ns`` as text; a remote object's ETag), when known.

        Same path, content and settings already stored: only ``size_bytes``/``stamp`` are updated
        (when given) and the stored file_id is returned. Otherwise earlier rows of ``path`` are replaced.
        """
        prepared = prepare_result(path, sha256, result, settings_key=settings_key, run_id=run_id,
                                  source=source, recorded_at=recorded_at, size_bytes=size_bytes,
                                  stamp=stamp)  # before the lock is taken
        with connection.write_connection(self.db) as con, transaction(con):
            file_id, action = insert_prepared(con, prepared)
        logger.debug("%s: %s (file %d, %d chunks)", prepared.path, action, file_id, prepared.n_chunks)
        return file_id

    def write_results(self, items: Sequence[tuple[str | os.PathLike | None, str, FileResult]], *,
                      settings_key: str | None = None, run_id: int | None = None, source: str = "batch",
                      stats: Mapping[str, FileStats] | None = None) -> list[int]:
        """Store several analysed files at once: one lock, one transaction (all or nothing), one
        insert per table. Same rules per file as ``write_result``; returns the file_ids in order.

        Args:
            items: ``(path, sha256, result)`` triples (``path`` None: ``result.file``), distinct paths.
            stats: ``{path: (size_bytes, stamp)}`` for the files whose size and change stamp are known,
                keyed by the path as given in ``items`` (or its normalised form); others store NULL.
        """
        known = {normalize_path(k): v for k, v in (stats or {}).items()}
        prepared = []
        for path, sha, result in items:
            size, stamp = known.get(normalize_path(path if path is not None else result.file), (None, None))
            prepared.append(prepare_result(path, sha, result, settings_key=settings_key, run_id=run_id,
                                           source=source, size_bytes=size, stamp=stamp))
        if not prepared:
            return []
        with connection.write_connection(self.db) as con, transaction(con):
            outcomes = insert_prepared(con, prepared)
        return [fid for fid, _ in outcomes]

    def write_failed(self, path: str | os.PathLike, sha256: str | None, error: str, *, status: str = "failed",
                     run_id: int | None = None, source: str = "batch", settings_key: str | None = None,
                     error_type: str | None = None, size_bytes: int | None = None,
                     stamp: str | None = None) -> int:
        """Record a file that produced no results (replacing earlier rows of its path); returns file_id.

        Args:
            path: the file.
            sha256: its content hash, when it could be read.
            error: the plain reason shown to users ("not audio: ...", "decoding failed: ...").
            status: 'failed' (not analysed because of an error) or 'skipped' (not audio, hidden).
            error_type: the class of the failure (``pipeline.types.AUDIO_ERROR_KINDS``: 'decode',
                'unsupported', 'truncated', 'crashed', 'timeout', 'unreadable'); the flow retries
                failures of the types in ``RETRIED_ERROR_TYPES`` on every run, others only when the
                file changed (see ``failed_before``).
            size_bytes, stamp: the file's size and change stamp, when known (see ``write_result``).

        File ids are stable: a path whose only row is failed/skipped keeps its file_id (the row is
        updated in place, and not written at all when a skipped row says the same again).
        """
        if status not in ("failed", "skipped"):
            raise ValueError(f"status of a file without results must be 'failed' or 'skipped', not {status!r}")
        if source not in SOURCES:
            raise ValueError(f"file source must be one of {SOURCES}, not {source!r}")
        stored_path = normalize_path(path)
        values = {"path": stored_path, "sha256": sha256, "status": status, "error": str(error),
                  "run_id": run_id, "folder": folder_of(stored_path), "source": source,
                  "settings_key": settings_key, "recorded_at": _mtime_utc(stored_path), "notes": [],
                  "error_type": error_type, "n_chunks": 0, "size_bytes": size_bytes, "stamp": stamp}
        with connection.write_connection(self.db) as con, transaction(con):
            prev = con.execute("SELECT file_id, status, sha256, error, error_type FROM files WHERE path = ?",
                               [stored_path]).fetchall()
            if len(prev) == 1 and prev[0][1] in ("failed", "skipped"):
                file_id = int(prev[0][0])
                if status == "skipped" and tuple(prev[0][1:]) == (status, sha256, str(error), error_type):
                    return file_id  # the same verdict again: nothing to write
                values["ingested_at"] = utc_now()
                cols = [c for c in values if c != "path"]
                con.execute(f"UPDATE files SET {', '.join(f'{c} = ?' for c in cols)}, reused_from = NULL "
                            "WHERE file_id = ?", [values[c] for c in cols] + [file_id])
                return file_id
            _delete_paths(con, stored_path)
            file_id = int(_next_ids(con, "file_id_seq", 1)[0])
            _insert_files(con, [{"file_id": file_id, **values}])
        return file_id

    def write_skipped(self, path: str | os.PathLike, reason: str, *, run_id: int | None = None,
                      sha256: str | None = None, source: str = "batch", settings_key: str | None = None) -> int:
        """Record a file the run did not analyse ('hidden file', 'not audio: ...'); returns file_id."""
        return self.write_failed(path, sha256, reason, status="skipped", run_id=run_id, source=source,
                                 settings_key=settings_key)

    def copy_file_results(self, src_file_id: int, path: str | os.PathLike, *, run_id: int | None = None,
                          size_bytes: int | None = None, stamp: str | None = None) -> int:
        """Store the results of ``src_file_id`` again under ``path`` (same content elsewhere), in one
        transaction, replacing earlier rows of ``path``; returns the new file_id. ``size_bytes`` and
        ``stamp`` describe the file at ``path`` (see ``write_result``), never copied from the source.

        Raises:
            WarehouseError: ``src_file_id`` has no ``ok`` results.
        """
        stored_path = normalize_path(path)
        with connection.write_connection(self.db) as con, transaction(con):
            src = _first(con.execute("SELECT path, sha256, settings_key FROM files WHERE file_id = ? AND status = 'ok'",
                              [src_file_id]).fetchall())
            if src is None:
                raise WarehouseError(f"file {src_file_id} has no stored results to copy (in {self.path})")
            src_path, sha, key = src
            same = _first(con.execute(
                "SELECT file_id FROM files WHERE path = ? AND sha256 IS NOT DISTINCT FROM ? "
                "AND settings_key IS NOT DISTINCT FROM ? AND status = 'ok'", [stored_path, sha, key]).fetchall())
            if same is not None:
                _set_file_stats(con, {stored_path: (size_bytes, stamp)})
                return int(same[0])
            _delete_paths(con, stored_path)
            new_id = int(_next_ids(con, "file_id_seq", 1)[0])
            overrides = {"file_id": "?", "path": "?", "folder": "?", "run_id": "?", "ingested_at": "?",
                         "recorded_at": "?", "reused_from": "?", "size_bytes": "?", "stamp": "?"}
            cols = _columns(con, "files")
            select = ", ".join(overrides.get(c, c) for c in cols)
            params = {"file_id": new_id, "path": stored_path, "folder": folder_of(stored_path),
                      "run_id": run_id, "ingested_at": utc_now(), "recorded_at": _mtime_utc(stored_path),
                      "reused_from": src_file_id, "size_bytes": size_bytes, "stamp": stamp}
            con.execute(f"INSERT INTO files ({', '.join(cols)}) SELECT {select} FROM files WHERE file_id = ?",
                        [params[c] for c in cols if c in overrides] + [src_file_id])
            con.execute("CREATE TEMP TABLE _chunk_map AS SELECT chunk_id AS old_id, "
                        "nextval('chunk_id_seq') AS new_id FROM chunks WHERE file_id = ?", [src_file_id])
            ccols = _columns(con, "chunks")
            sel = ", ".join("m.new_id" if c == "chunk_id" else ("?" if c == "file_id" else f"c.{c}")
                            for c in ccols)
            con.execute(f"INSERT INTO chunks ({', '.join(ccols)}) SELECT {sel} FROM chunks c "
                        f"JOIN _chunk_map m ON c.chunk_id = m.old_id", [new_id])
            for table in CHUNK_TABLES:
                tcols = _columns(con, table)
                sel = ", ".join("m.new_id" if c == "chunk_id" else f"t.{c}" for c in tcols)
                con.execute(f"INSERT INTO {table} ({', '.join(tcols)}) SELECT {sel} FROM {table} t "
                            f"JOIN _chunk_map m ON t.chunk_id = m.old_id")
            con.execute("DROP TABLE _chunk_map")  # on failure the rollback and close remove it
        logger.debug("%s: results copied from file %d (%s) as file %d", stored_path, src_file_id, src_path, new_id)
        return new_id

    def update_file_stats(self, stats: Mapping[str | os.PathLike, FileStats]) -> int:
        """Record the current ``(size_bytes, stamp)`` of files whose stored rows still hold their outcome
        (touched, same content), in one transaction; returns how many rows were updated. The next run
        then knows them without reading them."""
        given = {normalize_path(k): v for k, v in stats.items()}
        if not given:
            return 0
        with connection.write_connection(self.db) as con, transaction(con):
            return _set_file_stats(con, given)

    def delete_path(self, path: str | os.PathLike) -> bool:
        """Remove everything stored for ``path``; True when something was removed."""
        with connection.write_connection(self.db) as con, transaction(con):
            return _delete_paths(con, normalize_path(path)) > 0

    # --- reads (thin delegations, so callers can hold one object)
    def read_df(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, **kwargs: Any):
        """Trusted internal SQL -> DataFrame (see ``warehouse.sql.read_df``)."""
        from warehouse.sql import read_df

        return read_df(sql, params, db=self.db, **kwargs)

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, **kwargs: Any):
        """Analyst SQL, sandboxed and limited (see ``warehouse.sql.query``)."""
        from warehouse.sql import query

        return query(sql, params, db=self.db, **kwargs)
