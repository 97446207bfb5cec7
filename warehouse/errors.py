"""Errors raised by the warehouse; each message names the database or query and the reason."""

from __future__ import annotations


class WarehouseError(Exception):
    """Base class: anything the warehouse cannot do, with a plain reason."""


class WarehouseBusyError(WarehouseError):
    """The database stayed locked by another program for longer than the wait budget."""


class SchemaVersionError(WarehouseError):
    """The file is not an EmotiVoice database, or was written by a newer EmotiVoice."""


class QueryError(WarehouseError):
    """Analyst SQL that failed: the message is DuckDB's own message (or the sandbox's reason), no stack."""

    def __init__(self, message: str, sql: str | None = None):
        self.sql = sql
        super().__init__(message)
