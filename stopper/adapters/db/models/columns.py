"""What every table shares: the naming convention, the id and timestamp types, the base class
and the predicates partial indexes and queries both use."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    MetaData,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

from stopper.domain.mules import LIFTED

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcTimestamp(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, also on SQLite (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Timestamp = UtcTimestamp()
# A hold that names its account (`stopper.domain.mules`), as SQL: the predicate of the
# holds-by-account index, and of every query that reads it (`stopper.adapters.db.naming`).
NAMING_PREDICATE = "state NOT IN ({})".format(", ".join(f"'{s}'" for s in sorted(LIFTED)))
# A stopped first-level hold: what a re-verification asks about (`stopper.app.reverify`), as
# SQL: the predicate of its partial index and of the reads that page through it.
STOPPED_FIRST_LEVEL = "state = 'stopped' AND layer = 1"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
