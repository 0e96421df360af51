"""`Database`: the engine, and every statement whose form depends on the dialect.

The storages of the aggregates (`stopper.adapters.db.intake`, `holds`, ...) write their
statements once for both dialects and ask their `Database` for what differs: an insert that
skips rows already there, `IN` over many ids, many rows inserted or updated at once, a batch
of opened cases recorded, and reads outside a transaction. One subclass per dialect
(`PostgresDatabase`, `SqliteDatabase`) says how.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from stopper.adapters.db.models import (
    AccountRow,
    Base,
    CaseRow,
    HoldRow,
    HoldTransitionRow,
    TransferRow,
    VictimRow,
)

Row = dict[str, Any]


@dataclass(slots=True)
class CaseRows:
    """The rows of a batch of opened cases, per table, parents first."""

    cases: list[Row] = field(default_factory=list)
    accounts: list[Row] = field(default_factory=list)
    victims: list[Row] = field(default_factory=list)
    holds: list[Row] = field(default_factory=list)
    transfers: list[Row] = field(default_factory=list)
    transitions: list[Row] = field(default_factory=list)
    # Outbox rows of the cases' events, keyed by case id: written only for the new cases.
    events: list[Row] = field(default_factory=list)

    def by_table(self) -> list[tuple[type[Base], list[Row]]]:
        return [
            (CaseRow, self.cases),
            (AccountRow, self.accounts),
            (VictimRow, self.victims),
            (HoldRow, self.holds),
            (TransferRow, self.transfers),
            (HoldTransitionRow, self.transitions),
        ]


@dataclass(frozen=True, slots=True)
class RecordedCases:
    """What `Database.record_cases` did: the cases it created, and how many cases other than
    the batch's named each account of the batch before it (`earlier_cases`, by account id,
    counted up to `CASES_COUNTED`; absent: none), as the write saw them."""

    created: set[UUID]
    earlier_cases: dict[UUID, int]


def table_of(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


class Database(abc.ABC):
    """The engine and what its dialect says; the storages share one."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction, committed when the block ends (rolled back if it raises)."""
        return self.engine.begin()

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads that need no transaction of their own."""
        return self.engine.connect()

    @abc.abstractmethod
    async def take_relay_turn(self, connection: AsyncConnection) -> bool:
        """In the transaction of `connection`: whether this relay may publish now. One relay at
        a time across every process publishes, so records leave in the order they were
        written (a case's events in order); the others find it taken and wait their turn."""

    @abc.abstractmethod
    def _insert(self, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
        """The dialect's own `INSERT`, the one that knows `ON CONFLICT`."""

    def insert_new(self, model: type[Base]) -> Insert:
        """`INSERT` that leaves out rows whose key is there already (`ON CONFLICT DO NOTHING`)."""
        return self._insert(model).on_conflict_do_nothing()

    def upsert(self, model: type[Base], rows: Sequence[Row], key: Sequence[str]) -> Insert:
        """`INSERT` of `rows`, a row whose `key` is there already updated to the new values."""
        statement = self._insert(model).values(list(rows))
        changed = [c for c in rows[0] if c not in key]
        return statement.on_conflict_do_update(
            index_elements=list(key), set_={c: statement.excluded[c] for c in changed}
        )

    @abc.abstractmethod
    def id_among(self, column: Any, ids: Sequence[UUID]) -> ColumnElement[bool]:
        """`column IN ids`."""

    @abc.abstractmethod
    def among_ids(self, column: Any) -> ColumnElement[bool]:
        """`column IN :ids`, the ids (of the column's type) given when the statement is
        executed (`{"ids": [...]}`): for a statement built once and kept, as a hot path's
        should be (building one with aliases and a union costs more than executing it), and
        prepared once whatever the number of ids."""

    @abc.abstractmethod
    async def insert_rows(
        self, connection: AsyncConnection, model: type[Base], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Insert rows that all have the same keys."""

    @abc.abstractmethod
    async def update_by_id(
        self, connection: AsyncConnection, model: type[Base], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Update rows of `model` by id: each row its id (key `row_id`) and the same columns."""

    @abc.abstractmethod
    async def record_cases(self, rows: CaseRows) -> RecordedCases:
        """Write the rows of the cases that are new, and of no other; their ids, and how many
        cases already named each account of the batch (in the same statement or transaction).
        A case that is there already (another transaction, an earlier delivery) is left out
        whole, so a redelivered report never doubles anything."""
