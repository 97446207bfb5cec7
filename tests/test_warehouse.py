"""The warehouse's writes, idempotency, schema versions and documentation (fabricated FileResults)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import warehouse
from pipeline.analyze import settings_key
from warehouse import SchemaVersionError, Warehouse, WarehouseError, queries, read_df
from warehouse.connection import write_connection
from warehouse.examples import EXAMPLES, examples_markdown
from warehouse.schema import SCHEMA_VERSION, TABLES, migrate
from warehouse.synth import fake_file_result, synthesize_database

ROOT = Path(__file__).resolve().parents[1]
DUCKDB_CLI = ROOT / ".venv" / "bin" / "duckdb"


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "w.duckdb"


@pytest.fixture
def store(db) -> Warehouse:
    return Warehouse(db)


def _count(db, sql, params=None) -> int:
    return int(read_df(sql, params, db=db).iloc[0, 0])


def _expected_emotion_rows(result) -> int:
    return sum(6 + len(c.extra) + len(c.granular) + len(c.complex) for c in result.chunks)


def test_a_written_file_lands_in_every_table(store, db):
    result = fake_file_result(1, "/data/a/x.wav", n_chunks=3, extra=("dis",))
    fid = store.write_result(None, "sha-x", result)
    chunk_ids = f"(SELECT chunk_id FROM chunks WHERE file_id = {fid})"
    assert _count(db, "SELECT count(*) FROM files WHERE path = '/data/a/x.wav' AND status = 'ok'") == 1
    assert _count(db, f"SELECT count(*) FROM chunks WHERE file_id = {fid}") == 3
    assert _count(db, f"SELECT count(*) FROM emotions WHERE chunk_id IN {chunk_ids}") == _expected_emotion_rows(result)
    assert _count(db, f"SELECT count(*) FROM features WHERE chunk_id IN {chunk_ids}") == \
        sum(len(c.features) for c in result.chunks)
    assert _count(db, f"SELECT count(*) FROM words WHERE chunk_id IN {chunk_ids}") == sum(len(c.words) for c in result.chunks)
    ex = result.chunks[0].explanation
    per_chunk_shap = len(ex.shap_segments) + len(ex.shap_features)
    assert _count(db, f"SELECT count(*) FROM shap WHERE chunk_id IN {chunk_ids}") == 3 * per_chunk_shap
    assert _count(db, f"SELECT count(*) FROM lime WHERE chunk_id IN {chunk_ids}") == 3 * len(ex.lime_segments)
    assert _count(db, f"SELECT count(*) FROM explanations WHERE chunk_id IN {chunk_ids}") == 3
    assert _count(db, f"SELECT count(*) FROM attention WHERE chunk_id IN {chunk_ids}") == 3 * (ex.attention.shape[0] + 1)


def test_stored_values_match_the_result(store, db):
    result = fake_file_result(2, "/data/a/x.wav", n_chunks=2, trained=True)
    fid = store.write_result(None, "sha-x", result, recorded_at=None)
    row = read_df("SELECT * FROM files WHERE file_id = ?", [fid], db=db).iloc[0]
    assert row.folder == "/data/a" and row.source == "batch" and bool(row.emotion_trained) is True
    assert row.settings_key == settings_key(result.settings)
    assert row.duration_s == pytest.approx(result.duration_s) and row.n_chunks == 2
    ch = result.chunks[1]
    got = read_df("SELECT c.idx, c.start_s, c.end_s, c.transcript, c.dominant, e.score FROM chunks c "
                  "JOIN emotions e USING (chunk_id) WHERE c.file_id = ? AND c.idx = 1 AND e.kind = 'base' "
                  "AND e.label = 'sadness'", [fid], db=db).iloc[0]
    assert (got.start_s, got.end_s, got.transcript, got.dominant) == (ch.start_s, ch.end_s, ch.transcript, ch.dominant)
    assert got.score == pytest.approx(ch.base["sadness"])


def test_absent_base_labels_are_null_rows_and_listed_on_the_file(store, db):
    result = fake_file_result(3, "/data/x.wav", n_chunks=2, absent=("fear", "surprise"))
    fid = store.write_result(None, "sha", result)
    scores = read_df("SELECT e.label, e.score FROM emotions e JOIN chunks c USING (chunk_id) "
                     "WHERE c.file_id = ? AND e.kind = 'base'", [fid], db=db)
    absent = scores[scores.label.isin(["fear", "surprise"])]
    assert len(absent) == 4 and absent.score.isna().all()
    assert scores[~scores.label.isin(["fear", "surprise"])].score.notna().all()
    labels = read_df("SELECT absent_labels FROM files WHERE file_id = ?", [fid], db=db).iloc[0, 0]
    assert list(labels) == ["fear", "surprise"]


def test_labels_outside_the_six_are_kept_as_extra(store, db):
    result = fake_file_result(4, "/data/x.wav", n_chunks=1, extra=("disgust", "other"))
    store.write_result(None, "sha", result)
    got = read_df("SELECT label, score FROM emotions WHERE kind = 'extra' ORDER BY label", db=db)
    assert list(got.label) == ["disgust", "other"]
    assert list(got.score) == pytest.approx([result.chunks[0].extra["disgust"], result.chunks[0].extra["other"]])


def test_undefined_numbers_are_stored_as_null_not_nan(store, db):
    result = fake_file_result(5, "/data/x.wav", n_chunks=1, explain=False)
    result.chunks[0].features = {"pitch_mean_hz": float("nan"), "rms_db": -20.0}
    store.write_result(None, "sha", result)
    got = read_df("SELECT name, value FROM features ORDER BY name", db=db)
    assert got.value.isna().tolist() == [True, False]
    assert _count(db, "SELECT count(*) FROM features WHERE isnan(value)") == 0


def test_attention_maps_and_rollout_round_trip(store, db):
    result = fake_file_result(6, "/data/x.wav", n_chunks=1)
    fid = store.write_result(None, "sha", result)
    chunk_id = _count(db, "SELECT chunk_id FROM chunks WHERE file_id = ?", [fid])
    got = queries.chunk_explanation(chunk_id, db=db)
    ex = result.chunks[0].explanation
    assert sorted(got.attention) == [-1, 0, 1]
    np.testing.assert_allclose(got.attention[1], ex.attention[1], rtol=1e-6)
    np.testing.assert_allclose(got.attention[-1], ex.attention_rollout, rtol=1e-6)
    assert got.meta.iloc[0].shap_full_value - got.meta.iloc[0].shap_base_value == \
        pytest.approx(got.shap[got.shap.kind == "segment"].value.sum())


def test_rewriting_the_same_content_and_settings_changes_nothing(store, db):
    result = fake_file_result(7, "/data/x.wav")
    first = store.write_result(None, "sha", result)
    before = read_df("SELECT ingested_at FROM files", db=db).iloc[0, 0]
    again = store.write_result(None, "sha", result)
    assert again == first
    assert _count(db, "SELECT count(*) FROM files") == 1
    assert _count(db, "SELECT count(*) FROM chunks") == len(result.chunks)
    assert read_df("SELECT ingested_at FROM files", db=db).iloc[0, 0] == before


def test_new_content_at_a_known_path_replaces_its_results(store, db):
    store.write_result(None, "old", fake_file_result(8, "/data/x.wav", n_chunks=5))
    new = fake_file_result(9, "/data/x.wav", n_chunks=2)
    fid = store.write_result(None, "new", new)
    files = read_df("SELECT file_id, sha256 FROM files", db=db)
    assert files.values.tolist() == [[fid, "new"]]
    assert _count(db, "SELECT count(*) FROM chunks") == 2
    for table in ("emotions", "features", "shap", "lime", "attention", "explanations", "words"):
        assert _count(db, f"SELECT count(*) FROM {table} WHERE chunk_id NOT IN (SELECT chunk_id FROM chunks)") == 0


def test_other_settings_replace_the_results_of_the_path(store, db):
    result = fake_file_result(10, "/data/x.wav")
    store.write_result(None, "sha", result, settings_key="settings-a")
    store.write_result(None, "sha", result, settings_key="settings-b")
    assert read_df("SELECT settings_key FROM files", db=db).settings_key.tolist() == ["settings-b"]


def test_same_content_at_another_path_is_copied_with_all_rows(store, db):
    result = fake_file_result(11, "/data/a/x.wav", n_chunks=3)
    key = settings_key(result.settings)
    src = store.write_result(None, "sha", result)
    assert store.find_reusable("sha", key) == src
    copy = store.copy_file_results(src, "/data/b/y.wav", run_id=None)
    assert copy != src
    rows = ("SELECT c.idx, e.kind, e.label, e.score FROM emotions e JOIN chunks c USING (chunk_id) "
            "WHERE c.file_id = ? ORDER BY ALL")
    assert read_df(rows, [copy], db=db).equals(read_df(rows, [src], db=db))
    for table in ("features", "shap", "lime", "attention", "explanations", "words"):
        n = f"SELECT count(*) FROM {table} t JOIN chunks c USING (chunk_id) WHERE c.file_id = ?"
        assert _count(db, n, [copy]) == _count(db, n, [src]) > 0
    meta = read_df("SELECT folder, reused_from, sha256, settings_key FROM files WHERE file_id = ?", [copy], db=db).iloc[0]
    assert (meta.folder, meta.reused_from, meta.sha256, meta.settings_key) == ("/data/b", src, "sha", key)
    assert store.copy_file_results(src, "/data/b/y.wav") == copy  # second copy: no-op


def test_copying_from_a_file_without_results_is_refused(store):
    fid = store.write_failed("/data/bad.wav", "sha", "not audio: garbage")
    with pytest.raises(WarehouseError, match=f"file {fid} has no stored results"):
        store.copy_file_results(fid, "/data/other.wav")


def test_find_reusable_needs_ok_results_with_the_same_settings(store):
    store.write_failed("/data/bad.wav", "sha-bad", "decoding failed", settings_key="k")
    result = fake_file_result(12, "/data/x.wav")
    store.write_result(None, "sha", result, settings_key="k")
    assert store.find_reusable("sha-bad", "k") is None
    assert store.find_reusable("sha", "other-settings") is None
    assert store.find_reusable("sha", "k") is not None


def test_already_done_requires_same_path_content_and_settings(store):
    store.write_result(None, "sha", fake_file_result(13, "/data/x.wav"), settings_key="k")
    assert store.already_done("/data/x.wav", "sha", "k")
    assert not store.already_done("/data/x.wav", "sha-changed", "k")
    assert not store.already_done("/data/x.wav", "sha", "k2")
    assert not store.already_done("/data/elsewhere.wav", "sha", "k")


def test_failed_files_are_retried_and_skipped_files_are_not(store):
    store.write_failed("/data/f.wav", "sha-f", "model ran out of memory", settings_key="k")
    store.write_skipped("/data/s.txt", "not audio: text file", sha256="sha-s", settings_key="k")
    assert not store.already_done("/data/f.wav", "sha-f", "k")
    assert store.already_done("/data/s.txt", "sha-s", "k")


def test_a_batch_of_files_is_written_in_one_go_with_the_same_rules(store, db):
    store.write_result(None, "sha-0", fake_file_result(30, "/data/b0.wav"))
    store.write_result(None, "old", fake_file_result(31, "/data/b1.wav", n_chunks=6))
    items = [(None, "sha-0", fake_file_result(30, "/data/b0.wav")),  # unchanged
             (None, "new", fake_file_result(32, "/data/b1.wav", n_chunks=2)),  # replaced
             (None, "sha-2", fake_file_result(33, "/data/b2.wav", n_chunks=3))]  # new
    before = store.file_id("/data/b0.wav")
    ids = store.write_results(items)
    assert ids[0] == before and len(set(ids)) == 3
    got = read_df("SELECT path, sha256, n_chunks FROM files ORDER BY path", db=db).values.tolist()
    assert got == [["/data/b0.wav", "sha-0", 4], ["/data/b1.wav", "new", 2], ["/data/b2.wav", "sha-2", 3]]
    assert _count(db, "SELECT count(*) FROM chunks") == 9
    expected = sum(_expected_emotion_rows(r) for _, _, r in items)
    assert _count(db, "SELECT count(*) FROM emotions") == expected


def test_a_batch_naming_one_path_twice_is_refused_whole(store, db):
    items = [(None, "a", fake_file_result(34, "/data/x.wav")), (None, "b", fake_file_result(35, "/data/x.wav"))]
    with pytest.raises(ValueError, match="same path twice in one batch: /data/x.wav"):
        store.write_results(items)
    assert _count(db, "SELECT count(*) FROM files") == 0


def test_a_failure_at_a_path_replaces_its_old_results_and_keeps_the_reason(store, db):
    store.write_result(None, "sha", fake_file_result(14, "/data/x.wav"))
    store.write_failed("/data/x.wav", "sha2", "decoding failed: truncated file", error_type="AudioError")
    got = read_df("SELECT status, error, error_type, n_chunks FROM files", db=db)
    assert got.values.tolist() == [["failed", "decoding failed: truncated file", "AudioError", 0]]
    assert _count(db, "SELECT count(*) FROM chunks") == 0


def test_a_failed_write_leaves_the_earlier_results_untouched(store, db, monkeypatch):
    from warehouse import inserts as store_mod

    store.write_result(None, "old", fake_file_result(15, "/data/x.wav", n_chunks=2))
    before = read_df("SELECT * FROM emotions ORDER BY ALL", db=db)
    real = store_mod._insert_arrow

    def broken(con, table, data):
        if table == "shap":
            raise RuntimeError("disk full")
        real(con, table, data)

    monkeypatch.setattr(store_mod, "_insert_arrow", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        store.write_result(None, "new", fake_file_result(16, "/data/x.wav", n_chunks=4))
    assert read_df("SELECT sha256 FROM files", db=db).sha256.tolist() == ["old"]
    assert _count(db, "SELECT count(*) FROM chunks") == 2
    assert read_df("SELECT * FROM emotions ORDER BY ALL", db=db).equals(before)


def test_bad_status_or_source_is_rejected_with_the_allowed_values(store):
    with pytest.raises(ValueError, match="'failed' or 'skipped'"):
        store.write_failed("/data/x.wav", "sha", "why", status="ok")
    with pytest.raises(ValueError, match="batch"):
        store.write_result(None, "sha", fake_file_result(17), source="stream")


def test_runs_record_their_config_outcome_and_counts(store, db):
    run = store.start_run('{"explain": "fast"}')
    assert read_df("SELECT status FROM runs WHERE run_id = ?", [run], db=db).iloc[0, 0] == "running"
    store.write_result(None, "a", fake_file_result(18, "/data/a.wav"), run_id=run)
    store.write_failed("/data/b.wav", "b", "decoding failed", run_id=run)
    store.write_skipped("/data/.c", "hidden file", run_id=run)
    store.finish_run(run, "completed", summary={"wall_s": 1.5})
    row = read_df("SELECT * FROM runs WHERE run_id = ?", [run], db=db).iloc[0]
    assert (row.status, row.n_files, row.n_failed, row.n_skipped) == ("completed", 1, 1, 1)
    assert row.config == '{"explain": "fast"}' and '"wall_s": 1.5' in row.summary
    assert row.finished_at >= row.started_at


def test_finishing_an_unknown_run_names_it(store):
    store.start_run()
    with pytest.raises(WarehouseError, match="run 999 does not exist"):
        store.finish_run(999, "completed")


def test_live_results_are_marked_as_live(store, db):
    store.write_result("live/session-1/utt-0001.wav", "sha", fake_file_result(19), source="live")
    assert read_df("SELECT source FROM files", db=db).iloc[0, 0] == "live"


# ----------------------------------------------------------------------------- schema versions
def _make_v1_database(path: Path) -> None:
    """A file as version 1 of the warehouse left it (built directly, like an old installation)."""
    import duckdb

    con = duckdb.connect(str(path), config={"storage_compatibility_version": warehouse.STORAGE_COMPATIBILITY})
    migrate(con, str(path), target=1)
    con.execute("INSERT INTO runs VALUES (1, TIMESTAMP '2024-03-01 09:00', NULL, 'completed', 1, 0, '{}')")
    con.execute("INSERT INTO files VALUES (1, '/old/calls/a.wav', 'sha-a', 4.0, 8000, 1, 'ok', NULL, 1, 'm', 'w'),"
                " (2, '/old/calls/b.wav', 'sha-b', NULL, NULL, NULL, 'failed', 'decoding failed', 1, NULL, NULL)")
    con.execute("INSERT INTO chunks VALUES (1, 1, 0, 0.0, 2.0, 'hello', 'en'), (2, 1, 1, 2.0, 4.0, 'bye', 'en')")
    con.execute("INSERT INTO emotions VALUES (1, 'base', 'anger', 0.6), (1, 'base', 'neutral', 0.3), "
                "(1, 'base', 'sadness', 0.1), (2, 'base', 'anger', 0.2), (2, 'base', 'neutral', 0.7), "
                "(2, 'base', 'sadness', 0.1), (1, 'granular', 'Rage', 0.6)")
    con.execute("INSERT INTO shap VALUES (1, 'anger', 'segment:0', 0.2), (1, 'anger', 'segment:1', 0.1), "
                "(1, 'anger', 'pitch_mean_hz', 0.05)")
    con.execute("INSERT INTO lime VALUES (1, 'anger', 0, 0.0, 1.0, 0.3), (1, 'anger', 1, 1.0, 2.0, 0.1)")
    con.close()


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    db = tmp_path / "old.duckdb"
    _make_v1_database(db)
    versions = read_df("SELECT version FROM schema_version ORDER BY version", db=db).version.tolist()
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    f = read_df("SELECT * FROM files WHERE file_id = 1", db=db).iloc[0]
    assert f.folder == "/old/calls" and f.source == "batch" and f.n_chunks == 2
    assert list(f.absent_labels) == ["fear", "happiness", "surprise"]
    assert str(f.ingested_at) == "2024-03-01 09:00:00"
    assert pd_isna(f.emotion_trained)  # unknown for version-1 rows, never guessed
    absent = read_df("SELECT count(*) AS n, count(score) AS scored FROM emotions "
                     "WHERE kind = 'base' AND label IN ('fear', 'happiness', 'surprise')", db=db).iloc[0]
    assert (absent.n, absent.scored) == (6, 0)
    assert read_df("SELECT dominant FROM chunks ORDER BY idx", db=db).dominant.tolist() == ["anger", "neutral"]
    shap = read_df("SELECT feature, kind, segment, start_s, end_s FROM shap ORDER BY feature", db=db)
    assert shap.kind.tolist() == ["acoustic", "segment", "segment"]
    assert shap.iloc[2][["segment", "start_s", "end_s"]].tolist() == [1, 1.0, 2.0]
    # The upgraded file takes new writes.
    Warehouse(db).write_result(None, "sha-new", fake_file_result(20, "/new/x.wav"))
    assert _count(db, "SELECT count(*) FROM files") == 3


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_a_database_from_a_newer_version_is_refused(db, store):
    store.start_run()
    with write_connection(db) as con:
        con.execute("INSERT INTO schema_version VALUES (99, now()::TIMESTAMP, 'from the future')")
    with pytest.raises(SchemaVersionError, match="schema version 99.*newer EmotiVoice"):
        warehouse.query("SELECT 1", db=db)
    with pytest.raises(SchemaVersionError, match="newer EmotiVoice"):
        store.start_run()


def test_a_foreign_duckdb_file_is_refused(tmp_path):
    import duckdb

    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE sales (amount DOUBLE)")
    con.close()
    with pytest.raises(SchemaVersionError, match="not an EmotiVoice database"):
        Warehouse(path).start_run()


def test_a_file_that_is_not_a_database_gives_a_plain_error(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("just text\n" * 100)
    with pytest.raises(WarehouseError, match=f"cannot open database {path}"):
        warehouse.query("SELECT 1", db=path)


# ----------------------------------------------------------------------------- other clients, docs, examples
@pytest.fixture(scope="module")
def filled_db(tmp_path_factory) -> Path:
    """Trained-flagged fakes (so emotion examples have rows), a copy, failures, a skip, a finished run."""
    db = tmp_path_factory.mktemp("filled") / "filled.duckdb"
    store = Warehouse(db)
    run = store.start_run('{"explain": "fast"}')
    for i in range(6):
        r = fake_file_result(100 + i, f"/corpus/{['calls', 'meetings'][i % 2]}/clip_{i}.wav", n_chunks=4, trained=True)
        store.write_result(None, f"sha-{i}", r, run_id=run)
    src = store.find_reusable("sha-0", settings_key(fake_file_result(100).settings))
    store.copy_file_results(src, "/corpus/copies/clip_0.wav", run_id=run)
    store.write_failed("/corpus/calls/broken.wav", "sha-b", "decoding failed: truncated file", run_id=run)
    store.write_skipped("/corpus/calls/readme.txt", "not audio: text file", run_id=run)
    store.write_result(None, "sha-u", fake_file_result(200, "/corpus/untrained/u.wav", trained=False), run_id=run)
    store.finish_run(run, "completed")
    return db


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.title for e in EXAMPLES])
def test_every_example_query_runs_and_finds_rows(filled_db, example):
    result = warehouse.query(example.sql, db=filled_db)
    assert len(result) > 0 and len(result.columns) >= 2


def test_emotion_examples_leave_out_untrained_models(filled_db):
    sql = next(e.sql for e in EXAMPLES if e.title == "Angriest chunks with their transcripts")
    paths = set(warehouse.query(sql, db=filled_db).path)
    assert paths and not any("/untrained/" in p for p in paths)


def test_the_duckdb_cli_opens_the_file_and_runs_the_examples(filled_db, tmp_path):
    if not DUCKDB_CLI.exists():
        pytest.fail(f"{DUCKDB_CLI} missing: install the dev extras (duckdb-cli)")
    script = tmp_path / "examples.sql"
    script.write_text(";\n".join(e.sql for e in EXAMPLES) + ";\n")
    out = subprocess.run([str(DUCKDB_CLI), "-readonly", str(filled_db), "-csv", "-c",
                          "SELECT count(*) AS n FROM chunks"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["n", str(_count(filled_db, "SELECT count(*) FROM chunks"))]
    out = subprocess.run([str(DUCKDB_CLI), "-readonly", str(filled_db), "-f", str(script)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Error" not in out.stdout + out.stderr, out.stdout[-2000:] + out.stderr


def _doc() -> str:
    return (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")


def test_the_docs_describe_every_table_and_column(filled_db):
    doc = _doc()
    cols = read_df("SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'main' "
                   "AND NOT internal ORDER BY table_name, column_index", db=filled_db)
    assert set(cols.table_name) == set(TABLES)
    for table, group in cols.groupby("table_name"):
        m = re.search(rf"^### `{table}`\n(.*?)(?=^### |^## |\Z)", doc, re.S | re.M)
        assert m, f"docs/schema.md has no section ### `{table}`"
        documented = set(re.findall(r"^\| `(\w+)` \|", m.group(1), re.M))
        missing = set(group.column_name) - documented
        assert not missing, f"{table}: columns not documented: {sorted(missing)}"


def test_the_docs_show_the_example_queries_as_the_dashboard_offers_them():
    assert examples_markdown() in _doc(), "regenerate the examples section: python -m warehouse.examples"


# ----------------------------------------------------------------------------- synthetic data
def test_synthesize_database_makes_normalised_untrained_chunks(tmp_path):
    db = tmp_path / "synth.duckdb"
    stats = synthesize_database(db, 1000, chunks_per_file=40, n_folders=3)
    assert (stats.files, stats.chunks) == (25, 1000)
    assert _count(db, "SELECT count(*) FROM chunks") == 1000
    assert _count(db, "SELECT count(DISTINCT folder) FROM files") == 3
    sums = read_df("SELECT sum(score) AS s FROM emotions WHERE kind = 'base' GROUP BY chunk_id", db=db).s
    assert np.allclose(sums, 1.0)
    assert _count(db, "SELECT count(*) FROM files WHERE emotion_trained") == 0
    mix = queries.emotion_mix("folder", db=db)
    assert mix.empty  # untrained: not emotions, left out by default
    mix = queries.emotion_mix("folder", include_untrained=True, db=db)
    assert set(mix.label) == set(warehouse.schema.BASE_LABELS)
    assert mix.groupby("group").dominant_share.sum().round(6).eq(1.0).all()


def test_the_benchmark_runs_at_tiny_size(tmp_path, capsys):
    from bench.warehouse_bench import main

    assert main(["--tiny", "--dir", str(tmp_path / "bench")]) == 0
    out = capsys.readouterr().out
    assert "faster per row than executemany" in out and "emotion mix by hour" in out and "empty write" in out


# ----------------------------------------------------------------------------- file size and change stamp
def _stats_of(db, path) -> tuple:
    row = read_df("SELECT size_bytes, stamp FROM files WHERE path = ?", [path], db=db).iloc[0]
    return (None if pd_isna(row.size_bytes) else int(row.size_bytes), row.stamp)


def test_every_write_records_the_size_and_stamp_it_is_given(store, db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store.write_result("/data/one.wav", "sha-1", fake_file_result(40, "/data/one.wav"), size_bytes=10, stamp="s1")
    store.write_results([("rel/two.wav", "sha-2", fake_file_result(41, "rel/two.wav")),
                         ("/data/three.wav", "sha-3", fake_file_result(42, "/data/three.wav"))],
                        stats={"rel/two.wav": (20, "s2")})  # keyed by the path as given
    store.write_failed("/data/bad.wav", "sha-b", "decoding failed", error_type="decode", size_bytes=30, stamp="s3")
    copy_id = store.copy_file_results(store.file_id("/data/one.wav"), "/data/copy.wav", size_bytes=11, stamp="c1")
    assert _stats_of(db, "/data/one.wav") == (10, "s1")
    assert _stats_of(db, str(tmp_path / "rel" / "two.wav")) == (20, "s2")
    assert _stats_of(db, "/data/three.wav") == (None, None)  # not given: unknown
    assert _stats_of(db, "/data/bad.wav") == (30, "s3")
    assert _stats_of(db, "/data/copy.wav") == (11, "c1")  # its own, never the source's
    assert store.file_id("/data/copy.wav") == copy_id


def test_rewriting_unchanged_content_updates_only_its_stats(store, db):
    fid = store.write_result("/data/a.wav", "sha", fake_file_result(43, "/data/a.wav"), size_bytes=1, stamp="old")
    chunks = _count(db, "SELECT count(*) FROM chunks")
    again = store.write_result("/data/a.wav", "sha", fake_file_result(43, "/data/a.wav"), size_bytes=1, stamp="new")
    assert again == fid and _count(db, "SELECT count(*) FROM chunks") == chunks
    assert _stats_of(db, "/data/a.wav") == (1, "new")
    store.write_failed("/data/f.wav", "sha-f", "truncated", error_type="truncated", size_bytes=5, stamp="f1")
    store.write_failed("/data/f.wav", "sha-g", "truncated", error_type="truncated")  # a new verdict, stats unknown
    assert _stats_of(db, "/data/f.wav") == (None, None)
    assert store.update_file_stats({"/data/a.wav": (2, "touched"), "/data/nowhere.wav": (3, "x")}) == 1
    assert _stats_of(db, "/data/a.wav") == (2, "touched")
