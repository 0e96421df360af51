"""Orders waiting for a second operator (`stopper.app.approvals`): recorded, listed, and decided
once, by a conditional write."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import insert, select, update

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import ApprovalOrderRow
from stopper.adapters.db.storage import Storage
from stopper.app.approvals import ApprovalOrder, ApprovalStatus, OrderKind, Signature


class ApprovalStorage(Storage):
    async def add_approval_order(self, order: ApprovalOrder) -> None:
        asked = order.requester
        with store_errors():
            async with self._db.begin() as connection:
                await connection.execute(
                    insert(ApprovalOrderRow).values(
                        id=order.id,
                        kind=order.kind.value,
                        status=order.status.value,
                        case_id=order.case_id,
                        hold_id=order.hold_id,
                        hold_ids=None
                        if order.hold_ids is None
                        else [str(h) for h in order.hold_ids],
                        legal_document_ref=order.document_ref,
                        requested_by=asked.name,
                        requester_person=asked.person,
                        requester_key_id=asked.key_id,
                        requester_actor=asked.actor,
                        requested_at=order.requested_at,
                    )
                )

    async def get_approval_order(self, order_id: UUID) -> ApprovalOrder | None:
        with store_errors():
            async with self._db.read() as connection:
                row = (
                    await connection.execute(
                        select(ApprovalOrderRow).where(ApprovalOrderRow.id == order_id)
                    )
                ).one_or_none()
        return None if row is None else _order(row)

    async def list_approval_orders(
        self, kind: OrderKind, status: ApprovalStatus | None, limit: int
    ) -> list[ApprovalOrder]:
        query = select(ApprovalOrderRow).where(ApprovalOrderRow.kind == kind.value)
        if status is not None:
            query = query.where(ApprovalOrderRow.status == status.value)
        query = query.order_by(ApprovalOrderRow.requested_at, ApprovalOrderRow.id).limit(limit)
        with store_errors():
            async with self._db.read() as connection:
                return [_order(row) for row in await connection.execute(query)]

    async def decide_approval_order(self, decided: ApprovalOrder) -> bool:
        decider = decided.decider
        assert decider is not None
        with store_errors():
            async with self._db.begin() as connection:
                done = await connection.execute(
                    update(ApprovalOrderRow)
                    .where(
                        ApprovalOrderRow.id == decided.id,
                        ApprovalOrderRow.status == ApprovalStatus.PENDING.value,
                    )
                    .values(
                        status=decided.status.value,
                        decided_by=decider.name,
                        decider_person=decider.person,
                        decider_key_id=decider.key_id,
                        decider_actor=decider.actor,
                        decided_at=decided.decided_at,
                        reason=decided.reason,
                    )
                )
                return done.rowcount == 1

    async def reopen_approval_order(self, order_id: UUID) -> None:
        with store_errors():
            async with self._db.begin() as connection:
                await connection.execute(
                    update(ApprovalOrderRow)
                    .where(ApprovalOrderRow.id == order_id)
                    .values(
                        status=ApprovalStatus.PENDING.value,
                        decided_by=None,
                        decider_person=None,
                        decider_key_id=None,
                        decider_actor=None,
                        decided_at=None,
                        reason=None,
                    )
                )


def _order(row: Any) -> ApprovalOrder:  # a Core row of approval_orders
    decider = (
        None
        if row.decider_person is None
        else Signature(row.decided_by, row.decider_person, row.decider_key_id, row.decider_actor)
    )
    return ApprovalOrder(
        id=row.id,
        kind=OrderKind(row.kind),
        status=ApprovalStatus(row.status),
        case_id=row.case_id,
        document_ref=row.legal_document_ref,
        requester=Signature(
            row.requested_by, row.requester_person, row.requester_key_id, row.requester_actor
        ),
        requested_at=row.requested_at,
        hold_id=row.hold_id,
        hold_ids=None if row.hold_ids is None else tuple(UUID(h) for h in row.hold_ids),
        decider=decider,
        decided_at=row.decided_at,
        reason=row.reason,
    )
