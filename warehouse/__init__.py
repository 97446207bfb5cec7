"""The DuckDB results store: the only code in EmotiVoice that opens DuckDB.

Writes go through ``Warehouse`` (one file's results per transaction, idempotent by content and
settings); analysts read through ``query`` (read-only, sandboxed, row and time limits) and
``export``; the dashboard reads through ``read_df`` and ``warehouse.queries``. Tables and example
queries: docs/schema.md. Locking between the flow, the dashboard and live sessions:
``warehouse.connection``.
"""

from warehouse.cli import add_export_arguments, add_sql_arguments, run_export, run_sql
from warehouse.connection import STORAGE_COMPATIBILITY, ensure_database, resolve_db
from warehouse.errors import QueryError, SchemaVersionError, WarehouseBusyError, WarehouseError
from warehouse.examples import EXAMPLES, Example
from warehouse.schema import SCHEMA_VERSION, TABLES
from warehouse.sql import ExportResult, QueryResult, export, query, read_df
from warehouse.store import Warehouse, normalize_path, settings_key

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
    "add_export_arguments",
    "add_sql_arguments",
    "ensure_database",
    "export",
    "normalize_path",
    "query",
    "read_df",
    "resolve_db",
    "run_export",
    "run_sql",
    "settings_key",
]
