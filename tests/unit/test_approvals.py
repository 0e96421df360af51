"""Four eyes on money going out (`stopper.app.approvals`), with hand-written fakes."""

from __future__ import annotations

import random
from dataclasses import replace
from uuid import UUID

import pytest

from stopper.app.approvals import (
    NO_HOLDER,
    ApprovalDesk,
    ApprovalOrder,
    ApprovalStatus,
    OrderKind,
    Outcome,
    Signature,
    refusal,
    signature,
)
from stopper.app.auth import ANONYMOUS, Caller, KeyRole, anonymous, new_key
from stopper.app.freezes import FreezeDesk
from stopper.app.gateway import InstitutionGateway
from stopper.app.returns import ReturnDesk
from stopper.config import DeadlineSettings
from stopper.domain.holds import Hold, HoldEvent, HoldState
from stopper.errors import KeyRefused
from tests.unit.fakes import FakeDispatchStore, FixedClock, ScriptedAdapter
from tests.unit.test_return_desk import CASE, REGISTRY, frozen, paid_in

ALICE_A = Caller(KeyRole.OPERATOR, None, "ka", "Alice")
ALICE_B = Caller(KeyRole.OPERATOR, None, "kb", " alice ")  # the same person, another key
BOB = Caller(KeyRole.OPERATOR, None, "kc", "bob")
NOBODY = Caller(KeyRole.OPERATOR, None, "kd")  # a key made without a holder


class FakeApprovalStore(FakeDispatchStore):
    """The dispatch fake, with orders waiting for approval (kept like `ApprovalStorage`)."""

    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[UUID, ApprovalOrder] = {}

    async def add_approval_order(self, order: ApprovalOrder) -> None:
        self.orders[order.id] = order

    async def get_approval_order(self, order_id: UUID) -> ApprovalOrder | None:
        return self.orders.get(order_id)

    async def list_approval_orders(
        self, kind: OrderKind, status: ApprovalStatus | None, limit: int
    ) -> list[ApprovalOrder]:
        found = [
            o
            for o in self.orders.values()
            if o.kind is kind and (status is None or o.status is status)
        ]
        return sorted(found, key=lambda o: o.requested_at)[:limit]

    async def decide_approval_order(self, decided: ApprovalOrder) -> bool:
        if self.orders[decided.id].status is not ApprovalStatus.PENDING:
            return False
        self.orders[decided.id] = decided
        return True

    async def reopen_approval_order(self, order_id: UUID) -> None:
        self.orders[order_id] = replace(
            self.orders[order_id],
            status=ApprovalStatus.PENDING,
            decider=None,
            decided_at=None,
            reason=None,
        )


def approvals(
    *, freezes: bool = False
) -> tuple[ApprovalDesk, ReturnDesk, FakeApprovalStore, ScriptedAdapter, FixedClock]:
    store, adapter, clock = FakeApprovalStore(), ScriptedAdapter({}), FixedClock()
    gateway = InstitutionGateway(adapter, REGISTRY, hedge=True)
    returns = ReturnDesk(store, gateway, clock, random.Random(5))
    freeze_desk = FreezeDesk(store, gateway, clock, DeadlineSettings().policy(), random.Random(5))
    desk = ApprovalDesk(store, returns, freeze_desk, clock, freezes_need_approval=freezes)
    return desk, returns, store, adapter, clock


def sign(caller: Caller, name: str = "officer-7") -> Signature | None:
    return signature(caller, name)


def test_another_person_may_decide_the_same_key_or_person_may_not() -> None:
    asked = sign(ALICE_A)
    assert asked is not None
    order = ApprovalOrder(
        UUID(int=1), OrderKind.RETURN, ApprovalStatus.PENDING, CASE, "RET-1", asked, FixedClock().at
    )
    same_key = sign(ALICE_A, "someone-else")
    same_person = sign(ALICE_B)
    other = sign(BOB)
    assert same_key is not None and same_person is not None and other is not None
    assert "same key" in (refusal(order, same_key) or "")
    assert "alice ordered this return" in (refusal(order, same_person) or "")
    assert refusal(order, other) is None
    # The name in the body is not who the caller is: only the key's holder counts.
    assert refusal(order, replace(same_person, name="bob")) is not None


def test_who_a_caller_is_comes_from_the_key_holder_or_the_name_given_without_keys() -> None:
    assert sign(NOBODY) is None  # nobody can tell whose eyes a holder-less key is
    assert ANONYMOUS.person == "anonymous" and anonymous(None) is ANONYMOUS
    assert anonymous("Li.Wei").person == "li.wei"
    stored, _ = new_key(None, KeyRole.OPERATOR, "shift A", FixedClock().at, holder=" li.wei ")
    assert stored.holder == "li.wei"
    with pytest.raises(KeyRefused, match="holder"):
        new_key(None, KeyRole.OPERATOR, "", FixedClock().at, holder="x" * 65)


async def test_a_return_waits_for_a_second_person_who_sends_it() -> None:
    desk, returns, store, adapter, clock = approvals()
    hold = frozen(clock, 60_000)
    store.add(hold)
    paid_in(store, "V1", hold, 100_000)
    paid_in(store, "V2", hold, 50_000)

    ordered = await desk.order_return(CASE, document_ref="RET-1", requester=sign(ALICE_A))
    assert ordered.outcome is Outcome.PENDING and ordered.order is not None
    assert ordered.returns is not None
    [would] = ordered.returns.started
    assert {p.victim_ref: p.amount for p in would.payouts} == {"V1": 40_000, "V2": 20_000}
    # Nothing moved, nothing was sent, nothing was paid: it only says what it would do.
    await returns.wait_idle()
    assert store.holds[hold.hold.id].hold.state is HoldState.FROZEN
    assert not adapter.returns and not store.payouts and not store.transitions
    assert [o.id for o in await desk.listing(OrderKind.RETURN, ApprovalStatus.PENDING)] == [
        ordered.order.id
    ]

    order_id = ordered.order.id
    for who in (ALICE_A, ALICE_B):
        refused = await desk.approve(OrderKind.RETURN, order_id, sign(who, "supervisor"))
        assert refused.outcome is Outcome.REFUSED, who
    refused = await desk.approve(OrderKind.RETURN, order_id, sign(NOBODY))
    assert (refused.outcome, refused.detail) == (Outcome.REFUSED, NO_HOLDER)
    assert not adapter.returns

    approved = await desk.approve(OrderKind.RETURN, order_id, sign(BOB, "supervisor-2"))
    await returns.wait_idle()
    assert approved.outcome is Outcome.APPROVED and approved.returns is not None
    assert [s.amount for s in approved.returns.started] == [60_000]
    assert store.holds[hold.hold.id].hold.state is HoldState.RETURNED
    [started, _] = store.transitions
    assert started.event is HoldEvent.RETURN_STARTED
    assert started.actor == "operator:supervisor-2 (key:kc)"
    assert "ordered by operator:officer-7 (key:ka)" in started.cause
    assert "approved by operator:supervisor-2 (key:kc)" in started.cause
    decided = store.orders[order_id]
    assert decided.status is ApprovalStatus.APPROVED and decided.decider is not None
    assert (decided.requester.person, decided.decider.person) == ("alice", "bob")

    again = await desk.approve(OrderKind.RETURN, order_id, sign(BOB))
    assert again.outcome is Outcome.ALREADY_DECIDED and "already approved by bob" in again.detail
    assert len(adapter.returns) == 1


async def test_a_rejected_order_is_closed_with_its_reason_and_sends_nothing() -> None:
    desk, returns, store, adapter, clock = approvals()
    hold = frozen(clock, 60_000)
    store.add(hold)
    paid_in(store, "V1", hold, 100_000)
    ordered = await desk.order_return(CASE, document_ref="RET-1", requester=sign(ALICE_A))
    assert ordered.order is not None
    same = await desk.reject(OrderKind.RETURN, ordered.order.id, sign(ALICE_B), "mine")
    assert same.outcome is Outcome.REFUSED
    rejected = await desk.reject(OrderKind.RETURN, ordered.order.id, sign(BOB), "wrong document")
    assert rejected.outcome is Outcome.REJECTED and rejected.order is not None
    assert rejected.order.reason == "wrong document"
    late = await desk.approve(OrderKind.RETURN, ordered.order.id, sign(BOB))
    assert late.outcome is Outcome.ALREADY_DECIDED and "already rejected" in late.detail
    await returns.wait_idle()
    assert not adapter.returns and store.holds[hold.hold.id].hold.state is HoldState.FROZEN
    assert await desk.listing(OrderKind.RETURN, ApprovalStatus.PENDING) == []


async def test_nothing_to_return_or_no_case_records_no_order() -> None:
    desk, _, store, _, _ = approvals()
    unknown = await desk.order_return(UUID(int=9), document_ref="RET-1", requester=sign(BOB))
    assert unknown.outcome is Outcome.UNKNOWN
    missing = await desk.approve(OrderKind.RETURN, UUID(int=9), sign(BOB))
    assert missing.outcome is Outcome.UNKNOWN
    no_holder = await desk.order_return(CASE, document_ref="RET-1", requester=sign(NOBODY))
    assert (no_holder.outcome, no_holder.detail) == (Outcome.REFUSED, NO_HOLDER)
    assert not store.orders


async def test_freezes_wait_for_a_second_person_when_switched_on() -> None:
    desk, _, store, _, clock = approvals(freezes=True)
    hold = Hold(
        id=UUID(int=5),
        case_id=CASE,
        institution_code="BK01",
        account_number="6222000011112222",
        currency="CNY",
        amount_asked=10_000,
        layer=1,
    )
    for event, amount in ((HoldEvent.REQUEST_SENT, None), (HoldEvent.STOP_CONFIRMED, 10_000)):
        hold.apply(event, cause="t", actor="t", at=clock.at, amount=amount)
    store.add(replace(frozen(clock, 1), hold=hold))
    ordered = await desk.order_freeze(hold.id, document_ref="FRZ-1", requester=sign(ALICE_A))
    assert ordered.outcome is Outcome.PENDING and ordered.order is not None
    assert ordered.order.case_id == CASE
    assert store.holds[hold.id].freeze_document_ref is None  # not ordered yet
    refused = await desk.approve(OrderKind.FREEZE, ordered.order.id, sign(ALICE_B))
    assert refused.outcome is Outcome.REFUSED
    # A freeze order is not a return order: each list and route keeps its own kind.
    assert (await desk.approve(OrderKind.RETURN, ordered.order.id, sign(BOB))).outcome is (
        Outcome.UNKNOWN
    )
    approved = await desk.approve(OrderKind.FREEZE, ordered.order.id, sign(BOB, "supervisor-2"))
    assert approved.outcome is Outcome.APPROVED
    reason = store.holds[hold.id].state_reason or ""
    assert "officer-7" in reason and "approved by operator:supervisor-2" in reason
    unknown = await desk.order_freeze(UUID(int=6), document_ref="FRZ-1", requester=sign(BOB))
    assert unknown.outcome is Outcome.UNKNOWN
