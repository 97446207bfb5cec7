"""Errors raised by the warehouse; each message names the database or query and the reason.

Every class carries the exit code the command line gives for it (``exit_code``), so scripts can tell
the cases apart: 1 a failure of the environment (disk full, I/O), 2 bad input (bad SQL, a refused
statement, a file that is not an EmotiVoice database, an output folder that cannot be written),
3 the database stayed busy, 4 a query stopped at its time or memory limit.
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUSY = 3
EXIT_LIMIT = 4


class WarehouseError(Exception):
    """Base class: anything the warehouse cannot do, with a plain reason."""

    exit_code = EXIT_FAILED


class WarehouseBusyError(WarehouseError):
    """The database stayed locked by another program for longer than the wait budget."""

    exit_code = EXIT_BUSY


class NotADatabaseError(WarehouseError):
    """The path cannot be opened as a DuckDB database (not DuckDB, unreadable, a folder)."""

    exit_code = EXIT_BAD_INPUT


class SchemaVersionError(WarehouseError):
    """The file is not an EmotiVoice database, or was written by a newer EmotiVoice."""

    exit_code = EXIT_BAD_INPUT


class QueryError(WarehouseError):
    """Analyst SQL that failed: the message is DuckDB's own message (or the sandbox's reason), no stack."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, sql: str | None = None):
        self.sql = sql
        super().__init__(message)


class QueryLimitError(QueryError):
    """A query stopped by a limit of the sandbox: its time limit, its memory cap."""

    exit_code = EXIT_LIMIT


class ExportError(WarehouseError):
    """An export that could not write its files (the message names the file and the reason)."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILED):
        self.exit_code = exit_code
        super().__init__(message)


def one_line(message: object) -> str:
    """``message`` on one line: DuckDB's multi-line messages keep their first line and the
    ``LINE n: ...`` context (their hints are dropped); other line breaks (e.g. in a file name)
    become spaces."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    if not lines:
        return ""
    hints = ("LINE ", "^", "Possible solutions", "* ", "See also")
    if any(ln.startswith(hints) for ln in lines[1:]):
        context = next((ln for ln in lines[1:] if ln.startswith("LINE ")), None)
        return lines[0] + (f" ({context})" if context else "")
    return " ".join(lines)
