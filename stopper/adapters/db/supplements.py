"""Supplements' storage (`SupplementStore`): a supplement decided on with its hold's row locked,
written with the hold's change in one transaction; what the sweeper finds due."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import and_, or_, select, update

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.holds import HoldStorage, remember_nonces
from stopper.adapters.db.models import HoldRow, HoldSupplementRow
from stopper.adapters.db.rows import (
    hold_record,
    holds_with_accounts,
    supplement_record,
    supplement_row,
)
from stopper.adapters.db.states import AWAITING_ANSWER
from stopper.app.ports import CallbackNonce
from stopper.app.supplement_ports import SupplementDecision, SupplementRecord, SupplementWritten
from stopper.domain.holds import HoldState

# A supplement not sent yet: its stop request waits on the bus (or was lost with a worker).
_NOT_SENT = HoldState.REQUESTED.value


class SupplementStorage(HoldStorage):
    async def update_supplement(
        self,
        hold_id: UUID,
        number: int,
        decide: SupplementDecision,
        nonce: CallbackNonce | None = None,
    ) -> tuple[bool, SupplementWritten | None]:
        with store_errors():
            async with self._db.begin() as connection:
                if nonce is not None and await remember_nonces(
                    self._db, connection, {hold_id: nonce}
                ):
                    return False, None
                # The hold's row first, as every writer of the hold locks it: the supplement's
                # row is only ever written under it.
                row = (
                    await connection.execute(
                        holds_with_accounts()
                        .where(HoldRow.id == hold_id)
                        .with_for_update(of=HoldRow)
                    )
                ).one_or_none()
                found = (
                    await connection.execute(
                        select(HoldSupplementRow).where(
                            HoldSupplementRow.hold_id == hold_id,
                            HoldSupplementRow.number == number,
                        )
                    )
                ).one_or_none()
                if row is None or found is None:
                    return True, None
                record, supplement = hold_record(row), supplement_record(found)
                change = decide(record, supplement)
                if change is None:
                    return True, None
                await self._write_locked(connection, [(record, row.version, change.hold)])
                await connection.execute(
                    update(HoldSupplementRow)
                    .where(
                        HoldSupplementRow.hold_id == hold_id,
                        HoldSupplementRow.number == number,
                    )
                    .values(supplement_row(change.supplement, change.hold.at))
                )
        return True, (record, supplement, change)

    async def supplements_due(
        self, now: datetime, requested_before: datetime, limit: int
    ) -> list[tuple[UUID, int]]:
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(HoldSupplementRow.hold_id, HoldSupplementRow.number)
                    .where(
                        or_(
                            and_(
                                HoldSupplementRow.state.in_(
                                    sorted(s.value for s in AWAITING_ANSWER)
                                ),
                                HoldSupplementRow.next_attempt_at <= now,
                            ),
                            and_(
                                HoldSupplementRow.state == _NOT_SENT,
                                HoldSupplementRow.requested_at <= requested_before,
                            ),
                        )
                    )
                    .order_by(HoldSupplementRow.next_attempt_at)
                    .limit(limit)
                )
                return [(r.hold_id, r.number) for r in rows]

    async def supplements_of(self, hold_id: UUID) -> list[SupplementRecord]:
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(HoldSupplementRow)
                    .where(HoldSupplementRow.hold_id == hold_id)
                    .order_by(HoldSupplementRow.number)
                )
                return [supplement_record(r) for r in rows]
