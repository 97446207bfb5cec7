"""Overview: corpus figures, emotion mix, over time, by folder and by file, with filters.

Body in dashboard/views/overview.py.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # `streamlit run` puts only the script's folder on the path
    sys.path.insert(0, _ROOT)

from dashboard import auth  # noqa: E402

auth.require(auth.VIEWER)  # here too: Streamlit may run this file without app.py (dashboard/auth.py)

from dashboard.views import overview  # noqa: E402

overview.render()
