"""The ports of adapters that send messages of many holds (ISO 20022): what they record of each
message before it leaves, and the grounds of each hold's request they read with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True, slots=True)
class PaymentIn:
    """One payment into a hold's account: a victim's transfer (from the report), or, for a hold
    the money trail opened, the onward transfer that reached the account."""

    reference: str | None
    amount: int
    currency: str
    settled_at: datetime
    debtor_institution: str
    debtor_account: str
    creditor_institution: str
    creditor_account: str


@dataclass(frozen=True, slots=True)
class StopGrounds:
    """What a stop request for one hold names beside the hold itself: the agency that
    reported the case, and the payments into the account, oldest first."""

    hold_id: UUID
    agency_code: str
    payments: tuple[PaymentIn, ...]


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message carrying many holds (an ISO 20022 camt.056 or return instruction), under the
    message id Stopper gave it."""

    message_id: str
    message_type: str
    institution_code: str
    sent_at: datetime
    holds: Sequence[tuple[UUID, str]]  # (hold, the idempotency key it was sent with)


class MessageStore(Protocol):
    """What an institution adapter that sends messages of many holds records and reads
    (`Iso20022Adapter`)."""

    async def record_messages(self, messages: Sequence[SentMessage]) -> dict[UUID, StopGrounds]:
        """In one transaction, before the messages leave: remember which holds each carries,
        and read the grounds of them all (a hold that does not exist is absent)."""
        ...
