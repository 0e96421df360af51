"""Supplements: the extra a trail merge asks of an account whose stop request is already out.

Theory of operation
-------------------
A merge (`HoldEvent.MERGED`) raises what a hold asks for. Before the hold's first request is
out, that request asks for the raised amount; once it is out, or its stop is in force
(`holds.SUPPLEMENTABLE`: sent, unconfirmed, stopped, frozen), the institution is asked for the
extra by a *supplement*: a stop request of its own, for exactly what the merge added, naming the
request it adds to. Rules:

* One supplement per merge, numbered in the order the merges were written (under the hold's
  lock, once: a repeated answer plans no trail again). Its idempotency key is derived from the
  hold and that number (`supplement_key_for`): every retry, redelivery, hedge or resend sends
  the same key, so the institution holds the extra once; two merges are two supplements.
* A supplement's lifecycle is a stop request's, by the same table (`holds.TRANSITIONS`) and
  its request events: ``request_sent``, ``accepted``, ``unanswered``, ``stop_confirmed`` (with
  what it holds, at most its own amount), ``not_found``, ``rejected``, ``gave_up``. As for a
  hold, no answer is not a refusal: a supplement whose last attempt went unanswered is asked
  about before Stopper gives up on it, and a late answer after Stopper gave up still counts.
* Each step is recorded in the hold's own audit as a same-state event (`HOLD_EVENT_OF`), in
  the states a stop may still be in (`holds.SUPPLEMENT_ANSWERABLE`); the hold's state never moves
  for a supplement, so a supplement that fails leaves a stopped hold stopped.
* Amounts: what a supplement holds is added to the hold's `amount_stopped` (and kept apart in
  `amount_stopped_by_supplements`), so the first request's answer and each supplement's add up
  in whatever order they arrive, each counted once (an answer repeated is recognised by the
  supplement's own state and amount), never above `amount_asked`.
* A supplement belongs to a generation: a re-applied stop asks for everything again in its
  first request, and an older generation's supplement is neither sent nor counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final
from uuid import UUID

from stopper.domain.errors import InvalidAmount
from stopper.domain.holds import (
    Hold,
    HoldEvent,
    HoldState,
    Transition,
    can,
    idempotency_key_for,
    next_state,
)
from stopper.domain.messages import RequestStop, SupplementOf

# The hold's audit event for each step of a supplement.
HOLD_EVENT_OF: Final = MappingProxyType(
    {
        HoldEvent.REQUEST_SENT: HoldEvent.SUPPLEMENT_SENT,
        HoldEvent.ACCEPTED: HoldEvent.SUPPLEMENT_ACCEPTED,
        HoldEvent.UNANSWERED: HoldEvent.SUPPLEMENT_UNANSWERED,
        HoldEvent.STOP_CONFIRMED: HoldEvent.SUPPLEMENT_STOPPED,
        HoldEvent.NOT_FOUND: HoldEvent.SUPPLEMENT_REFUSED,
        HoldEvent.REJECTED: HoldEvent.SUPPLEMENT_REFUSED,
        HoldEvent.GAVE_UP: HoldEvent.SUPPLEMENT_FAILED,
    }
)

_KEY = re.compile(r"^stopper-([0-9a-f-]{36})-s([1-9]\d?)$")


def supplement_key_for(hold_id: UUID, number: int) -> str:
    """The idempotency key of the hold's `number`-th supplement."""
    return f"stopper-{hold_id}-s{number}"


def supplement_of_key(idempotency_key: str) -> tuple[UUID, int] | None:
    """The hold and number a supplement's key stands for; None for any other key."""
    match = _KEY.match(idempotency_key)
    if match is None:
        return None
    hold_id = UUID(match.group(1))
    if str(hold_id) != match.group(1):
        return None
    return hold_id, int(match.group(2))


@dataclass(slots=True)
class Supplement:
    """The `number`-th supplement of a hold: `amount` more asked of its account in the hold's
    `generation`, for money that reached it from the hold `merged_from`."""

    hold_id: UUID
    number: int
    generation: int
    amount: int
    merged_from: UUID
    requested_at: datetime
    state: HoldState = HoldState.REQUESTED
    amount_held: int = 0

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise InvalidAmount("a supplement asks for a positive amount")

    @property
    def idempotency_key(self) -> str:
        return supplement_key_for(self.hold_id, self.number)

    def request(self, hold: Hold) -> RequestStop:
        """The stop request of this supplement: the hold's account, this amount, this key, and
        the key of the first request it adds to."""
        return self.request_for(
            hold.case_id, hold.institution_code, hold.account_number, hold.currency, hold.layer
        )

    def request_for(
        self, case_id: UUID, institution_code: str, account_number: str, currency: str, layer: int
    ) -> RequestStop:
        """`request`, for the hold of this case, account, currency and layer."""
        return RequestStop(
            hold_id=self.hold_id,
            case_id=case_id,
            institution_code=institution_code,
            account_number=account_number,
            currency=currency,
            amount=self.amount,
            layer=layer,
            idempotency_key=self.idempotency_key,
            generation=self.generation,
            requested_at=self.requested_at,
            supplement=SupplementOf(
                number=self.number,
                adds_to=idempotency_key_for(self.hold_id, self.generation),
                merged_from=self.merged_from,
            ),
        )

    def counts_for(self, hold: Hold) -> bool:
        """Whether this supplement is of the hold's current generation."""
        return self.generation == hold.reapplications

    def apply(self, event: HoldEvent, amount: int | None = None) -> None:
        """Move the supplement by one of the request events; `IllegalTransition` (or
        `InvalidAmount`) and nothing changed if it may not. `amount`: what a ``stop_confirmed``
        holds, at most the supplement's own amount."""
        if event not in HOLD_EVENT_OF:
            raise ValueError(f"{event.value} is not a step of a stop request")
        state = next_state(self.state, event)
        if event is HoldEvent.STOP_CONFIRMED:
            if amount is None or not 0 <= amount <= self.amount:
                raise InvalidAmount(f"amount held {amount} outside 0..{self.amount}")
            self.amount_held = amount
        self.state = state

    def record_on(
        self, hold: Hold, event: HoldEvent, *, cause: str, actor: str, at: datetime
    ) -> Transition | None:
        """The hold's audit row of this supplement's `event` (the hold's amounts moved for a
        ``stop_confirmed``); None when it no longer counts for the hold: another generation, or
        a state a stop is over in."""
        hold_event = HOLD_EVENT_OF[event]
        if not self.counts_for(hold) or not can(hold.state, hold_event):
            return None
        amount = self.amount_held if event is HoldEvent.STOP_CONFIRMED else None
        return hold.apply(
            hold_event,
            cause=f"supplement {self.number}: {cause}",
            actor=actor,
            at=at,
            amount=amount,
        )
