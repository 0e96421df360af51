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
from stopper.app.case_events import (
    EVENT_OF_STATE,
    CaseEvent,
    stop_expiring,
    trail_followed,
    transition_events,
)
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.domain.holds import Hold


def event_rows(topic: str, events: Sequence[CaseEvent]) -> list[Row]:
    return [outbox_row(topic, str(e.case_id), e.payload(), e.occurred_at) for e in events]


def _tells(record: HoldRecord, change: HoldUpdate) -> bool:
    """Whether `change` owes the agency an event (checked before the report id is read)."""
    return change.applied(record).warnings_sent > record.warnings_sent or any(
        t.to_state in EVENT_OF_STATE and t.from_state not in (None, t.to_state)
        for t in change.transitions
    )


async def case_events(
    db: Database,
    connection: AsyncConnection,
    changes: Sequence[tuple[HoldRecord, HoldUpdate]],
    trail_holds: Sequence[tuple[Hold, datetime]],
) -> list[CaseEvent]:
    """The events of changes written in this transaction, and of the holds the trail added
    with them, in the order they happened (one case's events in order)."""
    telling = [(record, change) for record, change in changes if _tells(record, change)]
    case_ids = {r.hold.case_id for r, _ in telling} | {h.case_id for h, _ in trail_holds}
    if not case_ids:
        return []
    report_ids: dict[UUID, str] = {
        row.id: row.report_id
        for row in await connection.execute(
            select(CaseRow.id, CaseRow.report_id).where(db.id_among(CaseRow.id, list(case_ids)))
        )
    }
    events: list[CaseEvent] = []
    for record, change in telling:
        applied = change.applied(record)
        report_id = report_ids[record.hold.case_id]
        if applied.warnings_sent > record.warnings_sent:
            expires_at = applied.freeze_expires_at or applied.stop_expires_at
            events.append(stop_expiring(applied.hold, expires_at, change.at, report_id))
        events += transition_events(applied.hold, change.transitions, report_id)
    events += [trail_followed(h, at, report_ids[h.case_id]) for h, at in trail_holds]
    return events
