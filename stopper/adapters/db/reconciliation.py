"""Reconciliation's storage: the holds whose outcome Stopper does not know, and the
divergences found when their institutions were asked."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from sqlalchemy import and_, insert, or_, select

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import DivergenceRow, HoldRow, HoldSupplementRow
from stopper.adapters.db.states import GIVEN_UP, UNCONFIRMED
from stopper.adapters.db.storage import Storage
from stopper.app.ports import Divergence, ReconcileItem
from stopper.domain.holds import HoldState, idempotency_key_for
from stopper.domain.supplements import supplement_key_for


class ReconcileStorage(Storage):
    async def holds_to_reconcile(
        self, institution_code: str, accepted_before: datetime, limit: int
    ) -> list[ReconcileItem]:
        """The institution's holds whose outcome Stopper does not know: unconfirmed since
        before `accepted_before`, or given up on after a request was sent; oldest change
        first; then their supplements in the same plight (by their own keys and states)."""
        with store_errors():
            async with self._db.read() as connection:
                supplements = await connection.execute(
                    select(
                        HoldSupplementRow.hold_id,
                        HoldSupplementRow.number,
                        HoldSupplementRow.state,
                    )
                    .join(HoldRow, HoldRow.id == HoldSupplementRow.hold_id)
                    .where(
                        HoldRow.institution_code == institution_code,
                        or_(
                            and_(
                                HoldSupplementRow.state == UNCONFIRMED.value,
                                HoldSupplementRow.accepted_at <= accepted_before,
                            ),
                            and_(
                                HoldSupplementRow.state == GIVEN_UP.value,
                                HoldSupplementRow.attempts > 0,
                            ),
                        ),
                    )
                    .order_by(HoldSupplementRow.updated_at)
                    .limit(limit)
                )
                unknown_supplements = [
                    ReconcileItem(
                        r.hold_id, supplement_key_for(r.hold_id, r.number), HoldState(r.state)
                    )
                    for r in supplements
                ]
                rows = await connection.execute(
                    select(HoldRow.id, HoldRow.state, HoldRow.reapplications)
                    .where(
                        HoldRow.institution_code == institution_code,
                        or_(
                            and_(
                                HoldRow.state == UNCONFIRMED.value,
                                HoldRow.accepted_at <= accepted_before,
                            ),
                            and_(HoldRow.state == GIVEN_UP.value, HoldRow.attempts > 0),
                        ),
                    )
                    .order_by(HoldRow.updated_at)
                    .limit(limit)
                )
                unknown_holds = [
                    ReconcileItem(
                        r.id, idempotency_key_for(r.id, r.reapplications), HoldState(r.state)
                    )
                    for r in rows
                ]
        return (unknown_holds + unknown_supplements)[:limit]

    async def record_divergence(self, divergence: Divergence) -> None:
        with store_errors():
            async with self._db.begin() as connection:
                await connection.execute(insert(DivergenceRow).values(asdict(divergence)))

    async def recent_divergences(self, limit: int) -> list[Divergence]:
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(DivergenceRow).order_by(DivergenceRow.found_at.desc()).limit(limit)
                )
                return [
                    Divergence(
                        r.hold_id,
                        r.institution_code,
                        r.stopper_state,
                        r.institution_status,
                        r.found_at,
                        r.found_by,
                    )
                    for r in rows
                ]
