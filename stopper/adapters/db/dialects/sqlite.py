"""SQLite, the embedded default: one connection, so one transaction at a time.

SQLite has no row locks: `SELECT ... FOR UPDATE` compiles to a plain `SELECT`, and a
read-decide-write transaction (`HoldStorage.update_holds`, the trail, the outbox relay) is safe
only because no other transaction runs beside it. That holds when the engine's pool has one
connection and lends no more (`create_engine` makes it so): `SqliteDatabase` refuses any other
engine rather than let two writers interleave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import QueuePool

from stopper.adapters.db.dialects.base import CaseRows, Database, RecordedCases, table_of
from stopper.adapters.db.models import (
    AccountRow,
    Base,
    CaseRow,
    HoldRow,
    HoldTransitionRow,
    OutboxRow,
    TransferRow,
    VictimRow,
)
from stopper.adapters.db.naming import cases_naming
from stopper.errors import ConfigurationError


class SqliteDatabase(Database):
    def __init__(self, engine: AsyncEngine) -> None:
        pool = engine.pool
        # `_max_overflow`: QueuePool keeps the bound it was given under this name only.
        if not (
            isinstance(pool, QueuePool)
            and pool.size() == 1
            and getattr(pool, "_max_overflow", None) == 0
        ):
            raise ConfigurationError(
                f"a SQLite store needs an engine of one connection (pool_size=1, "
                f"max_overflow=0), not {type(pool).__name__} {pool.status()}: SQLite has no row "
                "locks, so two transactions at once could each decide on what the other changes"
            )
        super().__init__(engine)

    async def take_relay_turn(self, connection: AsyncConnection) -> bool:
        return True  # one connection, one writer: the relay's transaction is alone already

    def _insert(self, model: type[Base]) -> sqlite.Insert:
        return sqlite.insert(model)

    def id_among(self, column: Any, ids: Sequence[UUID]) -> ColumnElement[bool]:
        among: ColumnElement[bool] = column.in_(list(ids))
        return among

    def among_ids(self, column: Any) -> ColumnElement[bool]:
        among: ColumnElement[bool] = column.in_(bindparam("ids", expanding=True))
        return among

    async def insert_rows(
        self, connection: AsyncConnection, model: type[Base], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if rows:
            await connection.execute(insert(table_of(model)), list(rows))

    async def update_by_id(
        self, connection: AsyncConnection, model: type[Base], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if rows:
            table = table_of(model)
            statement = update(table).where(table.c.id == bindparam("row_id"))
            await connection.execute(statement, list(rows))

    async def record_cases(self, rows: CaseRows) -> RecordedCases:
        if not rows.cases:
            return RecordedCases(created=set(), earlier_cases={})
        async with self.begin() as connection:
            # Before the batch's holds, as PostgreSQL's one statement sees the table.
            earlier = await connection.execute(
                select(AccountRow.id, cases_naming(AccountRow.id)).where(
                    AccountRow.id.in_([a["id"] for a in rows.accounts])
                )
            )
            earlier_cases = {account: int(cases) for account, cases in earlier if cases}
            # The case ids first: only the rows of the cases this inserted follow them.
            inserted = await connection.execute(
                self.insert_new(CaseRow).values(rows.cases).returning(CaseRow.id)
            )
            created = set(inserted.scalars())
            holds = [h for h in rows.holds if h["case_id"] in created]
            new_holds = {h["id"] for h in holds}
            if rows.accounts:
                await connection.execute(self.insert_new(AccountRow), rows.accounts)
            for model, values in (
                (VictimRow, [v for v in rows.victims if v["case_id"] in created]),
                (HoldRow, holds),
                (TransferRow, [t for t in rows.transfers if t["case_id"] in created]),
                (HoldTransitionRow, [t for t in rows.transitions if t["hold_id"] in new_holds]),
                (OutboxRow, [e for e in rows.events if UUID(e["key"]) in created]),
            ):
                await self.insert_rows(connection, model, values)
        return RecordedCases(created=created, earlier_cases=earlier_cases)
