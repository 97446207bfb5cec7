"""Start the dashboard's Streamlit server: ``python -m dashboard.serve run dashboard/app.py [options]``.

The same as ``python -m streamlit``, with one difference that the login needs (dashboard/auth.py):
Streamlit's fallback for an old-style ``pages/`` folder is off from the first request on. Without this,
until some session has run ``app.py`` as far as ``st.navigation``, a fresh server treats
``dashboard/pages/`` as such a folder: it lists every page in the sidebar (SQL, Runs and Live too) and runs
the page a URL names without ``app.py``. The page files refuse anyway (``auth.require``), but a signed-out
visitor would see the list. ``emotivoice dashboard`` starts the server this way.
"""

from __future__ import annotations

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web.cli import main

if __name__ == "__main__":
    # ``st.navigation`` in app.py sets this on its first call; set it before the first request instead.
    PagesManager.uses_pages_directory = False
    main(prog_name="streamlit")
