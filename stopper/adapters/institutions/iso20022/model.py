"""What the ISO 20022 codec takes and gives: small frozen types in the domain's terms.

No lxml type crosses this line; amounts are minor units, times are aware datetimes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from stopper.app.message_ports import PaymentIn
from stopper.domain.messages import OrderReturn, RequestStop, StopStatus

# What a stop request rests on, said in every recall (a police emergency stop-payment needs no
# court document: that comes with the freeze). At most 99 characters: one AddtlInf line.
EMERGENCY_STOP_BASIS = "Police emergency stop-payment of suspected fraud proceeds (48 hours)"


# One victim transfer into the account to stop (or, for a hold deeper in the money trail, the
# onward transfer that reached it), in minor units, settled at an aware time: a recall's
# original payment is the payment in that the store reads as the hold's grounds.
OriginalPayment = PaymentIn


@dataclass(frozen=True, slots=True)
class RecallItem:
    """One hold's stop request, as one `TxInf` of a camt.056."""

    request: RequestStop
    payments: tuple[OriginalPayment, ...]
    agency_code: str  # the police agency that reported the case
    legal_basis: str = EMERGENCY_STOP_BASIS


@dataclass(frozen=True, slots=True)
class Recall:
    """A camt.056: the stop requests of one batch, all to one institution (`receiver`)."""

    message_id: str  # Assgnmt/Id: unique per message, at most 35 characters
    created_at: datetime
    sender: str  # who asks: Stopper's own identifier
    receiver: str  # the institution's code
    items: tuple[RecallItem, ...]


class ItemRefusal(enum.StrEnum):
    """Why one answer in a camt.029 cannot be read (counted by this value; never guessed)."""

    UNKNOWN_REASON_CODE = "unknown_reason_code"  # a code Stopper does not map, or proprietary
    NO_REASON = "no_reason"  # a rejection without a reason code
    NO_STATUS = "no_status"  # neither the transaction nor the message says a usable status
    NO_AMOUNT = "no_amount"  # a stop confirmed without the amount held
    BAD_AMOUNT = "bad_amount"  # more decimals than the currency has, or two currencies
    BAD_ONWARD = "bad_onward"  # Stopper's onward-transfer supplement is unreadable


@dataclass(frozen=True, slots=True)
class ResolvedItem:
    """One `TxInfAndSts` of a camt.029: exactly one of `status` (a domain status: answered or
    pending) and `refusal` (why it cannot be read, `detail` for a person)."""

    idempotency_key: str  # as sent; the raw case identifier when it is not one of Stopper's
    hold_id: UUID | None  # None when the case identifier is not one Stopper writes
    status: StopStatus | None
    refusal: ItemRefusal | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """A camt.029 read: who answered, which recall it answers (when it says), one item per
    transaction status, in document order."""

    message_id: str
    created_at: datetime
    sender: str
    answers_message_id: str | None
    items: tuple[ResolvedItem, ...]


@dataclass(frozen=True, slots=True)
class ItemAnswer:
    """What an institution says about one recalled hold, for `build_resolution` (the simulated
    institutions' side). `status` is ANSWERED or PENDING; `reason_code` overrides the code
    chosen from the answer's kind (AC01 for not_found, LEGL for rejected)."""

    idempotency_key: str
    currency: str
    amount_asked: int
    status: StopStatus
    reason_code: str | None = None


@dataclass(frozen=True, slots=True)
class ReturnInstruction:
    """A return order as it travels (a camt.056 with one `TxInf` per payout)."""

    message_id: str
    created_at: datetime
    sender: str
    receiver: str
    order: OrderReturn


@dataclass(frozen=True, slots=True)
class ReturnedItem:
    """One `TxInf` of a pacs.004: what was paid back for one payout."""

    payout_ref: str  # the payout's CxlId in the return instruction (OrgnlInstrId here)
    amount: int
    currency: str
    institution_code: str  # where the money went: the victim's institution and account
    account_number: str
    return_id: str | None  # RtrId: the institution's own reference


@dataclass(frozen=True, slots=True)
class PaymentReturn:
    """A pacs.004 read."""

    message_id: str
    created_at: datetime
    sender: str
    answers_message_id: str | None  # OrgnlGrpInf/OrgnlMsgId: the return instruction's id
    items: tuple[ReturnedItem, ...]
