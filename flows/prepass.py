"""The ingestion pre-pass: what each discovered file needs, decided without reading unchanged files.

One query (``Warehouse.known_files``) loads what the warehouse holds for the folder. A file whose size
and change stamp (st_mtime_ns locally, the ETag of a remote object) match its stored row is judged from
that row alone: done for these settings ('unchanged') or failed before because of its content
('failed_before'). Only the others are hashed, and then the rules of ``Warehouse.already_done``,
``failed_before`` and ``find_reusable`` apply to the hash, as they always did: same content at the same
path is 'unchanged' (a touched file), same content elsewhere is a 'copy', anything else is 'todo'.
A remote object that needs work is 'todo' without a hash (its worker downloads and hashes it).

Files that turn out unchanged after hashing (touched, same content) are collected in
``Prepass.restamp``; storing those stats (``Warehouse.update_file_stats``) spares the next run the hash.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

from flows.discovery import is_remote, local_stamp
from pipeline import AudioError, file_sha256
from warehouse.store import FileStats, KnownFile, normalize_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What one file needs (see the module docstring for the rules)."""

    kind: str
    """'unchanged' | 'failed_before' | 'copy' | 'todo' | 'failed'."""
    path: str
    sha256: str | None = None
    """The content hash (stored or computed); None for a remote 'todo' and for a file that could not be read."""
    size_bytes: int | None = None
    stamp: str | None = None
    reason: str = ""
    """'failed' / 'failed_before': the new or the stored reason."""
    error_type: str = ""
    source_file_id: int | None = None
    """'copy': the stored results of the same content."""


def stat_of(path: str | os.PathLike) -> FileStats:
    """(size_bytes, stamp) of a local file (``local_stamp``); (None, None) when it cannot be read
    (hashing will then say why)."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, local_stamp(st)




class Prepass:
    """Plans the files of one run against what the warehouse held when the run began.

    Args:
        store: the ``warehouse.Warehouse``.
        settings_key: the run's ``pipeline.settings_key``.
        retry_failed: analyse again files that failed before because of their content.
        under: the folder (or URL prefix) the run covers; None loads every path.
        hasher: hex SHA-256 of a local file, raising ``pipeline.AudioError`` when it cannot be read.
    """

    def __init__(self, store, settings_key: str, *, retry_failed: bool = False, under: str | None = None,
                 hasher: Callable[[str], str] = file_sha256):
        self.store = store
        self.settings_key = settings_key
        self.retry_failed = retry_failed
        self.hasher = hasher
        self.known: dict[str, KnownFile] = store.known_files(settings_key, under)
        self.restamp: dict[str, FileStats] = {}
        """Paths found unchanged only by hashing, with their current (size_bytes, stamp)."""
        logger.debug("prepass: %d stored paths under %s", len(self.known), under or "any folder")

    def plan(self, path: str, size_bytes: int | None, stamp: str | None) -> Plan:
        """What ``path`` needs, given its current size and change stamp (None: unknown)."""
        row = self.known.get(normalize_path(path))
        if row is not None and row.same_stats(size_bytes, stamp):
            judged = self._judge(row, path, size_bytes, stamp)
            if judged is not None:
                return judged
        if is_remote(path):
            return Plan("todo", path, None, size_bytes, stamp)
        try:
            sha = self.hasher(path)
        except AudioError as exc:
            return Plan("failed", path, None, size_bytes, stamp, reason=exc.reason, error_type=exc.kind)
        if row is not None and row.sha256 == sha:
            judged = self._judge(row, path, size_bytes, stamp)
            if judged is not None:
                if stamp is not None:
                    self.restamp[normalize_path(path)] = (size_bytes, stamp)
                return judged
        src = self.store.find_reusable(sha, self.settings_key)
        if src is not None:
            return Plan("copy", path, sha, size_bytes, stamp, source_file_id=src)
        return Plan("todo", path, sha, size_bytes, stamp)

    def _judge(self, row: KnownFile, path: str, size_bytes: int | None, stamp: str | None) -> Plan | None:
        """The plan the stored row settles for the same file (unchanged, or failed before), else None."""
        if row.done_for(self.settings_key):
            return Plan("unchanged", path, row.sha256, size_bytes, stamp)
        if row.content_failure and not self.retry_failed:
            return Plan("failed_before", path, row.sha256, size_bytes, stamp,
                        reason=row.error or "", error_type=row.error_type or "")
        return None
