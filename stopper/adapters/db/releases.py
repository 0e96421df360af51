"""Releases' storage: which releasing holds are due for an attempt, and a case's holds (a
withdrawn report releases every one of them)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import and_, select

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import CaseRow, HoldRow
from stopper.adapters.db.states import RELEASE_UNDER_WAY, values
from stopper.adapters.db.sweeps import SweepQueries


class ReleaseStorage(SweepQueries):
    async def releases_due(self, now: datetime, limit: int) -> list[UUID]:
        return await self._ids(
            and_(
                HoldRow.state.in_(values(RELEASE_UNDER_WAY)),
                HoldRow.release_next_attempt_at <= now,
            ),
            HoldRow.release_next_attempt_at,
            limit,
        )

    async def case_hold_ids(self, case_id: UUID) -> list[UUID] | None:
        with store_errors():
            async with self._db.read() as connection:
                found = await connection.scalar(select(CaseRow.id).where(CaseRow.id == case_id))
                if found is None:
                    return None
                rows = await connection.execute(
                    select(HoldRow.id).where(HoldRow.case_id == case_id).order_by(HoldRow.id)
                )
                return list(rows.scalars())
