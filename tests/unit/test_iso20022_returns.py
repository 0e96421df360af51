"""Returns over ISO 20022: the return instruction (a camt.056, one TxInf per payout) is valid and
reads back to the order; the pacs.004 confirming it is valid and matched to the payouts (or
refused as unmatched); a camt.029 refusing it reads as a refused return."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stopper.adapters.institutions.iso20022 import (
    Message,
    PaymentReturn,
    ReturnedItem,
    ReturnInstruction,
    build_payment_return,
    build_return_instruction,
    build_return_rejection,
    match_payouts,
    message_of,
    parse_document,
    payout_ref,
    read_payment_return,
    read_return_answer,
    read_return_instruction,
)
from stopper.domain.messages import OrderAnswer, OrderReturn, ReturnPayout
from stopper.errors import XmlRefusal, XmlRefused

NOW = datetime(2025, 6, 3, 9, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).parents[1] / "data" / "iso20022"


def order(*amounts: int, legal: str = "Court order 2025/17") -> OrderReturn:
    hold_id = uuid4()
    payouts = tuple(
        ReturnPayout(f"V{i}", "BK02", f"622200000000000{i}", a) for i, a in enumerate(amounts, 1)
    )
    return OrderReturn(
        hold_id=hold_id,
        case_id=uuid4(),
        institution_code="BK01",
        account_number="6222111122223333",
        currency="CNY",
        amount=sum(amounts),
        legal_document_ref=legal,
        payouts=payouts,
        idempotency_key=f"stopper-return-{hold_id}-1",
        requested_at=NOW,
    )


def instruction(returned: OrderReturn) -> ReturnInstruction:
    return ReturnInstruction("RTN-0001", NOW, "STOPPER", "BK01", returned)


def confirm(sent: ReturnInstruction, *paid: int) -> bytes:
    return build_payment_return(
        message_id="PACS004-1", created_at=NOW, sender="BK01", instruction=sent, paid=paid
    )


def test_a_return_instruction_is_valid_and_reads_back_to_the_order() -> None:
    sent = instruction(order(100_000, 55_000, 1, legal="x" * 300))

    root = parse_document(build_return_instruction(sent))

    assert message_of(root) is Message.CAMT_056
    assert read_return_instruction(root) == sent


def test_a_return_instruction_names_each_payout_by_the_hold_and_its_place() -> None:
    sent = instruction(order(100_000, 55_000))
    xml = build_return_instruction(sent).decode()

    for index in (1, 2):
        ref = payout_ref(sent.order.hold_id, index)
        assert len(ref) <= 35
        assert f"<CxlId>{ref}</CxlId>" in xml
    assert f"<AddtlInf>/RTRN/{sent.order.idempotency_key}</AddtlInf>" in xml
    assert "<CtrlSum>1550.00</CtrlSum>" in xml


def test_a_return_instruction_whose_payouts_do_not_add_up_still_says_both() -> None:
    odd = dataclasses.replace(order(100_000, 55_000), amount=100_000)
    read = read_return_instruction(parse_document(build_return_instruction(instruction(odd))))

    assert read.order.amount == 100_000
    assert sum(p.amount for p in read.order.payouts) == 155_000


def test_a_recall_is_not_a_return_instruction() -> None:
    recall = (EXAMPLES / "camt.056.001.08_fraud-recall.xml").read_bytes()
    with pytest.raises(XmlRefused) as refused:
        read_return_instruction(parse_document(recall))
    assert refused.value.reason is XmlRefusal.INVALID


def test_a_pacs004_paying_every_payout_confirms_the_return() -> None:
    sent = instruction(order(100_000, 55_000))
    document = confirm(sent, 100_000, 55_000)

    root = parse_document(document)
    read = read_payment_return(root)

    assert read.answers_message_id == "RTN-0001"
    assert read.sender == "BK01"
    assert [(i.payout_ref, i.amount) for i in read.items] == [
        (payout_ref(sent.order.hold_id, 1), 100_000),
        (payout_ref(sent.order.hold_id, 2), 55_000),
    ]
    assert read_return_answer(root, sent.order) == OrderAnswer(True, 155_000)


def test_a_payout_paid_in_part_counts_what_was_paid() -> None:
    sent = instruction(order(100_000, 55_000))
    root = parse_document(confirm(sent, 100_000, 0))

    assert read_return_answer(root, sent.order) == OrderAnswer(True, 100_000)


def returned(sent: ReturnInstruction, *items: ReturnedItem) -> PaymentReturn:
    return PaymentReturn("P", NOW, "BK01", sent.message_id, items)


def item(sent: ReturnInstruction, index: int, amount: int, **changes: str) -> ReturnedItem:
    payout = sent.order.payouts[index - 1]
    fields = {
        "payout_ref": payout_ref(sent.order.hold_id, index),
        "currency": "CNY",
        "institution_code": payout.institution_code,
        "account_number": payout.account_number,
        **changes,
    }
    return ReturnedItem(amount=amount, return_id=None, **fields)


def test_a_pacs004_that_does_not_answer_the_payouts_is_unmatched() -> None:
    sent = instruction(order(100_000, 55_000))
    one, two = item(sent, 1, 100_000), item(sent, 2, 55_000)
    cases = {
        "a payout missing": (one,),
        "a payout twice": (one, one, two),
        "more than asked": (one, item(sent, 2, 55_001)),
        "another currency": (one, item(sent, 2, 55_000, currency="USD")),
        "another account": (one, item(sent, 2, 55_000, account_number="99999999")),
        "a stranger": (one, two, item(sent, 2, 1, payout_ref="someone-else")),
    }
    for why, items in cases.items():
        with pytest.raises(XmlRefused) as refused:
            match_payouts(sent.order, returned(sent, *items))
        assert refused.value.reason is XmlRefusal.UNMATCHED, why


def test_a_pacs004_without_the_victims_account_is_matched_by_reference() -> None:
    sent = instruction(order(100_000))
    bare = item(sent, 1, 100_000, institution_code="", account_number="")

    assert match_payouts(sent.order, returned(sent, bare)) == OrderAnswer(True, 100_000)


def test_the_shared_pacs004_example_reads() -> None:
    root = parse_document((EXAMPLES / "pacs.004.001.09_return-after-recall.xml").read_bytes())
    read = read_payment_return(root)

    assert read.message_id == "PACS004-20250601-0001"
    assert read.sender == "YYYYDEFFXXX"
    (only,) = read.items
    assert (only.amount, only.currency, only.return_id) == (455_000, "EUR", "RTR-20250601-0001")
    with pytest.raises(XmlRefused) as refused:  # it answers no order of Stopper's
        read_return_answer(root, order(455_000))
    assert refused.value.reason is XmlRefusal.UNMATCHED


def test_a_camt029_rejecting_the_return_reads_as_refused_with_the_reason() -> None:
    sent = instruction(order(100_000, 55_000))
    document = build_return_rejection(
        message_id="ASGN-9",
        created_at=NOW,
        sender="BK01",
        instruction=sent,
        code="LEGL",
        reason="no freeze in force here",
    )

    answer = read_return_answer(parse_document(document), sent.order)

    assert answer == OrderAnswer(False, 0, "LEGL legal decision: no freeze in force here")


def test_a_camt029_accepting_a_return_is_unmatched_money_goes_back_only_by_pacs004() -> None:
    accepted = (EXAMPLES / "camt.029.001.09_cancelled.xml").read_bytes()
    with pytest.raises(XmlRefused) as refused:
        read_return_answer(parse_document(accepted), order(455_000))
    assert refused.value.reason is XmlRefusal.UNMATCHED


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=100),
    st.text(min_size=1, max_size=300).filter(lambda s: all(c >= " " for c in s)),
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z"),
)
def test_any_return_order_round_trips_and_its_full_pacs004_matches(
    amounts: list[int], legal: str, victim: str
) -> None:
    base = order(*amounts, legal=legal)
    payouts = tuple(
        dataclasses.replace(p, victim_ref=f"{victim}{i}"[-128:]) for i, p in enumerate(base.payouts)
    )
    sent = instruction(dataclasses.replace(base, payouts=payouts))

    assert read_return_instruction(parse_document(build_return_instruction(sent))) == sent
    root = parse_document(confirm(sent, *amounts))
    assert read_return_answer(root, sent.order) == OrderAnswer(True, sum(amounts))


def test_a_return_instruction_of_more_payouts_than_references_hold_is_refused() -> None:
    sent = instruction(order(*([1] * 999)))
    document = build_return_instruction(sent)
    assert len(read_return_instruction(parse_document(document)).order.payouts) == 999
    last = document[document.rindex(b"<TxInf>") : document.rindex(b"</TxInf>") + len(b"</TxInf>")]
    one_more = document.replace(b"</Undrlyg>", last + b"</Undrlyg>")

    with pytest.raises(XmlRefused) as refused:
        read_return_instruction(parse_document(one_more))
    assert refused.value.reason is XmlRefusal.INVALID
    assert "TxInf[1000]" in refused.value.detail
    with pytest.raises(ValueError):
        build_return_instruction(instruction(order(*([1] * 1000))))
