"""The ISO 20022 code lists Stopper writes and reads, and what each means to a hold.

The schemas check external codes only for length (1 to 4 characters); the meaning is decided
here, once, and README's "ISO 20022 for integrators" prints the same table. A code missing from
it is refused (`ItemRefusal.UNKNOWN_REASON_CODE`), never guessed.

camt.029 `TxCxlSts` (a closed list in the schema):
    ACCR  accepted cancellation request  -> stopped, with the amount held
    RJCR  rejected                       -> not_found or rejected, by its reason (below)
    PDCR  pending                        -> pending: the outcome follows
A transaction without `TxCxlSts` takes the message's `Sts/Conf`: CNCL as ACCR, RJCR, PDCR
(any other confirmation there leaves it without a status: refused).
"""

from __future__ import annotations

import enum

from stopper.domain.messages import AnswerKind

RECALL_REASON = "FRAD"  # camt.056 CxlRsnInf/Rsn/Cd: cancellation requested following fraud
RETURN_REASON = "FOCR"  # pacs.004 RtrRsnInf/Rsn/Cd: return following a cancellation request
ORIGINAL_MESSAGE_NAME = "camt.056.001.08"  # what camt.029 and pacs.004 name as answered


class CancellationStatus(enum.StrEnum):
    ACCEPTED = "ACCR"
    REJECTED = "RJCR"
    PENDING = "PDCR"


# camt.029 Sts/Conf (ExternalInvestigationExecutionConfirmation1Code) as a transaction status.
CONFIRMATIONS = {
    "CNCL": CancellationStatus.ACCEPTED,  # cancelled as requested
    "RJCR": CancellationStatus.REJECTED,  # cancellation rejected
    "PDCR": CancellationStatus.PENDING,  # cancellation pending
}
# What Stopper's side writes in Sts/Conf when the transactions disagree.
PARTIALLY_EXECUTED = "PECR"

# RJCR reasons (ExternalPaymentCancellationRejection1Code, plus the account codes some banks
# send from the status-reason list) and what they make of a hold, with the words Stopper keeps
# in the hold's reason.
REJECTION_REASONS: dict[str, tuple[AnswerKind, str]] = {
    # The account is not there to stop: the hold ends as not_found.
    "AC01": (AnswerKind.NOT_FOUND, "incorrect account number"),
    "AC03": (AnswerKind.NOT_FOUND, "invalid creditor account number"),
    "AC04": (AnswerKind.NOT_FOUND, "closed account number"),
    # The institution will not stop it: rejected, for a person to take up.
    "AC06": (AnswerKind.REJECTED, "blocked account"),
    "AGNT": (AnswerKind.REJECTED, "agent decision"),
    "AM04": (AnswerKind.REJECTED, "insufficient funds"),
    "ARDT": (AnswerKind.REJECTED, "already returned"),
    "CUST": (AnswerKind.REJECTED, "customer decision"),
    "LEGL": (AnswerKind.REJECTED, "legal decision"),
    "NARR": (AnswerKind.REJECTED, "see the narrative"),
    "NOAS": (AnswerKind.REJECTED, "no answer from the customer"),
    "NOOR": (AnswerKind.REJECTED, "original transaction never received"),
}

# PDCR reasons: all leave the hold pending; the reason is for people only.
PENDING_REASONS = {
    "ARPL": "awaiting reply",
    "IDMN": "indemnity required",
    "NARR": "see the narrative",
    "PTNA": "passed to the next agent",
    "RQDA": "requesting debit authority",
}

# What the simulated institutions say, by the kind of their answer, when not told otherwise.
DEFAULT_REJECTION_CODES = {AnswerKind.NOT_FOUND: "AC01", AnswerKind.REJECTED: "LEGL"}

# Minor digits per currency: the report contract's currencies have two.
MINOR_DIGITS: dict[str, int] = {"CNY": 2, "HKD": 2, "USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}
DEFAULT_MINOR_DIGITS = 2
