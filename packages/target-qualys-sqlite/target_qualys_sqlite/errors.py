"""The error type the target reports, its interruption, and the translation of SQLite failures."""

from __future__ import annotations

import sqlite3
import typing as t

import sqlalchemy.exc

if t.TYPE_CHECKING:
    from pathlib import Path


class TargetSQLiteError(Exception):
    """A failure the operator can act on; the CLI prints its message as one line, no traceback."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT: unwinds the run from wherever it was, rolling back the open batch.

    A BaseException, so that no ``except Exception`` on the way can swallow it.
    """

    def __init__(self, signum: int, published: Path | None) -> None:
        """``published``: the snapshot already published when the signal came, if any."""
        super().__init__(signum)
        self.signum = signum
        self.published = published


def explain_sqlite_error(exc: BaseException, database: str, busy_timeout: float) -> str | None:
    """Return an operator-facing sentence for a known SQLite failure, or None if unknown.

    SQLAlchemy wraps driver errors, so the sqlite3 error is looked up on ``.orig`` too.
    """
    orig = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    text = str(orig)
    if isinstance(orig, sqlite3.OperationalError):
        if "locked" in text or "busy" in text:
            return (
                f"database {database} is locked by another process "
                f"(waited busy_timeout_seconds={busy_timeout:g}s); nothing was written, "
                "retry when the other writer has finished"
            )
        if "full" in text:
            return (
                f"database {database} is full (disk full or max_database_size_mb reached); "
                "the batch was rolled back, earlier batches are intact"
            )
    if isinstance(orig, OverflowError):
        return f"an integer does not fit SQLite's signed 64-bit INTEGER ({text})"
    if isinstance(orig, sqlite3.IntegrityError):
        return f"constraint violated in {database}: {text}; the batch was rolled back"
    if isinstance(orig, sqlite3.Error):
        return f"SQLite error on {database}: {text}"
    return None
