"""The EmotiVoice dashboard: ``streamlit run dashboard/app.py`` (or ``emotivoice dashboard``).

Multipage through ``st.navigation``: the page files in ``dashboard/pages/`` are thin (each calls one
``render()``); every query is a named one in ``warehouse/``, cached by ``dashboard.data``. The
configuration (database, corpus roots, models) comes from ``pipeline.config.load_config()``:
``EMOTIVOICE_DB`` and friends, or ``emotivoice.toml``.
"""

import logging
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

logging.getLogger("emotivoice").setLevel(logging.INFO)

st.set_page_config(page_title="EmotiVoice", page_icon="🎙️", layout="wide")

PAGES = [
    st.Page("pages/1_Overview.py", title="Overview", url_path="overview", icon=":material/insights:", default=True),
    st.Page("pages/2_File.py", title="File", url_path="file", icon=":material/graphic_eq:"),
    st.Page("pages/3_Explain.py", title="Explain", url_path="explain", icon=":material/psychology:"),
    st.Page("pages/4_SQL.py", title="SQL", url_path="sql", icon=":material/database:"),
    st.Page("pages/5_Runs.py", title="Runs", url_path="runs", icon=":material/play_circle:"),
    st.Page("pages/6_Live.py", title="Live", url_path="live", icon=":material/mic:"),
]

from dashboard import auth  # noqa: E402

# Login and roles (dashboard/auth.py): the login screen or a refusal stops here; viewers never get
# the analyst pages (SQL, Runs, Live), so no URL reaches them.
page = st.navigation(auth.allowed_pages(PAGES))
st.sidebar.caption("EmotiVoice — speech emotion analysis")
page.run()
