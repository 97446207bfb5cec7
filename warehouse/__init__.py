"""The DuckDB results store: the only code in EmotiVoice that opens DuckDB.

Writes go through ``Warehouse`` (one file's results per transaction, idempotent by content and
settings); analysts read through ``query`` (read-only, sandboxed, row and time limits) and
``export`` (their command-line side is ``flows.sql_cli``); the dashboard reads through ``read_df`` and
``warehouse.queries``. Tables and example queries: docs/schema.md. Locking between the flow, the dashboard and live sessions:
``warehouse.connection``.
"""

from warehouse.connection import STORAGE_COMPATIBILITY, ensure_database, resolve_db
from warehouse.errors import QueryError, SchemaVersionError, WarehouseBusyError, WarehouseError
from warehouse.examples import EXAMPLES, Example
from warehouse.schema import SCHEMA_VERSION, TABLES
from warehouse.sql import ExportResult, QueryResult, export, query, read_df
from warehouse.store import Warehouse, normalize_path

__all__ = [
    "EXAMPLES",
    "Example",
    "ExportResult",
    "QueryError",
    "QueryResult",
    "SCHEMA_VERSION",
    "STORAGE_COMPATIBILITY",
    "SchemaVersionError",
    "TABLES",
    "Warehouse",
    "WarehouseBusyError",
    "WarehouseError",
    "ensure_database",
    "export",
    "normalize_path",
    "query",
    "read_df",
    "resolve_db",
]
