"""Releases' storage: which releasing holds are due for an attempt, and a case's holds (a
withdrawn report releases every one of them)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import select

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import CaseRow, HoldRow
from stopper.adapters.db.states import RELEASE_UNDER_WAY
from stopper.adapters.db.sweeps import SweepQueries, attempts_due


class ReleaseStorage(SweepQueries):
    async def releases_due(self, now: datetime, limit: int) -> list[UUID]:
        return await self._attempts_due(_RELEASES_DUE, now, limit)

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


_RELEASES_DUE = attempts_due(RELEASE_UNDER_WAY, HoldRow.release_next_attempt_at)
