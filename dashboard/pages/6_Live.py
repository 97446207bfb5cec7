"""Live page: microphone analysis over WebRTC (body in dashboard/live_page.py)."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # `streamlit run dashboard/pages/6_Live.py` puts only this folder on the path
    sys.path.insert(0, _ROOT)

from dashboard import auth  # noqa: E402

auth.require(auth.ANALYST)  # here too: Streamlit may run this file without app.py (dashboard/auth.py)

from dashboard.live_page import render  # noqa: E402
from pipeline import load_config  # noqa: E402

render(load_config())
