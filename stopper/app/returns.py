"""Returns: frozen funds go back to the victims, split by `domain.returns`.

Business rules:
- a return is ordered for a case (all its frozen holds, or the ones named) under a legal
  document; each frozen hold's funds are allocated among the victims whose money reached its
  account (`traced_claims`, `plan_returns`): nobody is paid more than they lost, minus what
  earlier returns already paid or are paying; no hold pays out more than it froze;
- each victim's share is a payout to the victim's own account (the account of their first
  transfer in the case, in the hold's currency); the hold moves `frozen -> returning` with its
  payouts in the same transaction, and the return request goes to the institution with its own
  idempotency key (one per hold and return round), so a retry never pays twice;
- the institution's confirmation moves the hold to `returned` and the payouts to paid; a refusal
  moves it back to `frozen` and cancels the payouts (a new order is a new round); when attempts
  run out the outcome is unknown: the hold stays `returning` for a person, and ordering the
  return again sends the very same request;
- under four eyes (`stopper.app.approvals`) the order is previewed when asked for (`preview`:
  the same allocation, nothing written) and made when a second operator approves it: the
  transitions name the approver as actor and both people in their cause;
- a frozen hold that owes nobody anything (every victim already paid in full) is left frozen, and
  money frozen beyond what the victims are owed stays frozen for a person to decide on.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from stopper import metrics
from stopper.app.gateway import InstitutionGateway
from stopper.app.hold_changes import Order, ReturnOrdered, ReturnResent
from stopper.app.orders import InstitutionOrders
from stopper.app.ports import (
    CaseFunds,
    Clock,
    HoldRecord,
    HoldUpdate,
    Payout,
    ReturnStart,
    ReturnStore,
)
from stopper.domain.holds import HoldEvent, HoldState, can
from stopper.domain.messages import OrderAnswer, OrderReturn, ReturnPayout
from stopper.domain.returns import FrozenFunds, HoldReturn, plan_returns, traced_claims
from stopper.errors import MalformedAnswer
from stopper.registry import Institution


@dataclass(frozen=True, slots=True)
class StartedReturn:
    hold_id: UUID
    currency: str
    amount: int
    unallocated: int
    payouts: Sequence[Payout]
    resent: bool = False  # an earlier round's request sent again, unchanged


@dataclass(slots=True)
class ReturnOrderResult:
    started: list[StartedReturn] = field(default_factory=list)
    skipped: dict[UUID, str] = field(default_factory=dict)  # hold id -> why not


class ReturnDesk(InstitutionOrders):
    kind = Order.RETURN

    def __init__(
        self,
        store: ReturnStore,
        gateway: InstitutionGateway,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(store, gateway, clock, rng)
        self._returns = store

    async def order(
        self,
        case_id: UUID,
        *,
        document_ref: str,
        actor: str,
        hold_ids: Collection[UUID] | None = None,
        approved_by: str | None = None,
    ) -> ReturnOrderResult | None:
        """Allocate and record the case's returns, then send them; None if there is no case.
        `actor` ordered them; `approved_by`, when given, is the second operator who approved
        the order and the one the transitions name as actor."""
        now = self._clock.now()
        result = ReturnOrderResult()
        by = _Orderers(actor, approved_by)

        def decide(funds: CaseFunds) -> Sequence[ReturnStart]:
            nonlocal result
            result = ReturnOrderResult()
            return self._decide(funds, result, now, document_ref, by, hold_ids)

        starts = await self._returns.start_returns(case_id, decide)
        if starts is None:
            return None
        for start in starts:
            self.send_soon(start.hold_id)
        return result

    async def preview(
        self, case_id: UUID, *, document_ref: str, hold_ids: Collection[UUID] | None = None
    ) -> ReturnOrderResult | None:
        """What `order` would start now (holds, amounts, payouts, holds skipped and why),
        writing nothing; None if there is no case."""
        now = self._clock.now()
        result = ReturnOrderResult()

        def decide(funds: CaseFunds) -> Sequence[ReturnStart]:
            nonlocal result
            result = ReturnOrderResult()
            self._decide(funds, result, now, document_ref, _Orderers("preview"), hold_ids)
            return ()

        if await self._returns.start_returns(case_id, decide) is None:
            return None
        return result

    def _decide(
        self,
        funds: CaseFunds,
        result: ReturnOrderResult,
        now: datetime,
        document_ref: str,
        by: _Orderers,
        hold_ids: Collection[UUID] | None,
    ) -> list[ReturnStart]:
        known = {r.hold.id: r for r in funds.holds}
        chosen = list(known) if hold_ids is None else list(dict.fromkeys(hold_ids))
        frozen: list[HoldRecord] = []
        starts: list[ReturnStart] = []
        for hold_id in chosen:
            record = known.get(hold_id)
            if record is None:
                result.skipped[hold_id] = "no such hold in this case"
            elif can(record.hold.state, HoldEvent.RETURN_STARTED) and record.hold.amount_frozen > 0:
                frozen.append(record)
            elif record.hold.state is HoldState.RETURNING and record.return_next_attempt_at is None:
                starts.append(self._resend(record, funds.payouts, result, now, by))
            else:
                result.skipped[hold_id] = f"the hold is {record.hold.state.value}, not frozen"
        for planned in _allocate(funds, frozen):
            record = known[planned.hold_id]
            if planned.allocation.paid == 0:
                result.skipped[planned.hold_id] = "no victim is owed anything from this account"
                continue
            starts.append(self._start(record, planned, funds, result, now, document_ref, by))
        return starts

    def _start(
        self,
        record: HoldRecord,
        planned: HoldReturn,
        funds: CaseFunds,
        result: ReturnOrderResult,
        now: datetime,
        document_ref: str,
        by: _Orderers,
    ) -> ReturnStart:
        hold, allocation = record.hold, planned.allocation
        version = hold.version
        round_ = record.return_round + 1
        payouts = [
            _payout_to(victim, cents, hold.id, round_, hold.currency, funds)
            for victim, cents in sorted(allocation.shares.items())
            if cents > 0
        ]
        transition = hold.apply(
            HoldEvent.RETURN_STARTED,
            cause=f"return ordered under {document_ref}{by.named}: {allocation.paid} of "
            f"{hold.amount_frozen} to {len(payouts)} victim(s)",
            actor=by.actor,
            at=now,
        )
        reason = (
            f"{allocation.unallocated} frozen beyond what the victims are owed; "
            "a person decides on it"
            if allocation.unallocated
            else None
        )
        update = HoldUpdate(
            at=now,
            transitions=[transition],
            change=ReturnOrdered(document_ref, round_, next_attempt_at=now, reason=reason),
        )
        result.started.append(
            StartedReturn(hold.id, hold.currency, allocation.paid, allocation.unallocated, payouts)
        )
        return ReturnStart(hold.id, version, update, payouts)

    def _resend(
        self,
        record: HoldRecord,
        payouts: Sequence[Payout],
        result: ReturnOrderResult,
        now: datetime,
        by: _Orderers,
    ) -> ReturnStart:
        hold = record.hold
        same = [p for p in payouts if p.hold_id == hold.id and p.round == record.return_round]
        update = HoldUpdate(
            at=now,
            change=ReturnResent(
                next_attempt_at=now, reason=f"return sent again by {by.actor}{by.named}"
            ),
        )
        result.started.append(
            StartedReturn(hold.id, hold.currency, sum(p.amount for p in same), 0, same, True)
        )
        return ReturnStart(hold.id, hold.version, update, ())

    # InstitutionOrders

    def _may_send(self, record: HoldRecord) -> bool:
        return can(record.hold.state, HoldEvent.RETURN_CONFIRMED)

    async def _due(self, now: datetime, limit: int) -> list[UUID]:
        return await self._returns.returns_due(now, limit)

    async def _send(
        self, institution: Institution, record: HoldRecord, now: datetime
    ) -> OrderAnswer:
        hold = record.hold
        payouts = await self._returns.payouts_of(hold.id, record.return_round)
        request = OrderReturn(
            hold_id=hold.id,
            case_id=hold.case_id,
            institution_code=hold.institution_code,
            account_number=hold.account_number,
            currency=hold.currency,
            amount=sum(p.amount for p in payouts),
            legal_document_ref=record.return_document_ref or "",
            payouts=tuple(
                ReturnPayout(p.victim_ref, p.institution_code, p.account_number, p.amount)
                for p in payouts
            ),
            idempotency_key=f"stopper-return-{hold.id}-{record.return_round}",
            requested_at=now,
        )
        answer = await self._gateway.request_return(institution, request)
        if not answer.done:
            return answer
        returned = answer.amount
        if returned > request.amount:
            raise MalformedAnswer(f"returned {returned}, more than the {request.amount} asked")
        note = (
            f"the institution returned {returned} of {request.amount}; a person reconciles"
            if returned < request.amount
            else None
        )
        return OrderAnswer(True, returned, note)

    def _done(self, record: HoldRecord, answer: OrderAnswer, now: datetime) -> HoldUpdate | None:
        hold = record.hold
        transition = hold.apply(
            HoldEvent.RETURN_CONFIRMED,
            cause=f"returned to the victims under {record.return_document_ref}",
            actor=f"institution:{hold.institution_code}",
            at=now,
            amount=min(answer.amount, hold.amount_frozen),
        )
        metrics.AMOUNT_RETURNED.labels(hold.currency).inc(hold.amount_returned / 100)
        return HoldUpdate(
            at=now,
            transitions=[transition],
            change=self._bookkeeping(record.return_attempts, None, answer.reason),
            settle_payouts="paid",
        )

    def _refused(self, record: HoldRecord, reason: str, now: datetime) -> HoldUpdate:
        hold = record.hold
        transition = hold.apply(
            HoldEvent.RETURN_REFUSED,
            cause=reason,
            actor=f"institution:{hold.institution_code}",
            at=now,
        )
        return HoldUpdate(
            at=now,
            transitions=[transition],
            change=self._bookkeeping(
                record.return_attempts, None, f"{reason}; the funds stay frozen, a person must act"
            ),
            settle_payouts="cancelled",
        )


@dataclass(frozen=True, slots=True)
class _Orderers:
    """Who ordered a return, and who approved it (four eyes), as the audit names them."""

    ordered_by: str
    approved_by: str | None = None

    @property
    def actor(self) -> str:
        return self.approved_by or self.ordered_by

    @property
    def named(self) -> str:
        """Both people, for a cause; nothing without an approver (the actor says who)."""
        if self.approved_by is None:
            return ""
        return f" (ordered by {self.ordered_by}, approved by {self.approved_by})"


def _allocate(funds: CaseFunds, frozen: Sequence[HoldRecord]) -> list[HoldReturn]:
    currency_of = {r.hold.id: r.hold.currency for r in funds.holds}
    deposits: dict[UUID, dict[str, int]] = {}
    lost: dict[tuple[str, str], int] = {}
    for t in funds.transfers:
        if currency_of.get(t.hold_id) == t.currency:
            into = deposits.setdefault(t.hold_id, {})
            into[t.victim_ref] = into.get(t.victim_ref, 0) + t.amount
        lost[(t.victim_ref, t.currency)] = lost.get((t.victim_ref, t.currency), 0) + t.amount
    paid: dict[tuple[str, str], int] = {}
    for p in funds.payouts:
        if p.status != "cancelled":
            paid[(p.victim_ref, p.currency)] = paid.get((p.victim_ref, p.currency), 0) + p.amount
    return plan_returns(
        [
            FrozenFunds(r.hold.id, r.hold.layer, r.hold.currency, r.hold.amount_frozen)
            for r in frozen
        ],
        traced_claims(deposits, funds.edges),
        lost,
        paid,
    )


def _payout_to(
    victim: str, cents: int, hold_id: UUID, round_: int, currency: str, funds: CaseFunds
) -> Payout:
    # The victim's own account: the one of their first transfer in this currency.
    source = next(t for t in funds.transfers if t.victim_ref == victim and t.currency == currency)
    return Payout(
        hold_id=hold_id,
        round=round_,
        victim_ref=victim,
        currency=currency,
        amount=cents,
        institution_code=source.institution_code,
        account_number=source.account_number,
    )
