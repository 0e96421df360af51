"""What the console's case page and summary band read besides the read models of
`queries.py`: a case's timeline (transitions and people's notes, merged by time) and the last
hour's activity, all from the store (never one process's metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, literal, select, union_all

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import CaseRow, HoldNoteRow, HoldRow, HoldTransitionRow
from stopper.adapters.db.queries import handled
from stopper.adapters.db.storage import Storage
from stopper.app.views import ActivityView, AuditEntryView


class ActivityReadModels(Storage):
    async def case_audit(self, case_id: UUID, limit: int) -> list[AuditEntryView]:
        transitions = select(
            HoldTransitionRow.at,
            HoldTransitionRow.hold_id,
            HoldTransitionRow.from_state,
            HoldTransitionRow.to_state,
            HoldTransitionRow.event,
            HoldTransitionRow.cause,
            HoldTransitionRow.actor,
            literal(False).label("is_note"),
        ).join(HoldRow, HoldRow.id == HoldTransitionRow.hold_id)
        notes = select(
            HoldNoteRow.at,
            HoldNoteRow.hold_id,
            HoldNoteRow.hold_state,
            HoldNoteRow.hold_state,
            HoldNoteRow.kind,
            HoldNoteRow.note,
            HoldNoteRow.actor,
            literal(True).label("is_note"),
        ).join(HoldRow, HoldRow.id == HoldNoteRow.hold_id)
        both = union_all(
            transitions.where(HoldRow.case_id == case_id),
            notes.where(HoldRow.case_id == case_id),
        ).subquery()
        with store_errors():
            async with self._db.read() as connection:
                where = {
                    r.id: (r.layer, r.institution_code)
                    for r in await connection.execute(
                        select(HoldRow.id, HoldRow.layer, HoldRow.institution_code).where(
                            HoldRow.case_id == case_id
                        )
                    )
                }
                rows = (
                    await connection.execute(
                        select(both).order_by(both.c.at, both.c.is_note).limit(limit)
                    )
                ).all()
        return [
            AuditEntryView(
                at=r[0],
                hold_id=r[1],
                layer=where[r[1]][0],
                institution_code=where[r[1]][1],
                from_state=r[2],
                to_state=r[3],
                event=r[4],
                cause=r[5],
                actor=r[6],
                is_note=bool(r[7]),
            )
            for r in rows
        ]

    async def activity(
        self, *, hour_since: datetime, day_since: datetime, needs_a_person: Sequence[str]
    ) -> ActivityView:
        with store_errors():
            async with self._db.read() as connection:
                reports = await connection.scalar(
                    select(func.count()).select_from(CaseRow).where(CaseRow.opened_at >= hour_since)
                )
                holds = await connection.scalar(
                    select(func.count())
                    .select_from(HoldRow)
                    .where(HoldRow.requested_at >= hour_since)
                )
                stopped = await connection.execute(
                    select(HoldRow.currency, func.sum(HoldRow.amount_stopped))
                    .where(HoldRow.confirmed_at >= day_since)
                    .group_by(HoldRow.currency)
                )
                waiting = await connection.scalar(
                    select(func.count())
                    .select_from(HoldRow)
                    .where(HoldRow.state.in_(list(needs_a_person)), ~handled())
                )
                confirmed = await connection.execute(
                    select(HoldRow.confirmed_at, HoldRow.report_accepted_at)
                    .where(
                        HoldRow.confirmed_at >= hour_since,
                        HoldRow.report_accepted_at.is_not(None),
                    )
                    .order_by(HoldRow.confirmed_at)
                )
                latencies = tuple(
                    (at, (at - accepted).total_seconds()) for at, accepted in confirmed
                )
        return ActivityView(
            reports=int(reports or 0),
            holds=int(holds or 0),
            stopped_today={c: int(a or 0) for c, a in stopped if a},
            needing_a_person=int(waiting or 0),
            latencies=latencies,
        )
