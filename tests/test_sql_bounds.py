"""Bounded analyst SQL: memory cap, time limit over execution and fetch, row and byte caps, one-line
errors with stable exit codes (CLI), NULL shown as an empty cell."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import warehouse
from flows import sql_cli
from warehouse import QueryError, Warehouse, query
from warehouse.connection import ensure_database
from warehouse.errors import QueryLimitError
from warehouse.synth import fake_file_result

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ("SELECT repeat('x', 2000000000)", "SELECT list(range) FROM range(1000000000)")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bounds") / "w.duckdb"
    store = Warehouse(path)
    run = store.start_run("{}")
    store.write_result(None, "sha-0", fake_file_result(0, "/corpus/calls/c0.wav", n_chunks=2, trained=True), run_id=run)
    store.finish_run(run, "completed")
    return path


def _children_of_me() -> list[int]:
    me = os.getpid()
    out = []
    for tid in os.listdir(f"/proc/{me}/task"):
        with open(f"/proc/{me}/task/{tid}/children") as fh:
            out += [int(c) for c in fh.read().split()]
    return [p for p in out if os.path.exists(f"/proc/{p}") and "sandbox_child" in _cmdline(p)]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# ----------------------------------------------------------------------------- the library
@pytest.mark.parametrize("sql", HOSTILE)
def test_a_query_that_needs_gigabytes_stops_at_the_memory_cap_with_a_reason(db, sql):
    t0 = time.monotonic()
    with pytest.raises(QueryLimitError, match=r"needed more memory than its 2048 MB cap") as err:
        query(sql, db=db)
    assert time.monotonic() - t0 < 60
    assert "\n" not in str(err.value) and err.value.exit_code == 4
    assert _children_of_me() == []


def test_the_time_limit_covers_fetching_not_only_execution(db):
    """A billion rows start streaming at once; fetching them is what takes long. No row or byte cap here."""
    t0 = time.monotonic()
    with pytest.raises(QueryLimitError, match="longer than its 2 s time limit"):
        query("SELECT range AS n FROM range(1000000000)", db=db, limit=None, max_bytes=None, timeout_s=2)
    assert time.monotonic() - t0 < 10
    assert _children_of_me() == []  # the child was killed, not left running
    assert query("SELECT 42 AS x", db=db).x[0] == 42


def test_results_are_cut_at_the_byte_cap_while_fetching(db):
    result = query("SELECT repeat('x', 100000) AS s FROM range(1000)", db=db, max_bytes=1 << 20)
    assert result.truncated is True and result.truncated_by == "bytes"
    assert 0 < len(result) <= 10 and result.max_bytes == 1 << 20
    assert sum(len(s) for s in result.s) <= 1 << 20
    whole = query("SELECT repeat('x', 1000) AS s FROM range(10)", db=db, max_bytes=1 << 20)
    assert len(whole) == 10 and whole.truncated_by is None


def test_rows_cut_say_so_and_the_defaults_come_from_the_config(db, monkeypatch):
    monkeypatch.setenv("EMOTIVOICE_SQL_MAX_ROWS", "7")
    result = query("SELECT * FROM range(20)", db=db)
    assert len(result) == 7 and result.truncated_by == "rows" and result.limit == 7


def test_nulls_lists_and_maps_come_back_as_python_values(db):
    result = query("SELECT NULL::INTEGER AS i, NULL::VARCHAR AS v, [1, NULL] AS l, MAP {'a': 1.5} AS m, "
                   "1.25::DECIMAL(5, 2) AS d", db=db)
    row = result.iloc[0]
    assert row.isna().i and row.isna().v
    assert list(row.l)[0] == 1 and row.m == {"a": 1.5} and row.d == 1.25


def test_a_sandbox_refusal_still_refuses_in_the_child(db):
    with pytest.raises(QueryError, match="disabled by configuration"):
        query("SELECT * FROM read_text('/etc/hostname')", db=db)


def test_an_export_with_a_hostile_where_stops_at_the_memory_cap(db, tmp_path):
    with pytest.raises(QueryLimitError, match="export stopped: it needed more memory"):
        warehouse.export(tmp_path / "out", where="length(repeat('x', 2000000000)) > 0", db=db)
    assert not list((tmp_path / "out").glob("*.parquet"))


# ----------------------------------------------------------------------------- the CLI
def _sql(argv, **kw):
    parser = argparse.ArgumentParser()
    parser.add_argument("--debug", action="store_true")
    sql_cli.add_sql_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = sql_cli.run_sql(parser.parse_args(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _export(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--debug", action="store_true")
    sql_cli.add_export_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = sql_cli.run_export(parser.parse_args(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_sql_table_output_shows_null_as_an_empty_cell_and_cuts_long_values(db):
    code, out, _ = _sql(["SELECT 1 AS a, NULL::VARCHAR AS b, NULL::DOUBLE AS c, NULL::INTEGER AS d, "
                         "repeat('y', 5000) AS e", "--db", str(db)])
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["a", "b", "c", "d", "e"]
    assert row.split()[0] == "1" and "None" not in row and "NaN" not in row and "<NA>" not in row
    assert row.count("y") == 199 and row.rstrip().endswith("…")  # cut at 200 characters
    code, out, _ = _sql(["SELECT NULL::VARCHAR AS b, 2 AS n", "--db", str(db), "--format", "csv"])
    assert out.splitlines() == ["b,n", ",2"]


def test_sql_says_when_the_byte_cap_cut_the_result(db):
    code, out, err = _sql(["SELECT repeat('x', 100000) AS s FROM range(100)", "--db", str(db), "--max-mb", "1",
                           "--format", "csv"])
    assert code == 0 and "1 MiB result cap" in err and len(out) <= (1 << 20) + 100


def test_sql_limits_give_exit_code_4_and_one_line(db):
    code, out, err = _sql([HOSTILE[0], "--db", str(db)])
    assert code == 4 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: query stopped: it needed more memory")
    code, _, err = _sql(["SELECT count(*) FROM range(1000000000000) a", "--db", str(db), "--timeout", "1"])
    assert code == 4 and "longer than its 1 s time limit" in err


def test_a_db_that_is_not_duckdb_is_bad_input_in_one_line(tmp_path):
    bogus = tmp_path / "notes.duckdb"
    bogus.write_text("just text\n" * 100)
    code, out, err = _sql(["SELECT 1", "--db", str(bogus)])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: cannot open database {bogus}")
    code, _, err = _export(["--out", str(tmp_path / "x"), "--db", str(bogus)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot open database" in err
    code, _, err = _sql(["SELECT 1", "--db", str(tmp_path)])
    assert code == 2 and "is a folder" in err


def test_a_busy_database_is_exit_code_3_in_one_line(db, monkeypatch):
    from warehouse import connection

    monkeypatch.setattr(connection, "READ_WAIT_S", 0.3)
    code = ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc, out, err = _sql(["SELECT 1", "--db", str(db)])
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert rc == 3 and out == "" and len(err.strip().splitlines()) == 1 and "is busy" in err


def test_export_to_an_out_that_cannot_be_written_is_bad_input(db, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, out, err = _export(["--out", str(a_file / "sub"), "--db", str(db)])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: cannot write to --out {a_file / 'sub'}: Not a directory")


def test_export_on_a_full_disk_names_the_file_and_leaves_no_partial_files(db, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # The kernel's own "disk full": every temporary file the export writes is /dev/full.
    for table in warehouse.TABLES:
        os.symlink("/dev/full", out_dir / f".{table}.parquet.partial")
    code, out, err = _export(["--out", str(out_dir), "--db", str(db)])
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "No space left on device" in err and "cannot write" in err and str(out_dir) in err
    assert not list(out_dir.glob("*.parquet")) and not (out_dir / "manifest.json").exists()


def test_the_emotivoice_command_prints_one_line_and_debug_shows_the_traceback(db, capsys):
    from flows.cli import main

    assert main(["sql", "SELEC 1", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["--debug", "sql", "SELEC 1", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: Parser Error")


def test_hostile_queries_through_the_real_command_stay_small(db):
    """The trust issue's bar, measured on the whole process tree of `emotivoice sql`."""
    from bench.sql_bounds import run

    for sql in HOSTILE:
        r = run(sql, db)
        assert r["rc"] == 4, r
        assert r["wall_s"] < 60 and r["peak_mb"] < 3 * 1024, r
        assert r["stdout_bytes"] == 0 and len(r["stderr"]) == 1, r
