"""The dashboard's SQL page: the bounded sandbox, NULL as an empty cell, the schema browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse import Warehouse
from warehouse.synth import fake_file_result

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlpage") / "w.duckdb"
    store = Warehouse(path)
    run = store.start_run("{}")
    store.write_result(None, "sha-0", fake_file_result(0, "/corpus/calls/c0.wav", n_chunks=2, trained=True), run_id=run)
    store.finish_run(run, "completed")
    return path


def _page(monkeypatch, db, **env):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("EMOTIVOICE_DB", str(db))
    monkeypatch.delenv("EMOTIVOICE_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(f"EMOTIVOICE_{key.upper()}", str(value))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()  # the first run of a process sets up the app's navigation (dashboard.views.common)
    at.switch_page("pages/4_SQL.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _run(at, sql: str):
    at.text_area(key="sql_text").set_value(sql)
    at.button(key="sql_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_null_is_an_empty_cell_and_numbers_stay_numbers(monkeypatch, db):
    at = _run(_page(monkeypatch, db), "SELECT 1 AS n, NULL::VARCHAR AS v, NULL::DOUBLE AS d, 2.5 AS x "
                                      "UNION ALL SELECT 2, 'two', 0.5, NULL")
    shown = at.dataframe[0].value
    assert shown["n"].tolist() == [1, 2]  # no NULL: still numeric
    assert shown["v"].tolist() == ["", "two"] and shown["d"].tolist() == ["", "0.5"]
    assert shown["x"].tolist() == ["2.5", ""]


def test_a_query_that_needs_gigabytes_gets_a_reason_not_a_crash(monkeypatch, db):
    at = _run(_page(monkeypatch, db), "SELECT repeat('x', 2000000000)")
    errors = [str(e.value) for e in at.error]
    assert len(errors) == 1 and "needed more memory than its" in errors[0]
    assert not at.dataframe


def test_the_page_shows_at_most_the_capped_result_and_says_it_was_cut(monkeypatch, db):
    at = _run(_page(monkeypatch, db, sql_max_mb=1), "SELECT repeat('x', 100000) AS s FROM range(1000)")
    assert 0 < len(at.dataframe[0].value) <= 10
    assert any("1 MiB result cap" in str(w.value) for w in at.warning)
    at = _run(at, "SELECT * FROM range(50000)")
    assert len(at.dataframe[0].value) == 10_000
    assert any("cut at 10,000 rows" in str(w.value) for w in at.warning)


def test_the_schema_browser_lists_columns_with_types_units_and_meanings(monkeypatch, db):
    at = _page(monkeypatch, db)
    table = at.table[0].value
    assert at.selectbox(key="sql_schema_table").value == "chunks"
    rows = {r["column"]: r for r in table.to_dict("records")}
    assert rows["start_s"]["type"] == "DOUBLE" and rows["start_s"]["unit"] == "s"
    assert "seconds from the file start" in rows["start_s"]["meaning"]
    at.selectbox(key="sql_schema_table").select("files").run()
    rows = {r["column"]: r for r in at.table[0].value.to_dict("records")}
    assert rows["sample_rate"]["unit"] == "Hz" and rows["ingested_at"]["unit"] == "UTC"
