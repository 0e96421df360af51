"""Re-verification's storage: its jobs (progress and lease), and the stopped first-level holds
it asks about, read page by page in (institution, id) order through their partial index."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Row, func, insert, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import STOPPED_FIRST_LEVEL, HoldRow, ReverificationRow
from stopper.adapters.db.storage import Storage
from stopper.app.reverify_ports import (
    HoldCursor,
    JobState,
    Reverification,
    ReverifyProgress,
    StartedJob,
    StoppedHold,
)
from stopper.domain.holds import idempotency_key_for

# Written into the statements, never a parameter: PostgreSQL uses a partial index only for a
# condition it can see implies the index's (`stopper.adapters.db.naming` says why).
_STOPPED_FIRST_LEVEL = text(STOPPED_FIRST_LEVEL)
_RUNNING = JobState.RUNNING.value


def _in_scope(institution_code: str | None) -> list[ColumnElement[bool]]:
    return [] if institution_code is None else [HoldRow.institution_code == institution_code]


def _overlapping(institution_code: str | None) -> list[ColumnElement[bool]]:
    """Running jobs whose scope overlaps one of `institution_code` (None: every institution)."""
    running = ReverificationRow.state == _RUNNING
    if institution_code is None:
        return [running]
    return [
        running,
        or_(
            ReverificationRow.institution_code.is_(None),
            ReverificationRow.institution_code == institution_code,
        ),
    ]


def _job(r: Row[Any]) -> Reverification:
    return Reverification(
        id=r.id,
        institution_code=r.institution_code,
        state=JobState(r.state),
        holds=r.holds,
        requested_by=r.requested_by,
        started_at=r.started_at,
        updated_at=r.updated_at,
        finished_at=r.finished_at,
        progress=ReverifyProgress(
            None if r.cursor is None else (r.cursor_institution, r.cursor), dict(r.outcomes)
        ),
    )


class ReverificationStorage(Storage):
    async def start_reverification(
        self, job_id: UUID, institution_code: str | None, requested_by: str, at: datetime
    ) -> StartedJob:
        with store_errors():
            async with self._db.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Starts one at a time (SQLite's one connection is one at a time already):
                    # two asking at once must not both find no job running and both start.
                    await connection.execute(
                        text("LOCK TABLE reverifications IN SHARE ROW EXCLUSIVE MODE")
                    )
                running = (
                    await connection.execute(
                        select(ReverificationRow)
                        .where(*_overlapping(institution_code))
                        .order_by(ReverificationRow.started_at)
                        .limit(1)
                    )
                ).one_or_none()
                if running is not None:
                    return StartedJob(_job(running), started=False)
                holds = await connection.scalar(
                    select(func.count())
                    .select_from(HoldRow)
                    .where(_STOPPED_FIRST_LEVEL, *_in_scope(institution_code))
                )
                job = Reverification(
                    id=job_id,
                    institution_code=institution_code,
                    state=JobState.RUNNING,
                    holds=int(holds or 0),
                    requested_by=requested_by,
                    started_at=at,
                    updated_at=at,
                    finished_at=None,
                    progress=ReverifyProgress(),
                )
                await connection.execute(
                    insert(ReverificationRow).values(
                        id=job.id,
                        institution_code=job.institution_code,
                        state=job.state.value,
                        holds=job.holds,
                        requested_by=job.requested_by,
                        started_at=at,
                        updated_at=at,
                        outcomes={},
                    )
                )
        return StartedJob(job, started=True)

    async def reverification(self, job_id: UUID) -> Reverification | None:
        with store_errors():
            async with self._db.read() as connection:
                row = (
                    await connection.execute(
                        select(ReverificationRow).where(ReverificationRow.id == job_id)
                    )
                ).one_or_none()
        return None if row is None else _job(row)

    async def reverifications(self, limit: int) -> list[Reverification]:
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(ReverificationRow)
                    .order_by(ReverificationRow.started_at.desc(), ReverificationRow.id)
                    .limit(limit)
                )
                return [_job(r) for r in rows]

    async def claim_reverification(
        self, owner: str, now: datetime, lease_until: datetime
    ) -> Reverification | None:
        with store_errors():
            async with self._db.begin() as connection:
                free = or_(
                    ReverificationRow.lease_owner.is_(None),
                    ReverificationRow.lease_owner == owner,
                    ReverificationRow.lease_until <= now,
                )
                query = (
                    select(ReverificationRow.id)
                    .where(ReverificationRow.state == _RUNNING, free)
                    .order_by(ReverificationRow.started_at)
                    .limit(1)
                )
                if connection.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                job_id = await connection.scalar(query)
                if job_id is None:
                    return None
                await connection.execute(
                    update(ReverificationRow)
                    .where(ReverificationRow.id == job_id)
                    .values(lease_owner=owner, lease_until=lease_until)
                )
                return await _read_job(connection, job_id)

    async def save_reverification(
        self,
        job_id: UUID,
        owner: str,
        progress: ReverifyProgress,
        now: datetime,
        lease_until: datetime,
        *,
        finished: bool,
    ) -> bool:
        with store_errors():
            async with self._db.begin() as connection:
                done = await connection.execute(
                    update(ReverificationRow)
                    .where(
                        ReverificationRow.id == job_id,
                        ReverificationRow.lease_owner == owner,
                        ReverificationRow.state == _RUNNING,
                    )
                    .values(
                        cursor_institution=None if progress.cursor is None else progress.cursor[0],
                        cursor=None if progress.cursor is None else progress.cursor[1],
                        outcomes=dict(progress.outcomes),
                        updated_at=now,
                        state=JobState.FINISHED.value if finished else _RUNNING,
                        finished_at=now if finished else None,
                        lease_owner=None if finished else owner,
                        lease_until=None if finished else lease_until,
                    )
                )
                return bool(done.rowcount)

    async def stopped_first_level_holds(
        self, institution_code: str | None, after: HoldCursor | None, limit: int
    ) -> list[StoppedHold]:
        page = [] if after is None else [tuple_(HoldRow.institution_code, HoldRow.id) > after]
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(
                        HoldRow.id,
                        HoldRow.institution_code,
                        HoldRow.reapplications,
                        HoldRow.amount_first_request,
                        HoldRow.amount_stopped,
                        HoldRow.amount_stopped_by_supplements,
                    )
                    .where(_STOPPED_FIRST_LEVEL, *_in_scope(institution_code), *page)
                    .order_by(HoldRow.institution_code, HoldRow.id)
                    .limit(limit)
                )
                return [
                    StoppedHold(
                        r.id,
                        r.institution_code,
                        idempotency_key_for(r.id, r.reapplications),
                        r.amount_first_request,
                        r.amount_stopped - r.amount_stopped_by_supplements,
                    )
                    for r in rows
                ]


async def _read_job(connection: AsyncConnection, job_id: UUID) -> Reverification:
    row = (
        await connection.execute(select(ReverificationRow).where(ReverificationRow.id == job_id))
    ).one()
    return _job(row)
