"""The database's errors as Stopper's own (`stopper.errors`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError

from stopper.errors import SchemaNotReady, StoreUnavailable

# Errors that mean "the database is not there right now", as opposed to a bug in a statement.
UNAVAILABLE = (OperationalError, SAInterfaceError, OSError, ConnectionError)

# PostgreSQL's SQLSTATEs for a table or column it does not have, and for a statement cancelled
# (by `statement_timeout`: the database too slow to answer in time, which is not a bug).
_UNDEFINED = ("42P01", "42703")
_CANCELLED = "57014"


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """The database not being there, or not answering within the statement timeout, is
    `StoreUnavailable` (retryable); a table or column it does not have is `SchemaNotReady` (a
    migration has not run yet); anything else is a bug."""
    try:
        yield
    except DBAPIError as e:
        # The driver's own error: SQLite says "no such table: ..." or "no such column: ...".
        said = str(getattr(e.orig, "__cause__", None) or e.orig).partition("\n")[0]
        sqlstate = getattr(e.orig, "sqlstate", None)
        if sqlstate in _UNDEFINED or said.startswith(("no such table", "no such column")):
            raise SchemaNotReady(
                f"the database schema is behind this Stopper ({said}): run `stopper migrate`"
            ) from e
        if sqlstate == _CANCELLED:
            raise StoreUnavailable("database statement timed out") from e
        if isinstance(e, UNAVAILABLE):
            raise StoreUnavailable(f"database unreachable: {type(e).__name__}") from e
        raise
    except UNAVAILABLE as e:
        raise StoreUnavailable(f"database unreachable: {type(e).__name__}") from e
