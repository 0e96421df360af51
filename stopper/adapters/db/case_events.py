"""Case events written into the outbox with the hold changes that cause them
(`stopper.app.case_events` says which), keyed by case id for the `stopper.case-events` topic."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stopper.adapters.db.dialects import Database, Row
from stopper.adapters.db.models import CaseRow
from stopper.adapters.db.rows import outbox_row
from stopper.app.case_events import CaseEvent, events_of_changes, tells
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.domain.holds import Hold


def event_rows(topic: str, events: Sequence[CaseEvent]) -> list[Row]:
    return [outbox_row(topic, str(e.case_id), e.payload(), e.occurred_at) for e in events]


async def case_events(
    db: Database,
    connection: AsyncConnection,
    changes: Sequence[tuple[HoldRecord, HoldUpdate]],
    trail_holds: Sequence[tuple[Hold, datetime]],
) -> list[CaseEvent]:
    """The events of changes written in this transaction (`events_of_changes`), their cases'
    report ids read only when some change tells something."""
    case_ids = {r.hold.case_id for r, c in changes if tells(r, c)} | {
        h.case_id for h, _ in trail_holds
    }
    if not case_ids:
        return []
    report_ids: dict[UUID, str] = {
        row.id: row.report_id
        for row in await connection.execute(
            select(CaseRow.id, CaseRow.report_id).where(db.id_among(CaseRow.id, list(case_ids)))
        )
    }
    return events_of_changes(changes, trail_holds, report_ids)
