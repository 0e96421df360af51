"""Four eyes on money going out: a return (and, when switched on, a freeze) waits for a second
operator before it is made.

Business rules:
- ordering a return records an order pending approval, with what it would do now (the holds,
  amounts and payouts `ReturnDesk.preview` computes, nothing written); nothing is sent. A case
  with nothing to return is refused then, as before, and no order is recorded;
- approving it makes the order (`ReturnDesk.order`): the allocation is computed again at that
  moment, the approver is the transitions' actor and both people are in their cause; rejecting
  it closes it with a reason; either decision is taken once: a second one, or any decision on an
  order already decided, is refused (409);
- whoever decides must be another person than whoever ordered: the same key is refused, and so
  is the same person under another key (an operator key names its holder, `stopper.app.auth`;
  names compare case-insensitively); a key that names no holder can neither order nor decide,
  since nobody could tell whose eyes it stands for;
- with `freezes` switched on, a freeze order of a hold waits the same way, and its approval
  makes `FreezeDesk.order`.
A failure while making an approved order puts it back to pending, so it can be approved again.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol
from uuid import UUID, uuid4

from stopper.app.auth import Caller
from stopper.app.freezes import FreezeDesk, FreezeOrderOutcome
from stopper.app.ports import Clock, HoldRecord, HoldUnitOfWork, HoldUpdate
from stopper.app.returns import ReturnDesk, ReturnOrderResult
from stopper.domain.holds import FREEZABLE


class OrderKind(enum.StrEnum):
    RETURN = "return"
    FREEZE = "freeze"


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Signature:
    """One person's part in an order: the name they gave, the person their key (or header)
    stands for, the key, and how the audit names them."""

    name: str
    person: str
    key_id: str | None
    actor: str


@dataclass(frozen=True, slots=True)
class ApprovalOrder:
    id: UUID
    kind: OrderKind
    status: ApprovalStatus
    case_id: UUID
    document_ref: str
    requester: Signature
    requested_at: datetime
    hold_id: UUID | None = None  # a freeze's hold
    hold_ids: tuple[UUID, ...] | None = None  # a return's chosen holds; None: all frozen
    decider: Signature | None = None
    decided_at: datetime | None = None
    reason: str | None = None  # why it was rejected


class ApprovalStore(Protocol):
    async def add_approval_order(self, order: ApprovalOrder) -> None: ...

    async def get_approval_order(self, order_id: UUID) -> ApprovalOrder | None: ...

    async def list_approval_orders(
        self, kind: OrderKind, status: ApprovalStatus | None, limit: int
    ) -> list[ApprovalOrder]:
        """Oldest first."""
        ...

    async def decide_approval_order(self, decided: ApprovalOrder) -> bool:
        """Write `decided` (its status, decider, time and reason) over the stored order only if
        that is still pending; False if someone decided it first."""
        ...

    async def reopen_approval_order(self, order_id: UUID) -> None:
        """Back to pending, its decision erased: making the approved order failed."""
        ...


class ApprovalsStore(ApprovalStore, HoldUnitOfWork, Protocol):
    """What the desk needs: its orders, and a look at a hold before a freeze is asked for."""


class Outcome(enum.StrEnum):
    PENDING = "pending"  # recorded, waiting for a second operator
    NOTHING_TO_DO = "nothing_to_do"  # 409: nothing to return, or the hold cannot be frozen
    UNKNOWN = "unknown"  # 404: no such case, hold or order
    REFUSED = "refused"  # 403: not another person, or a key naming nobody
    ALREADY_DECIDED = "already_decided"  # 409
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ApprovalAnswer:
    outcome: Outcome
    order: ApprovalOrder | None = None
    detail: str = ""
    # A return: what it would do (when ordered) or what it did (when approved).
    returns: ReturnOrderResult | None = None


NO_HOLDER = (
    "this key names no holder, so nobody can tell whose eyes it is: money going out needs a "
    "key made with `stopper keys add --role operator --holder <person>`"
)


def signature(caller: Caller, name: str) -> Signature | None:
    """The caller's signature on an order, or None for a key that names no holder."""
    person = caller.person
    if person is None:
        return None
    return Signature(name, person, caller.key_id, caller.actor(name))


def refusal(order: ApprovalOrder, decider: Signature) -> str | None:
    """Why `decider` may not decide `order`, or None if they may: four eyes."""
    asked = order.requester
    if asked.key_id is not None and asked.key_id == decider.key_id:
        return (
            f"this {order.kind.value} order was made with this same key: another operator "
            "must decide it"
        )
    if asked.person == decider.person:
        return (
            f"{asked.person} ordered this {order.kind.value} (under another key or none): "
            "another person must decide it"
        )
    return None


class ApprovalDesk:
    def __init__(
        self,
        store: ApprovalsStore,
        returns: ReturnDesk,
        freezes: FreezeDesk,
        clock: Clock,
        *,
        freezes_need_approval: bool = False,
    ) -> None:
        self._store = store
        self._returns = returns
        self._freezes = freezes
        self._clock = clock
        self.freezes_need_approval = freezes_need_approval

    async def order_return(
        self,
        case_id: UUID,
        *,
        document_ref: str,
        requester: Signature | None,
        hold_ids: Collection[UUID] | None = None,
    ) -> ApprovalAnswer:
        if requester is None:
            return ApprovalAnswer(Outcome.REFUSED, detail=NO_HOLDER)
        preview = await self._returns.preview(case_id, document_ref=document_ref, hold_ids=hold_ids)
        if preview is None:
            return ApprovalAnswer(Outcome.UNKNOWN, detail="no such case")
        if not preview.started:
            reasons = sorted(set(preview.skipped.values())) or ["the case has no holds"]
            return ApprovalAnswer(
                Outcome.NOTHING_TO_DO, detail="nothing to return: " + "; ".join(reasons)
            )
        order = ApprovalOrder(
            id=uuid4(),
            kind=OrderKind.RETURN,
            status=ApprovalStatus.PENDING,
            case_id=case_id,
            document_ref=document_ref,
            requester=requester,
            requested_at=self._clock.now(),
            hold_ids=None if hold_ids is None else tuple(dict.fromkeys(hold_ids)),
        )
        await self._store.add_approval_order(order)
        return ApprovalAnswer(Outcome.PENDING, order, returns=preview)

    async def order_freeze(
        self, hold_id: UUID, *, document_ref: str, requester: Signature | None
    ) -> ApprovalAnswer:
        if requester is None:
            return ApprovalAnswer(Outcome.REFUSED, detail=NO_HOLDER)
        found: list[HoldRecord] = []

        def look(record: HoldRecord) -> HoldUpdate | None:
            found.append(record)
            return None  # only a look: the freeze is ordered when approved

        await self._store.update_hold(hold_id, look)
        if not found:
            return ApprovalAnswer(Outcome.UNKNOWN, detail="no such hold")
        if found[-1].hold.state not in FREEZABLE:
            return ApprovalAnswer(
                Outcome.NOTHING_TO_DO, detail="only a stopped or frozen hold can be frozen"
            )
        order = ApprovalOrder(
            id=uuid4(),
            kind=OrderKind.FREEZE,
            status=ApprovalStatus.PENDING,
            case_id=found[-1].hold.case_id,
            document_ref=document_ref,
            requester=requester,
            requested_at=self._clock.now(),
            hold_id=hold_id,
        )
        await self._store.add_approval_order(order)
        return ApprovalAnswer(Outcome.PENDING, order)

    async def approve(
        self, kind: OrderKind, order_id: UUID, decider: Signature | None
    ) -> ApprovalAnswer:
        checked = await self._decidable(kind, order_id, decider)
        if checked.outcome is not Outcome.PENDING or checked.order is None or decider is None:
            return checked
        approved = replace(
            checked.order,
            status=ApprovalStatus.APPROVED,
            decider=decider,
            decided_at=self._clock.now(),
        )
        if not await self._store.decide_approval_order(approved):
            return await self._already_decided(kind, order_id)
        try:
            return await self._make(approved)
        except BaseException:
            await self._store.reopen_approval_order(order_id)
            raise

    async def reject(
        self, kind: OrderKind, order_id: UUID, decider: Signature | None, reason: str
    ) -> ApprovalAnswer:
        checked = await self._decidable(kind, order_id, decider)
        if checked.outcome is not Outcome.PENDING or checked.order is None or decider is None:
            return checked
        rejected = replace(
            checked.order,
            status=ApprovalStatus.REJECTED,
            decider=decider,
            decided_at=self._clock.now(),
            reason=reason,
        )
        if not await self._store.decide_approval_order(rejected):
            return await self._already_decided(kind, order_id)
        return ApprovalAnswer(Outcome.REJECTED, rejected)

    async def get(self, kind: OrderKind, order_id: UUID) -> ApprovalOrder | None:
        order = await self._store.get_approval_order(order_id)
        return order if order is not None and order.kind is kind else None

    async def listing(
        self, kind: OrderKind, status: ApprovalStatus | None, limit: int = 200
    ) -> Sequence[ApprovalOrder]:
        return await self._store.list_approval_orders(kind, status, limit)

    async def _decidable(
        self, kind: OrderKind, order_id: UUID, decider: Signature | None
    ) -> ApprovalAnswer:
        order = await self.get(kind, order_id)
        if order is None:
            return ApprovalAnswer(Outcome.UNKNOWN, detail=f"no such {kind.value} order")
        if order.status is not ApprovalStatus.PENDING:
            return _decided(order)
        if decider is None:
            return ApprovalAnswer(Outcome.REFUSED, order, NO_HOLDER)
        why = refusal(order, decider)
        if why is not None:
            return ApprovalAnswer(Outcome.REFUSED, order, why)
        return ApprovalAnswer(Outcome.PENDING, order)

    async def _already_decided(self, kind: OrderKind, order_id: UUID) -> ApprovalAnswer:
        order = await self.get(kind, order_id)
        assert order is not None  # orders are never deleted
        return _decided(order)

    async def _make(self, order: ApprovalOrder) -> ApprovalAnswer:
        assert order.decider is not None
        if order.kind is OrderKind.FREEZE:
            assert order.hold_id is not None
            outcome = await self._freezes.order(
                order.hold_id,
                document_ref=order.document_ref,
                actor=order.decider.actor,
                ordered_by=order.requester.actor,
            )
            ordered = outcome is FreezeOrderOutcome.ORDERED
            detail = "" if ordered else "the hold can no longer be frozen: nothing was sent"
            return ApprovalAnswer(Outcome.APPROVED, order, detail)
        made = await self._returns.order(
            order.case_id,
            document_ref=order.document_ref,
            actor=order.requester.actor,
            hold_ids=order.hold_ids,
            approved_by=order.decider.actor,
        )
        return ApprovalAnswer(Outcome.APPROVED, order, returns=made or ReturnOrderResult())


def _decided(order: ApprovalOrder) -> ApprovalAnswer:
    by = f" by {order.decider.person}" if order.decider else ""
    return ApprovalAnswer(
        Outcome.ALREADY_DECIDED,
        order,
        f"this {order.kind.value} order was already {order.status.value}{by}",
    )
