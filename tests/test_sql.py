"""Analyst SQL: read-only sandbox, limits, one error type; export; the CLI helpers."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import warehouse
from flows import sql_cli
from warehouse import QueryError, Warehouse, query, read_df
from warehouse.connection import read_connection, resolve_db
from warehouse.synth import fake_file_result


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sql") / "w.duckdb"
    store = Warehouse(path)
    run = store.start_run("{}")
    for i in range(4):
        folder = "calls" if i < 3 else "meetings"
        store.write_result(None, f"sha-{i}", fake_file_result(i, f"/corpus/{folder}/c{i}.wav", n_chunks=3, trained=True),
                           run_id=run)
    store.write_failed("/corpus/calls/bad.wav", "sha-bad", "decoding failed: truncated", run_id=run)
    store.finish_run(run, "completed")
    return path


def _counts(db) -> dict[str, int]:
    from warehouse.queries import table_counts

    return dict(table_counts(db=db).itertuples(index=False))


def test_a_query_returns_a_dataframe_with_its_columns(db):
    result = query("SELECT folder, count(*) AS n FROM files GROUP BY folder ORDER BY folder", db=db)
    assert list(result.columns) == ["folder", "n"]
    assert result.values.tolist() == [["/corpus/calls", 4], ["/corpus/meetings", 1]]
    assert result.truncated is False and result.elapsed_s >= 0


def test_queries_take_positional_and_named_parameters(db):
    assert query("SELECT count(*) AS n FROM files WHERE folder = ?", ["/corpus/meetings"], db=db).n[0] == 1
    assert query("SELECT count(*) AS n FROM files WHERE status = $s", {"s": "failed"}, db=db).n[0] == 1


def test_describe_show_and_summarize_are_allowed(db):
    assert "chunk_id" in set(query("DESCRIBE chunks", db=db).column_name)
    assert "files" in set(query("SHOW TABLES", db=db).name)
    assert len(query("SUMMARIZE chunks", db=db)) > 0


def test_rows_beyond_the_limit_are_cut_and_flagged(db):
    result = query("SELECT * FROM range(25)", db=db, limit=10)
    assert len(result) == 10 and result.truncated is True
    assert query("SELECT * FROM range(10)", db=db, limit=10).truncated is False
    assert len(query("SELECT * FROM range(20000)", db=db, limit=None)) == 20000


def test_a_slow_query_is_stopped_at_its_time_limit(db):
    slow = "SELECT sum(hash(a.range * b.range)) FROM range(1000000) a, range(1000000) b"
    with pytest.raises(QueryError, match="longer than its 0.3 s time limit"):
        query(slow, db=db, timeout_s=0.3)
    assert query("SELECT 42 AS x", db=db).x[0] == 42  # the database is free again


def test_bad_sql_raises_query_error_with_duckdbs_message(db):
    with pytest.raises(QueryError) as err:
        query("SELEC * FROM files", db=db)
    assert str(err.value).startswith("Parser Error: syntax error at or near \"SELEC\"")
    with pytest.raises(QueryError, match='Referenced column "nope" not found'):
        query("SELECT nope FROM files", db=db)
    with pytest.raises(QueryError, match="empty query"):
        query("   ", db=db)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')",
])
def test_reading_other_files_or_urls_is_refused(db, sql):
    with pytest.raises(QueryError, match="disabled by configuration|Permission|does not exist"):
        query(sql, db=db)


@pytest.mark.parametrize("sql", [
    "INSERT INTO runs (run_id, started_at, status) VALUES (99, now(), 'x')",
    "DELETE FROM files",
    "UPDATE files SET status = 'failed'",
    "DROP TABLE chunks",
    "CREATE TABLE t AS SELECT 1",
    "COPY files TO '/tmp/stolen.csv'",
    "EXPORT DATABASE '/tmp/stolen'",
    "ATTACH '/tmp/other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "CHECKPOINT",
    "SELECT 1; DELETE FROM files",
])
def test_writes_and_side_effects_are_refused(db, sql):
    before = _counts(db)
    with pytest.raises(QueryError):
        query(sql, db=db)
    assert _counts(db) == before
    assert not Path("/tmp/stolen.csv").exists()


def test_the_sandbox_holds_even_without_the_statement_check(db):
    """The read connection itself refuses writes, file access and unlocking its settings."""
    import duckdb

    with read_connection(db) as con:
        for sql in ("SET enable_external_access = true", "SET lock_configuration = false",
                    "DELETE FROM files", "COPY files TO '/tmp/stolen2.csv'"):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
    assert not Path("/tmp/stolen2.csv").exists()


def test_read_df_returns_every_row(db):
    df = read_df("SELECT * FROM range(12000)", db=db)
    assert len(df) == 12000


def test_queries_on_a_new_path_see_empty_tables(tmp_path):
    assert query("SELECT count(*) AS n FROM chunks", db=tmp_path / "fresh.duckdb").n[0] == 0


def test_the_default_database_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMOTIVOICE_CONFIG", raising=False)
    monkeypatch.delenv("EMOTIVOICE_DB", raising=False)
    assert resolve_db() == tmp_path / "emotivoice.duckdb"
    monkeypatch.setenv("EMOTIVOICE_DB", str(tmp_path / "elsewhere.duckdb"))
    assert resolve_db() == tmp_path / "elsewhere.duckdb"
    assert resolve_db("x.duckdb") == tmp_path / "x.duckdb"


# ----------------------------------------------------------------------------- export
@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_export_writes_every_table_in_each_format(db, tmp_path, fmt):
    result = warehouse.export(tmp_path / fmt, fmt=fmt, db=db)
    counts = _counts(db)
    assert result.rows == counts
    for table, path in result.files.items():
        assert path == tmp_path / fmt / f"{table}.{fmt}"
        if fmt == "parquet":
            assert pq.read_table(path).num_rows == counts[table]
        elif fmt == "csv":
            assert len(path.read_text().splitlines()) == counts[table] + 1  # header
        else:
            lines = path.read_text().splitlines()
            assert len(lines) == counts[table]
            assert all(isinstance(json.loads(line), dict) for line in lines)
    manifest = json.loads((tmp_path / fmt / "manifest.json").read_text())
    assert manifest["tables"]["chunks"]["rows"] == counts["chunks"]


def test_export_json_keeps_maps_lists_and_nulls_readable(db, tmp_path):
    warehouse.export(tmp_path, fmt="json", db=db)
    rows = [json.loads(line) for line in (tmp_path / "explanations.json").read_text().splitlines()]
    faith = [r["faithfulness"] for r in rows if r["faithfulness"] is not None]
    assert faith and set(faith[0]) >= {"aopc_top", "aopc_random"}
    att = json.loads((tmp_path / "attention.json").read_text().splitlines()[0])
    assert len(att["data"]) == att["n"] ** 2


def test_export_where_filters_files_and_their_children_follow(db, tmp_path):
    result = warehouse.export(tmp_path, fmt="parquet", where="folder = '/corpus/meetings'", db=db)
    files = pq.read_table(tmp_path / "files.parquet").to_pylist()
    assert [f["path"] for f in files] == ["/corpus/meetings/c3.wav"]
    chunk_ids = set(pq.read_table(tmp_path / "chunks.parquet").column("chunk_id").to_pylist())
    assert len(chunk_ids) == 3
    for table in ("emotions", "features", "shap", "lime", "attention", "explanations", "words"):
        ids = set(pq.read_table(tmp_path / f"{table}.parquet").column("chunk_id").to_pylist())
        assert ids == chunk_ids, table
    assert result.rows["runs"] == 1


@pytest.mark.parametrize("where", [
    "1=1; DROP TABLE files", "no_such_column = 1", "1=1) UNION ALL (SELECT 1", "status = 'ok') OR (1=1"])
def test_export_refuses_a_where_that_is_not_a_condition_on_files(db, tmp_path, where):
    before = _counts(db)
    with pytest.raises(QueryError):
        warehouse.export(tmp_path, where=where, db=db)
    assert _counts(db) == before


# ----------------------------------------------------------------------------- CLI helpers
def _sql_args(argv):
    parser = argparse.ArgumentParser()
    sql_cli.add_sql_arguments(parser)
    return parser.parse_args(argv)


def _run_sql(argv):
    out, err = io.StringIO(), io.StringIO()
    code = sql_cli.run_sql(_sql_args(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_sql_cli_prints_a_table_csv_or_json(db):
    sql = "SELECT folder, count(*) AS n FROM files GROUP BY folder ORDER BY folder"
    code, out, err = _run_sql([sql, "--db", str(db)])
    assert code == 0 and "/corpus/calls" in out and "(2 rows)" in err
    code, out, _ = _run_sql([sql, "--db", str(db), "--format", "csv"])
    assert out.splitlines() == ["folder,n", "/corpus/calls,4", "/corpus/meetings,1"]
    code, out, _ = _run_sql([sql, "--db", str(db), "--format", "json"])
    assert json.loads(out) == [{"folder": "/corpus/calls", "n": 4}, {"folder": "/corpus/meetings", "n": 1}]


def test_sql_cli_says_when_rows_were_cut(db):
    code, out, err = _run_sql(["SELECT * FROM range(50)", "--db", str(db), "--limit", "5", "--format", "csv"])
    assert code == 0 and len(out.splitlines()) == 6 and "cut at --limit 5" in err


def test_sql_cli_reports_errors_in_one_line_without_a_stack(db):
    code, out, err = _run_sql(["SELEC 1", "--db", str(db)])
    assert code == 2 and out == ""  # bad input
    assert err.startswith("error: Parser Error: syntax error") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "LINE 1: SELEC 1" in err


def test_sql_cli_names_a_missing_database(tmp_path):
    code, _, err = _run_sql(["SELECT 1", "--db", str(tmp_path / "missing.duckdb")])
    assert code == 2 and "no database at" in err and "missing.duckdb" in err
    assert not (tmp_path / "missing.duckdb").exists()


def test_sql_cli_uses_the_callers_db_option_when_it_has_one(db):
    parser = argparse.ArgumentParser()
    parser.add_argument("--db")
    sql_cli.add_sql_arguments(parser)  # does not clash
    args = parser.parse_args(["SELECT 1 AS one", "--db", str(db), "--format", "csv"])
    out = io.StringIO()
    assert sql_cli.run_sql(args, stdout=out, stderr=io.StringIO()) == 0 and out.getvalue().split() == ["one", "1"]


def test_export_cli_writes_files_and_lists_them(db, tmp_path):
    parser = argparse.ArgumentParser()
    sql_cli.add_export_arguments(parser)
    args = parser.parse_args(["--format", "csv", "--out", str(tmp_path / "out"), "--where", "status = 'failed'",
                              "--db", str(db)])
    out, err = io.StringIO(), io.StringIO()
    assert sql_cli.run_export(args, stdout=out, stderr=err) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == len(warehouse.TABLES)
    assert any(line.endswith("files.csv\t1 rows") for line in lines)
    assert os.path.exists(tmp_path / "out" / "manifest.json")


def test_export_cli_reports_a_bad_where_in_one_line(db, tmp_path):
    parser = argparse.ArgumentParser()
    sql_cli.add_export_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--where", "nope = 1", "--db", str(db)])
    err = io.StringIO()
    assert sql_cli.run_export(args, stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue().startswith("error: --where 'nope = 1': Binder Error")
    assert len(err.getvalue().strip().splitlines()) == 1


def test_sql_cli_finds_the_database_named_in_the_config_file(db, tmp_path):
    toml = tmp_path / "emotivoice.toml"
    toml.write_text(f'[paths]\ndb = "{db}"\n')
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    sql_cli.add_sql_arguments(parser)
    args = parser.parse_args(["--config", str(toml), "SELECT count(*) AS n FROM files", "--format", "csv"])
    out = io.StringIO()
    assert sql_cli.run_sql(args, stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().split() == ["n", "5"]
