"""SQL: an editor preloaded with the documented example queries, results, CSV/Parquet download.

Queries run through ``warehouse.query``: read-only, sandboxed (no file or network access), one
statement, row and time limits. A failing query shows DuckDB's own message, never a traceback.
"""

from __future__ import annotations

import io

import streamlit as st

import warehouse
from dashboard import data
from dashboard.views import common

SQL_KEY = "sql_text"
RESULT_KEY = "sql_result"
ROW_LIMIT = 10_000


def _load_example() -> None:
    title = st.session_state.get("sql_example")
    for ex in warehouse.EXAMPLES:
        if ex.title == title:
            st.session_state[SQL_KEY] = ex.sql
            st.session_state.pop(RESULT_KEY, None)


def render() -> None:
    common.ensure_app_navigation()
    cfg = common.config()
    db = common.db_path(cfg)
    st.title("SQL")
    st.caption(f"Read-only SQL on `{db}` (DuckDB dialect; one statement; at most {ROW_LIMIT:,} rows, 30 s). "
               f"Tables and columns: docs/schema.md.")
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
                result = data.run_sql(db, sql, limit=ROW_LIMIT)
                st.session_state[RESULT_KEY] = ("ok", result, bool(result.truncated), float(result.elapsed_s), sql)
            except warehouse.WarehouseError as exc:
                st.session_state[RESULT_KEY] = ("error", str(exc))
            except Exception as exc:  # e.g. a result type pandas cannot hold: still a message, not a stack
                st.session_state[RESULT_KEY] = ("error", f"{type(exc).__name__}: {exc}")
    out = st.session_state.get(RESULT_KEY)
    if not out:
        return
    if out[0] == "error":
        st.error(out[1])
        return
    _, df, truncated, elapsed, ran = out
    st.caption(f"{len(df):,} row(s) in {elapsed * 1000:.0f} ms"
               + (f" — cut at {ROW_LIMIT:,} rows; add a LIMIT or aggregate" if truncated else ""))
    if truncated:
        st.warning(f"Only the first {ROW_LIMIT:,} rows are shown and downloadable.")
    st.dataframe(df, hide_index=True, width="stretch", key="sql_table")
    c1, c2 = st.columns(2)
    c1.download_button("Download CSV", df.to_csv(index=False).encode("utf-8"), file_name="emotivoice-query.csv",
                       mime="text/csv", key="sql_csv", on_click="ignore")
    try:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        c2.download_button("Download Parquet", buf.getvalue(), file_name="emotivoice-query.parquet",
                           mime="application/vnd.apache.parquet", key="sql_parquet", on_click="ignore")
    except Exception as exc:  # a column type Parquet cannot store
        c2.caption(f"Parquet not available for this result: {exc}")
