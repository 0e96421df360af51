"""Case events written into the outbox with the hold changes that cause them
(`stopper.app.case_events` says which), keyed by case id for the `stopper.case-events` topic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stopper.adapters.db.dialects import Database, Row
from stopper.adapters.db.models import CaseRow
from stopper.adapters.db.rows import outbox_row
from stopper.app.case_events import CaseEvent, events_of_told, told
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.domain.holds import Hold


def event_rows(topic: str, events: Sequence[CaseEvent]) -> list[Row]:
    return [outbox_row(topic, str(e.case_id), e.payload(), e.occurred_at) for e in events]


async def case_events(
    db: Database,
    connection: AsyncConnection,
    changes: Sequence[tuple[HoldRecord, HoldUpdate]],
    trail_holds: Sequence[tuple[Hold, datetime]],
    report_ids: Mapping[UUID, str] | None = None,
) -> list[CaseEvent]:
    """The events of changes written in this transaction (`events_of_changes`). Their cases'
    report ids come from `report_ids` (what the caller read with the holds) or, for cases it
    does not have, are read only when some change tells something."""
    telling = told(changes)
    case_ids = {r.hold.case_id for r, _, _ in telling} | {h.case_id for h, _ in trail_holds}
    if not case_ids:
        return []
    known = dict(report_ids or {})
    missing = [case_id for case_id in case_ids if case_id not in known]
    if missing:
        known.update(
            (row.id, row.report_id)
            for row in await connection.execute(
                select(CaseRow.id, CaseRow.report_id).where(db.id_among(CaseRow.id, missing))
            )
        )
    return events_of_told(telling, trail_holds, known)
