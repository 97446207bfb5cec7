"""The ingestion pre-pass (flows/prepass.py) against a real warehouse and real files: unchanged files are
known by size and change stamp without reading them; everything else follows the rules of
``already_done`` / ``failed_before`` / ``find_reusable`` on the content hash."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
import soundfile as sf

import warehouse
from flows.prepass import Plan, Prepass, stat_of
from pipeline import AudioError, file_sha256
from warehouse import Warehouse, read_df
from warehouse.schema import migrate
from warehouse.synth import fake_file_result

KEY = "settings-k"


@pytest.fixture
def store(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "w.duckdb")


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "calls"
    d.mkdir()
    return d


def _wav(path: Path, seed: int, seconds: float = 0.05) -> Path:
    """A short real WAV, its mtime set an hour back (a file at rest)."""
    rng = np.random.default_rng(seed)
    sf.write(path, rng.uniform(-0.5, 0.5, int(16000 * seconds)).astype(np.float32), 16000, subtype="PCM_16")
    _age(path)
    return path


def _age(path: Path, ago_s: float = 3600.0) -> None:
    """Set the file's mtime ``ago_s`` back from now: a file at rest (one changed within seconds is
    never trusted by its stamp)."""
    t = time.time_ns() - int(ago_s * 1e9)
    os.utime(path, ns=(t, t))


class Hasher:
    """file_sha256 that counts its calls, or refuses to be called."""

    def __init__(self, allowed: bool = True):
        self.allowed, self.calls = allowed, []

    def __call__(self, path: str) -> str:
        assert self.allowed, f"{path} was hashed"
        self.calls.append(path)
        return file_sha256(path)


def _store_ok(store: Warehouse, paths: list[Path], *, stats: bool = True) -> None:
    items = [(str(p), file_sha256(p), fake_file_result(i, str(p), n_chunks=1, explain=False))
             for i, p in enumerate(paths)]
    store.write_results(items, settings_key=KEY, stats={str(p): stat_of(p) for p in paths} if stats else None)


def _plan(prepass: Prepass, path: Path) -> Plan:
    return prepass.plan(str(path), *stat_of(path))


def test_unchanged_files_are_known_without_reading_them(store, folder):
    paths = [_wav(folder / f"c{i}.wav", i) for i in range(3)]
    _store_ok(store, paths)
    prepass = Prepass(store, KEY, under=str(folder), hasher=Hasher(allowed=False))
    plans = [_plan(prepass, p) for p in paths]
    assert [p.kind for p in plans] == ["unchanged"] * 3
    assert [p.sha256 for p in plans] == [file_sha256(p) for p in paths]
    assert prepass.restamp == {}


def test_a_touched_file_with_the_same_content_is_hashed_once_then_known_by_stamp(store, folder):
    path = _wav(folder / "a.wav", 1)
    _store_ok(store, [path])
    _age(path, ago_s=1800)  # touched: mtime moved, bytes the same
    hasher = Hasher()
    prepass = Prepass(store, KEY, hasher=hasher)
    plan = _plan(prepass, path)
    assert plan.kind == "unchanged" and hasher.calls == [str(path)]
    assert prepass.restamp == {str(path): stat_of(path)}
    assert store.update_file_stats(prepass.restamp) == 1
    assert _plan(Prepass(store, KEY, hasher=Hasher(allowed=False)), path).kind == "unchanged"


def test_changed_content_of_the_same_size_is_todo_with_its_new_hash(store, folder):
    path = _wav(folder / "a.wav", 1)
    _store_ok(store, [path])
    size_before = os.path.getsize(path)
    _wav(path, 99)  # new samples, same length: same size, new mtime
    _age(path, ago_s=1800)
    assert os.path.getsize(path) == size_before
    hasher = Hasher()
    plan = _plan(Prepass(store, KEY, hasher=hasher), path)
    assert plan == Plan("todo", str(path), file_sha256(path), *stat_of(path))
    assert hasher.calls == [str(path)]


def test_a_content_failure_with_the_same_stats_is_not_retried_nor_read(store, folder):
    path = _wav(folder / "bad.wav", 2)
    store.write_failed(str(path), file_sha256(path), "decoding failed: invalid data", error_type="decode",
                       size_bytes=stat_of(path)[0], stamp=stat_of(path)[1])
    plan = _plan(Prepass(store, KEY, hasher=Hasher(allowed=False)), path)
    assert (plan.kind, plan.reason, plan.error_type) == ("failed_before", "decoding failed: invalid data", "decode")


def test_retry_failed_and_retried_error_types_hash_the_file_again(store, folder):
    bad = _wav(folder / "bad.wav", 2)
    gone = _wav(folder / "gone.wav", 3)
    store.write_failed(str(bad), file_sha256(bad), "decoding failed", error_type="decode",
                       size_bytes=stat_of(bad)[0], stamp=stat_of(bad)[1])
    store.write_failed(str(gone), None, "cannot read: permission denied", error_type="unreadable",
                       size_bytes=stat_of(gone)[0], stamp=stat_of(gone)[1])
    hasher = Hasher()
    retry = Prepass(store, KEY, retry_failed=True, hasher=hasher)
    assert _plan(retry, bad).kind == "todo"
    plain = Prepass(store, KEY, hasher=hasher)
    assert _plan(plain, gone).kind == "todo"
    assert hasher.calls == [str(bad), str(gone)]


def test_a_content_failure_found_by_hash_is_failed_before(store, folder):
    """A row without stats (or a touched file): today's rule, by path and content."""
    path = _wav(folder / "bad.wav", 2)
    store.write_failed(str(path), file_sha256(path), "truncated file", error_type="truncated")
    hasher = Hasher()
    plan = _plan(Prepass(store, KEY, hasher=hasher), path)
    assert (plan.kind, plan.reason, plan.sha256) == ("failed_before", "truncated file", file_sha256(path))
    assert hasher.calls == [str(path)]


def test_the_same_content_at_a_new_path_is_copied_from_the_stored_results(store, folder):
    first = _wav(folder / "a.wav", 1)
    _store_ok(store, [first])
    twin = folder / "sub" / "a_copy.wav"
    twin.parent.mkdir()
    shutil.copyfile(first, twin)
    _age(twin)
    plan = _plan(Prepass(store, KEY), twin)
    assert plan.kind == "copy" and plan.source_file_id == store.file_id(first)
    assert plan.sha256 == file_sha256(first)
    assert _plan(Prepass(store, "other-settings"), twin).kind == "todo"  # results of other settings: not reused


def test_other_settings_hash_and_analyse_again(store, folder):
    path = _wav(folder / "a.wav", 1)
    _store_ok(store, [path])
    hasher = Hasher()
    plan = _plan(Prepass(store, "other-settings", hasher=hasher), path)
    assert plan.kind == "todo" and hasher.calls == [str(path)]


def test_a_remote_object_is_never_hashed_here(store):
    url = "s3://bucket/calls/a.wav"
    prepass = Prepass(store, KEY, hasher=Hasher(allowed=False))
    plan = prepass.plan(url, 1234, '"etag-1"')
    assert plan == Plan("todo", url, None, 1234, '"etag-1"')
    store.write_result(url, "sha-remote", fake_file_result(5, url, n_chunks=1, explain=False), settings_key=KEY,
                       size_bytes=1234, stamp='"etag-1"')
    prepass = Prepass(store, KEY, under="s3://bucket/calls", hasher=Hasher(allowed=False))
    assert prepass.plan(url, 1234, '"etag-1"') == Plan("unchanged", url, "sha-remote", 1234, '"etag-1"')
    assert prepass.plan(url, 1234, '"etag-2"').kind == "todo"


def test_a_file_that_cannot_be_read_is_failed_with_its_reason(store, folder):
    missing = folder / "vanished.wav"
    assert stat_of(missing) == (None, None)
    plan = _plan(Prepass(store, KEY), missing)
    assert plan.kind == "failed" and plan.error_type == "unreadable" and "not found" in plan.reason


def test_rows_without_stats_fall_back_to_hashing(store, folder):
    paths = [_wav(folder / f"c{i}.wav", i) for i in range(2)]
    _store_ok(store, paths, stats=False)
    hasher = Hasher()
    prepass = Prepass(store, KEY, hasher=hasher)
    assert [_plan(prepass, p).kind for p in paths] == ["unchanged", "unchanged"]
    assert hasher.calls == [str(p) for p in paths]
    assert set(prepass.restamp) == {str(p) for p in paths}


def test_a_just_written_file_is_not_trusted_by_its_stamp(folder):
    path = folder / "fresh.wav"
    sf.write(path, np.zeros(800, dtype=np.float32), 16000)
    size, stamp = stat_of(path)
    assert size == os.path.getsize(path) and stamp is None
    _age(path)
    assert stat_of(path)[1] == str(os.stat(path).st_mtime_ns)


def test_known_files_holds_one_row_per_path_under_the_folder(store, folder, tmp_path):
    inside = _wav(folder / "a.wav", 1)
    neighbour = tmp_path / "calls_old" / "b.wav"  # shares the prefix 'calls' but is not under it
    neighbour.parent.mkdir()
    _wav(neighbour, 2)
    _store_ok(store, [inside, neighbour])
    store.write_failed(str(folder / "x.wav"), None, "decoding failed", error_type="decode", settings_key=None)
    known = store.known_files(KEY, under=str(folder))
    assert set(known) == {str(inside), str(folder / "x.wav")}
    row = known[str(inside)]
    assert (row.sha256, row.status, row.settings_key) == (file_sha256(inside), "ok", KEY)
    assert (row.size_bytes, row.stamp) == stat_of(inside)
    assert set(store.known_files(KEY)) == {str(inside), str(neighbour), str(folder / "x.wav")}
    assert set(store.known_files("other")) == {str(folder / "x.wav")}  # failures whatever the settings


def test_a_version_4_database_gains_the_stat_columns_and_its_rows_are_hashed(tmp_path, folder):
    db = tmp_path / "v4.duckdb"
    path = _wav(folder / "a.wav", 1)
    con = duckdb.connect(str(db), config={"storage_compatibility_version": warehouse.STORAGE_COMPATIBILITY})
    migrate(con, str(db), target=4)
    con.execute("INSERT INTO files (file_id, path, sha256, status, settings_key, folder, ingested_at) "
                "VALUES (1, ?, ?, 'ok', ?, ?, now()::TIMESTAMP)", [str(path), file_sha256(path), KEY, str(folder)])
    con.close()
    store = Warehouse(db)
    hasher = Hasher()
    prepass = Prepass(store, KEY, hasher=hasher)  # opening the file migrates it
    cols = read_df("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'files' "
                   "AND column_name IN ('size_bytes', 'stamp') ORDER BY column_name", db=db)
    assert cols.values.tolist() == [["size_bytes", "BIGINT"], ["stamp", "VARCHAR"]]
    assert read_df("SELECT max(version) AS v FROM schema_version", db=db).v[0] == warehouse.SCHEMA_VERSION
    assert (prepass.known[str(path)].size_bytes, prepass.known[str(path)].stamp) == (None, None)
    assert _plan(prepass, path).kind == "unchanged" and hasher.calls == [str(path)]


def test_the_benchmark_runs_at_tiny_size(capsys):
    from bench.ingest_scale import main

    assert main(["--files", "40", "--sample", "10", "--write-files", "20", "--batch", "10"]) == 0
    out = capsys.readouterr().out
    assert "rerun, unchanged" in out and "write results" in out and "x" in out
