"""SQL: read-only queries with the documented examples, CSV/Parquet download (body in dashboard/views/sql.py)."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # `streamlit run` puts only the script's folder on the path
    sys.path.insert(0, _ROOT)

from dashboard.views import sql  # noqa: E402

sql.render()
