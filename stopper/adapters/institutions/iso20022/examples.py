"""`stopper iso20022 example ...`: the messages of one sample case, as Stopper writes them (the
recall, the return instruction) or expects them (the answer, the return's confirmation).

The case is opened by the domain itself (two victims, three transfers into two accounts at
BK02), so the example is what Stopper would send for it; ids and times are fixed, so the output
is the same on every run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from lxml import etree

from stopper.adapters.institutions.iso20022.documents import parse_document
from stopper.adapters.institutions.iso20022.model import (
    ItemAnswer,
    OriginalPayment,
    Recall,
    RecallItem,
    ReturnInstruction,
)
from stopper.adapters.institutions.iso20022.recall import build_recall
from stopper.adapters.institutions.iso20022.resolution import build_resolution
from stopper.adapters.institutions.iso20022.returns import (
    build_payment_return,
    build_return_instruction,
)
from stopper.domain.accounts import AccountRef
from stopper.domain.cases import Case, TransferFact, open_case
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OnwardKind,
    OnwardTransfer,
    OrderReturn,
    ReturnPayout,
    StatusKind,
    StopStatus,
)

EXAMPLES = ("camt.056", "camt.029", "pacs.004", "return")
SENDER = "STOPPER"
INSTITUTION = "BK02"
_CST = timezone(timedelta(hours=8))
_REPORTED = datetime(2026, 11, 20, 9, 42, tzinfo=_CST)
_OPENED = _REPORTED + timedelta(seconds=1)
_MULE = AccountRef(INSTITUTION, "6258683861491421")
_OTHER = AccountRef(INSTITUTION, "6258683861490007")
_V1 = AccountRef("BK15", "6298728536143322")
_V2 = AccountRef("BK04", "6217001140023311")


def sample_case() -> Case:
    transfers = [
        TransferFact("V1", _V1, _MULE, 4_554_000, "CNY", _REPORTED - timedelta(minutes=37),
                     "mobile_banking", "fake investment platform: deposit to unlock withdrawal"),
        TransferFact("V2", _V2, _MULE, 880_050, "CNY", _REPORTED - timedelta(minutes=11),
                     "online_banking", "same platform, second victim"),
        TransferFact("V1", _V1, _OTHER, 1_200_000, "CNY", _REPORTED - timedelta(minutes=24),
                     "mobile_banking", None),
    ]  # fmt: skip
    case, _, _ = open_case(
        report_id="PSB-ANTIFRAUD-01-20261120-000417",
        agency_code="PSB-ANTIFRAUD-01",
        reported_at=_REPORTED,
        transfers=transfers,
        opened_at=_OPENED,
    )
    return case


def sample_recall() -> Recall:
    case = sample_case()
    items = []
    for hold in case.holds:
        payments = tuple(
            OriginalPayment(
                reference=t.reference,
                amount=t.amount,
                currency=t.currency,
                settled_at=t.transferred_at,
                debtor_institution=t.victim_account.institution_code,
                debtor_account=t.victim_account.account_number,
                creditor_institution=t.receiving_account.institution_code,
                creditor_account=t.receiving_account.account_number,
            )
            for t in case.transfers
            if t.receiving_account.key == (hold.institution_code, hold.account_number)
        )
        items.append(RecallItem(hold.stop_request(_OPENED), payments, case.agency_code))
    created = _OPENED + timedelta(milliseconds=4)
    return Recall("STP20261120014201a1b2c3d4e5f6a7b8c9", created, SENDER, INSTITUTION, tuple(items))


def _resolution(recall: Recall) -> bytes:
    """BK02's answer: the first account stopped in part (the rest moved on), the second closed."""
    first, second = (item.request for item in recall.items)
    answered = recall.created_at + timedelta(minutes=3)
    onward = (
        OnwardTransfer(
            OnwardKind.TRANSFER,
            2_000_000,
            _REPORTED - timedelta(minutes=6),
            "BK05",
            "6228480012345678",
        ),
        OnwardTransfer(OnwardKind.CASH_WITHDRAWAL, 434_050, _REPORTED - timedelta(minutes=2)),
    )
    stopped = InstitutionAnswer(AnswerKind.STOPPED, 3_000_000, None, onward)
    closed = InstitutionAnswer(AnswerKind.NOT_FOUND, reason="account closed on 2026-11-19")
    answers = [
        ItemAnswer(
            r.idempotency_key,
            r.currency,
            r.amount,
            StopStatus(r.idempotency_key, StatusKind.ANSWERED, r.hold_id, outcome),
            code,
        )
        for r, outcome, code in ((first, stopped, None), (second, closed, "AC04"))
    ]
    return build_resolution(
        message_id="BK02-CAMT029-20261120-0001",
        created_at=answered,
        sender=INSTITUTION,
        receiver=SENDER,
        answers_message_id=recall.message_id,
        answers=answers,
    )


def sample_return(recall: Recall) -> ReturnInstruction:
    """The frozen 30,000.00 of the first account back to its two victims, pro rata (Returns)."""
    request = recall.items[0].request
    ordered = _OPENED + timedelta(days=2)
    order = OrderReturn(
        hold_id=request.hold_id,
        case_id=request.case_id,
        institution_code=request.institution_code,
        account_number=request.account_number,
        currency=request.currency,
        amount=3_000_000,
        legal_document_ref="PSB-ANTIFRAUD-01 return decision 2026-1187",
        payouts=(
            ReturnPayout("V1", _V1.institution_code, _V1.account_number, 2_514_143),
            ReturnPayout("V2", _V2.institution_code, _V2.account_number, 485_857),
        ),
        idempotency_key=f"stopper-return-{request.hold_id}-1",
        requested_at=ordered,
    )
    return ReturnInstruction(
        "STP20261122094201f0e1d2c3b4a5968778", ordered, SENDER, INSTITUTION, order
    )


def example(message: str) -> bytes:
    """The sample case's `message` (one of EXAMPLES), indented, checked against its schema."""
    recall = sample_recall()
    if message == "camt.056":
        document = build_recall(recall)
    elif message == "camt.029":
        document = _resolution(recall)
    elif message == "return":
        document = build_return_instruction(sample_return(recall))
    elif message == "pacs.004":
        instruction = sample_return(recall)
        document = build_payment_return(
            message_id="BK02-PACS004-20261122-0001",
            created_at=instruction.created_at + timedelta(minutes=20),
            sender=INSTITUTION,
            instruction=instruction,
            paid=[p.amount for p in instruction.order.payouts],
        )
    else:
        raise ValueError(f"no example of {message!r}: one of {', '.join(EXAMPLES)}")
    root = parse_document(document)
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"
