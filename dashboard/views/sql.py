"""SQL: an editor preloaded with the documented example queries, results, CSV/Parquet download, and a
schema browser (tables, columns, types, units and meanings from docs/schema.md).

Queries run through ``warehouse.query``: read-only, sandboxed (no file or network access), one
statement, in a child process with a memory cap, a time limit over execution and fetch, and a row
and byte cap (``Config.sql_*``). The page shows at most that capped result, says when it was cut,
and shows NULL as an empty cell. A failing query shows its one-line reason, never a traceback.
"""

from __future__ import annotations

import io

import streamlit as st

import warehouse
from dashboard import data
from dashboard.views import common
from warehouse.errors import one_line
from warehouse.render import display_frame

SQL_KEY = "sql_text"
RESULT_KEY = "sql_result"
ROW_LIMIT = 10_000


def _load_example() -> None:
    title = st.session_state.get("sql_example")
    for ex in warehouse.EXAMPLES:
        if ex.title == title:
            st.session_state[SQL_KEY] = ex.sql
            st.session_state.pop(RESULT_KEY, None)


def _schema_browser(db: str) -> None:
    """Tables and their columns as a static table (text cells; the result grid stays the page's only
    dataframe)."""
    from warehouse.catalog import schema_browser

    with st.expander("Schema: tables and columns (types, units, meanings from docs/schema.md)"):
        try:
            cat = schema_browser(db)
        except warehouse.WarehouseError as exc:
            st.error(f"The schema could not be read: {common.md_escape(exc)}")
            return
        tables = list(dict.fromkeys(cat["table"]))
        if not tables:
            st.text("No tables yet.")
            return
        table = st.selectbox("Table", tables, index=tables.index("chunks") if "chunks" in tables else 0,
                             key="sql_schema_table")
        st.table(cat[cat["table"] == table].drop(columns=["table"]).reset_index(drop=True))


def _cut_note(result) -> str:
    if result.truncated_by == "rows":
        return f" — cut at {result.limit:,} rows; add a LIMIT or aggregate"
    if result.truncated_by == "bytes":
        return f" — cut at the {result.max_bytes / (1 << 20):g} MiB result cap; add a LIMIT or select fewer columns"
    return ""


def render() -> None:
    common.ensure_app_navigation()
    cfg = common.config()
    db = common.db_path(cfg)
    st.title("SQL")
    rows = cfg.sql_max_rows or ROW_LIMIT
    st.caption(f"Read-only SQL on {common.md_escape(db)} (DuckDB dialect; one statement). Each query runs in its "
               f"own process: at most {rows:,} rows and {cfg.sql_max_mb} MiB of result, {cfg.sql_timeout_s:g} s, "
               f"{cfg.sql_memory_mb} MB of memory.")
    titles = [ex.title for ex in warehouse.EXAMPLES]
    if SQL_KEY not in st.session_state:
        st.session_state[SQL_KEY] = warehouse.EXAMPLES[0].sql
    st.selectbox("Example queries", titles, index=0, key="sql_example", on_change=_load_example)
    desc = next((ex.description for ex in warehouse.EXAMPLES if ex.title == st.session_state.get("sql_example")), "")
    st.caption(desc)
    sql = st.text_area("Query", key=SQL_KEY, height=220, help="Ctrl+Enter applies the text; then press Run.")
    if st.button("Run", type="primary", key="sql_run"):
        if not data.status(db).exists:
            st.session_state[RESULT_KEY] = ("error", f"no database at {db} yet: ingest recordings first")
        else:
            try:
                result = data.run_sql(db, sql, limit=rows)
                st.session_state[RESULT_KEY] = ("ok", result, sql)
            except warehouse.WarehouseError as exc:
                st.session_state[RESULT_KEY] = ("error", str(exc))
            except Exception as exc:  # e.g. a result type pandas cannot hold: still a message, not a stack
                st.session_state[RESULT_KEY] = ("error", f"{type(exc).__name__}: {exc}")
    out = st.session_state.get(RESULT_KEY)
    if out and out[0] == "error":
        st.error(common.md_escape(one_line(out[1])))
    elif out:
        _show_result(out[1])
    _schema_browser(db)


def _show_result(df) -> None:
    note = _cut_note(df)
    st.caption(f"{len(df):,} row(s) in {float(df.elapsed_s) * 1000:.0f} ms" + note)
    if df.truncated:
        st.warning("Only this part of the result is shown and downloadable" + note + ".")
    st.dataframe(display_frame(df), hide_index=True, width="stretch", key="sql_table")
    c1, c2 = st.columns(2)
    c1.download_button("Download CSV", df.to_csv(index=False).encode("utf-8"), file_name="emotivoice-query.csv",
                       mime="text/csv", key="sql_csv", on_click="ignore")
    try:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        c2.download_button("Download Parquet", buf.getvalue(), file_name="emotivoice-query.parquet",
                           mime="application/vnd.apache.parquet", key="sql_parquet", on_click="ignore")
    except Exception as exc:  # a column type Parquet cannot store
        c2.caption(f"Parquet not available for this result: {common.md_escape(exc)}")
