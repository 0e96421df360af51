"""The sweepers' queries: which holds are due for what (an attempt, a freeze, a return, a
lapse warning), and how many are expiring or overdue (gauges)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Integer, Select, and_, bindparam, exists, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.orm import aliased

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import HoldRow, Timestamp
from stopper.adapters.db.naming import names_its_account
from stopper.adapters.db.states import (
    AWAITING_ANSWER,
    FREEZABLE,
    FREEZE_IN_FORCE,
    OWED_A_REQUEST,
    RETURN_UNDER_WAY,
    STOP_IN_FORCE,
    UNCONFIRMED,
    values,
)
from stopper.adapters.db.storage import Storage
from stopper.domain.holds import HoldState

# How far past one sweep's worth of due holds the sweeper looks for known mules to take first.
DUE_WINDOW = 4


class SweepQueries(Storage):
    async def due_holds(self, now: datetime, requested_before: datetime, limit: int) -> list[UUID]:
        with store_errors():
            async with self._db.read() as connection:
                found = await connection.scalars(
                    _DUE_HOLDS,
                    {
                        "now": now,
                        "requested_before": requested_before,
                        "window": limit * DUE_WINDOW,
                        "limit": limit,
                    },
                )
                return list(found.all())

    async def holds_near_deadline(
        self,
        now: datetime,
        stop_leads: Sequence[timedelta],
        freeze_leads: Sequence[timedelta],
        limit: int,
    ) -> list[UUID]:
        def due(state: str, expires: Any, leads: Sequence[timedelta]) -> Any:
            owed_warning = [
                and_(HoldRow.warnings_sent == i, expires <= now + lead)
                for i, lead in enumerate(sorted(leads, reverse=True))
            ]
            # The bound by the longest lead says nothing new, but lets the (state, expiry)
            # index find the few that are close rather than reading every stopped hold.
            return and_(
                HoldRow.state == state,
                expires <= now + max(leads, default=timedelta(0)),
                or_(expires <= now, *owed_warning),
            )

        return await self._ids(
            or_(
                due(STOP_IN_FORCE.value, HoldRow.stop_expires_at, stop_leads),
                due(FREEZE_IN_FORCE.value, HoldRow.freeze_expires_at, freeze_leads),
            ),
            # The most urgent first: a backlog delays the warnings that can wait.
            sql_case(
                (HoldRow.state == STOP_IN_FORCE.value, HoldRow.stop_expires_at),
                else_=HoldRow.freeze_expires_at,
            ),
            limit,
        )

    async def freezes_due(self, now: datetime, limit: int) -> list[UUID]:
        return await self._attempts_due(_FREEZES_DUE, now, limit)

    async def returns_due(self, now: datetime, limit: int) -> list[UUID]:
        return await self._attempts_due(_RETURNS_DUE, now, limit)

    async def _attempts_due(self, query: Select[Any], now: datetime, limit: int) -> list[UUID]:
        """Run a query of `attempts_due`."""
        with store_errors():
            async with self._db.read() as connection:
                found = await connection.scalars(query, {"now": now, "limit": limit})
                return list(found.all())

    async def count_expiring(self, now: datetime, within: timedelta) -> int:
        return await self._count(
            and_(HoldRow.state == STOP_IN_FORCE.value, HoldRow.stop_expires_at <= now + within)
        )

    async def count_unconfirmed(self, accepted_before: datetime) -> int:
        """Holds unconfirmed since before `accepted_before` (the alert's gauge)."""
        return await self._count(
            and_(HoldRow.state == UNCONFIRMED.value, HoldRow.accepted_at <= accepted_before)
        )

    async def _ids(self, where: Any, order_by: Any, limit: int) -> list[UUID]:
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(HoldRow.id).where(where).order_by(order_by).limit(limit)
                )
                return list(rows.scalars())

    async def _count(self, where: Any) -> int:
        with store_errors():
            async with self._db.read() as connection:
                count = await connection.scalar(
                    select(func.count()).select_from(HoldRow).where(where)
                )
                return int(count or 0)


def attempts_due(states: frozenset[HoldState], column: Any) -> Select[Any]:
    """Holds in `states` whose `column` (when their next attempt of something is due) has come,
    the longest due first: built once, `now` and `limit` bound when it runs (a sweeper runs
    it five times a second per worker)."""
    return (
        select(HoldRow.id)
        .where(HoldRow.state.in_(values(states)), column <= bindparam("now", type_=Timestamp))
        .order_by(column)
        .limit(bindparam("limit", type_=Integer))
    )


def _due_holds() -> Select[Any]:
    """The retry sweeper's query, built once (it runs several times a second per worker, and
    building it, an alias and a subquery, cost more than running it on an idle database)."""
    now = bindparam("now", type_=Timestamp)
    due = or_(
        and_(
            HoldRow.state.in_(values(AWAITING_ANSWER)),
            HoldRow.next_attempt_at <= now,
        ),
        and_(
            HoldRow.state.in_(values(OWED_A_REQUEST)),
            HoldRow.requested_at <= bindparam("requested_before", type_=Timestamp),
            or_(HoldRow.next_attempt_at.is_(None), HoldRow.next_attempt_at <= now),
        ),
    )
    # The longest due, `DUE_WINDOW` sweeps' worth (the due index's order), and of those the
    # known mules first: one probe of the holds-by-account index per hold of the window.
    # Probing every due hold would cost a backlog of 100,000 a second and more per sweep.
    window = (
        select(HoldRow.id, HoldRow.account_id, HoldRow.case_id, HoldRow.next_attempt_at)
        .where(due)
        .order_by(HoldRow.next_attempt_at)
        .limit(bindparam("window", type_=Integer))
        .subquery()
    )
    other = aliased(HoldRow)
    mule = exists().where(
        other.account_id == window.c.account_id,
        other.case_id != window.c.case_id,
        names_its_account(other),
    )
    return (
        select(window.c.id)
        .order_by(sql_case((mule, 0), else_=1), window.c.next_attempt_at)
        .limit(bindparam("limit", type_=Integer))
    )


_DUE_HOLDS = _due_holds()
_FREEZES_DUE = attempts_due(FREEZABLE, HoldRow.freeze_next_attempt_at)
_RETURNS_DUE = attempts_due(RETURN_UNDER_WAY, HoldRow.return_next_attempt_at)
