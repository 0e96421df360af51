"""The ISO 20022 codec: camt.056 written and read back, camt.029 statuses and reasons mapped both
ways (and the ones refused), the shared examples read, and Stopper's ids in 35 characters."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from stopper.adapters.institutions.iso20022 import (
    ItemAnswer,
    ItemRefusal,
    Message,
    OriginalPayment,
    Recall,
    RecallItem,
    ResolvedItem,
    build_recall,
    build_resolution,
    cxl_id_for,
    key_for_cxl_id,
    message_of,
    parse_document,
    read_recall,
    read_resolution,
)
from stopper.adapters.institutions.iso20022.codes import PENDING_REASONS, REJECTION_REASONS
from stopper.adapters.institutions.iso20022.fields import stop_key_for_cxl_id
from stopper.domain.holds import idempotency_key_for
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OnwardKind,
    OnwardTransfer,
    RequestStop,
    StatusKind,
    StopStatus,
    SupplementOf,
)
from stopper.domain.supplements import supplement_key_for
from stopper.errors import XmlRefusal, XmlRefused

# The valid examples shipped with the schemas (tests/data/iso20022/README.md).
EXAMPLES = Path(__file__).parents[1] / "data" / "iso20022"
NOW = datetime(2025, 6, 1, 10, 15, tzinfo=UTC)
CAMT_029 = Message.CAMT_029.namespace


def stop_request(amount: int = 455_000, generation: int = 0, layer: int = 1) -> RequestStop:
    hold_id = uuid4()
    return RequestStop(
        hold_id=hold_id,
        case_id=uuid4(),
        institution_code="BK01",
        account_number="6222111122223333",
        currency="CNY",
        amount=amount,
        layer=layer,
        idempotency_key=idempotency_key_for(hold_id, generation),
        generation=generation,
        requested_at=NOW,
    )


def payment(amount: int = 455_000, reference: str | None = "fake investment") -> OriginalPayment:
    return OriginalPayment(
        reference=reference,
        amount=amount,
        currency="CNY",
        settled_at=NOW - timedelta(minutes=30),
        debtor_institution="BK02",
        debtor_account="6222000000000001",
        creditor_institution="BK01",
        creditor_account="6222111122223333",
    )


def recall(*items: RecallItem) -> Recall:
    return Recall("MSG-0001", NOW, "STOPPER", "BK01", items)


def test_a_recall_is_valid_and_reads_back_to_the_same_items() -> None:
    one = RecallItem(stop_request(), (payment(),), "PSB-SZ")
    several = RecallItem(
        stop_request(300_000, generation=2, layer=3),
        (payment(100_000), payment(250_000, None)),
        "PSB-SZ",
        'Court order 2025/17 <& "quoted">',
    )
    none = RecallItem(stop_request(1), (), "PSB-SZ")
    sent = recall(one, several, none)

    root = parse_document(build_recall(sent))  # parse_document validates against the schema

    assert message_of(root) is Message.CAMT_056
    assert read_recall(root) == sent


def test_a_recall_names_the_reason_case_and_account_where_iso_puts_them() -> None:
    item = RecallItem(stop_request(), (payment(),), "PSB-SZ")
    xml = build_recall(recall(item)).decode()

    assert "<Rsn><Cd>FRAD</Cd></Rsn>" in xml
    assert f"<CxlId>{cxl_id_for(item.request.idempotency_key)}</CxlId>" in xml
    assert f"<AddtlInf>/CASE/{item.request.case_id}</AddtlInf>" in xml
    assert "<Orgtr><Nm>PSB-SZ</Nm></Orgtr>" in xml
    assert '<OrgnlIntrBkSttlmAmt Ccy="CNY">4550.00</OrgnlIntrBkSttlmAmt>' in xml
    assert "<CdtrAcct><Id><Othr><Id>6222111122223333</Id></Othr></Id></CdtrAcct>" in xml


def test_a_recall_of_nothing_or_with_a_foreign_key_is_a_bug() -> None:
    with pytest.raises(ValueError):
        build_recall(recall())
    odd_key = dataclasses.replace(stop_request(), idempotency_key="someone-else")
    with pytest.raises(ValueError):
        build_recall(recall(RecallItem(odd_key, (), "PSB-SZ")))


@pytest.mark.parametrize("generation", [0, 1, 2, 99])
def test_the_idempotency_key_survives_as_a_cxl_id(generation: int) -> None:
    hold_id = uuid4()
    key = idempotency_key_for(hold_id, generation)
    cxl_id = cxl_id_for(key)

    assert len(cxl_id) <= 35
    assert cxl_id == f"{hold_id.hex}-{generation}"
    assert key_for_cxl_id(cxl_id) == (key, hold_id, generation)


@pytest.mark.parametrize(
    "cxl_id", ["CXL-20250601-0001", "", f"{uuid4().hex}-01", f"{uuid4().hex}-100", "x" * 35]
)
def test_a_cxl_id_stopper_never_writes_is_not_a_key(cxl_id: str) -> None:
    assert key_for_cxl_id(cxl_id) is None


def test_a_generation_beyond_two_digits_does_not_fit() -> None:
    with pytest.raises(ValueError):
        cxl_id_for(idempotency_key_for(uuid4(), 100))


# --- camt.029 -------------------------------------------------------------------------------


def answered(answer: InstitutionAnswer, amount_asked: int = 455_000) -> ItemAnswer:
    hold_id = uuid4()
    key = idempotency_key_for(hold_id, 0)
    return ItemAnswer(
        key, "CNY", amount_asked, StopStatus(key, StatusKind.ANSWERED, hold_id, answer)
    )


def resolution_of(*answers: ItemAnswer) -> bytes:
    return build_resolution(
        message_id="ASGN-1",
        created_at=NOW,
        sender="BK01",
        receiver="STOPPER",
        answers_message_id="MSG-0001",
        answers=answers,
    )


def test_each_answer_kind_reads_back_as_the_same_domain_status() -> None:
    onward = (
        OnwardTransfer(OnwardKind.TRANSFER, 100_000, NOW, "BK02", "6222999988887777"),
        OnwardTransfer(OnwardKind.CASH_WITHDRAWAL, 55_000, NOW - timedelta(minutes=3)),
    )
    stopped = answered(InstitutionAnswer(AnswerKind.STOPPED, 300_000, None, onward))
    empty = answered(InstitutionAnswer(AnswerKind.STOPPED, 0))
    not_found = answered(InstitutionAnswer(AnswerKind.NOT_FOUND))
    rejected = answered(InstitutionAnswer(AnswerKind.REJECTED, reason="under another order"))
    pending_id = uuid4()
    pending_key = idempotency_key_for(pending_id, 1)
    pending = ItemAnswer(
        pending_key, "CNY", 10, StopStatus(pending_key, StatusKind.PENDING, pending_id)
    )

    read = read_resolution(
        parse_document(resolution_of(stopped, empty, not_found, rejected, pending))
    )

    assert read.message_id == "ASGN-1"
    assert read.answers_message_id == "MSG-0001"
    assert read.sender == "BK01"
    assert [i.status for i in read.items] == [
        stopped.status,
        empty.status,
        StopStatus(
            not_found.idempotency_key,
            StatusKind.ANSWERED,
            not_found.status.hold_id,
            InstitutionAnswer(AnswerKind.NOT_FOUND, None, "AC01 incorrect account number"),
        ),
        StopStatus(
            rejected.idempotency_key,
            StatusKind.ANSWERED,
            rejected.status.hold_id,
            InstitutionAnswer(
                AnswerKind.REJECTED, None, "LEGL legal decision: under another order"
            ),
        ),
        pending.status,
    ]
    assert all(i.refusal is None for i in read.items)


def transaction(status: str, *, reason: str | None = None, extra: str = "") -> bytes:
    """A camt.029 with one TxInfAndSts of `status` and `reason`, as another bank might write."""
    hold_id = UUID("8a562c67-ca16-48ba-b074-65581be6f011")
    rsn = f"<CxlStsRsnInf>{reason}</CxlStsRsnInf>" if reason is not None else ""
    return (
        f'<Document xmlns="{CAMT_029}"><RsltnOfInvstgtn><Assgnmt><Id>A</Id>'
        "<Assgnr><Agt><FinInstnId><BICFI>YYYYDEFFXXX</BICFI></FinInstnId></Agt></Assgnr>"
        "<Assgne><Agt><FinInstnId><BICFI>ZZZZGB2LXXX</BICFI></FinInstnId></Agt></Assgne>"
        "<CreDtTm>2025-06-01T11:05:00Z</CreDtTm></Assgnmt>"
        f"<Sts><Conf>CNCL</Conf></Sts><CxlDtls><TxInfAndSts><RslvdCase><Id>{hold_id.hex}-0</Id>"
        "<Cretr><Pty><Nm>Stopper</Nm></Pty></Cretr></RslvdCase>"
        f"<TxCxlSts>{status}</TxCxlSts>{rsn}{extra}"
        '<OrgnlIntrBkSttlmAmt Ccy="EUR">4550.00</OrgnlIntrBkSttlmAmt>'
        "</TxInfAndSts></CxlDtls></RsltnOfInvstgtn></Document>"
    ).encode()


def read_one(document: bytes) -> ResolvedItem:
    (item,) = read_resolution(parse_document(document)).items
    assert item.hold_id == UUID("8a562c67-ca16-48ba-b074-65581be6f011")
    assert item.idempotency_key == "stopper-8a562c67-ca16-48ba-b074-65581be6f011-0"
    assert (item.status is None) != (item.refusal is None)
    return item


@pytest.mark.parametrize(("code", "mapped"), sorted(REJECTION_REASONS.items()))
def test_every_rejection_reason_maps_to_its_kind(code: str, mapped: tuple[AnswerKind, str]) -> None:
    item = read_one(
        transaction("RJCR", reason=f"<Rsn><Cd>{code}</Cd></Rsn><AddtlInf>why</AddtlInf>")
    )

    assert item.status is not None and item.status.answer is not None
    assert item.status.kind is StatusKind.ANSWERED
    assert item.status.answer.kind is mapped[0]
    assert item.status.answer.reason == f"{code} {mapped[1]}: why"


def test_the_table_sends_closed_and_wrong_accounts_to_not_found_and_refusals_to_rejected() -> None:
    not_found = {c for c, (k, _) in REJECTION_REASONS.items() if k is AnswerKind.NOT_FOUND}
    assert not_found == {"AC01", "AC03", "AC04"}
    rejected = {c for c, (k, _) in REJECTION_REASONS.items() if k is AnswerKind.REJECTED}
    assert {"LEGL", "CUST", "NOAS", "ARDT", "AM04"} <= rejected


@pytest.mark.parametrize("code", [None, *sorted(PENDING_REASONS)])
def test_pending_with_or_without_a_known_reason_is_pending(code: str | None) -> None:
    reason = f"<Rsn><Cd>{code}</Cd></Rsn>" if code else None
    item = read_one(transaction("PDCR", reason=reason))

    assert item.status is not None and item.status.kind is StatusKind.PENDING


def test_accepted_without_a_resolution_amount_holds_all_that_was_asked() -> None:
    item = read_one(transaction("ACCR"))

    assert item.status is not None and item.status.answer is not None
    assert item.status.answer == InstitutionAnswer(AnswerKind.STOPPED, 455_000)


def test_accepted_with_a_resolution_amount_holds_that_amount() -> None:
    partial = '<RsltnRltdInf><IntrBkSttlmAmt Ccy="EUR">12.34</IntrBkSttlmAmt></RsltnRltdInf>'
    item = read_one(transaction("ACCR", extra=partial))

    assert item.status is not None and item.status.answer is not None
    assert item.status.answer.amount_held == 1234


@pytest.mark.parametrize(
    ("status", "reason", "extra", "refusal"),
    [
        ("RJCR", "<Rsn><Cd>XXXX</Cd></Rsn>", "", ItemRefusal.UNKNOWN_REASON_CODE),
        ("RJCR", "<Rsn><Cd>FRAD</Cd></Rsn>", "", ItemRefusal.UNKNOWN_REASON_CODE),
        ("RJCR", "<Rsn><Prtry>OURS</Prtry></Rsn>", "", ItemRefusal.UNKNOWN_REASON_CODE),
        ("PDCR", "<Rsn><Cd>ZZZZ</Cd></Rsn>", "", ItemRefusal.UNKNOWN_REASON_CODE),
        ("RJCR", None, "", ItemRefusal.NO_REASON),
        ("RJCR", "<AddtlInf>no code</AddtlInf>", "", ItemRefusal.NO_REASON),
        (
            "ACCR",
            None,
            '<RsltnRltdInf><IntrBkSttlmAmt Ccy="EUR">1.001</IntrBkSttlmAmt></RsltnRltdInf>',
            ItemRefusal.BAD_AMOUNT,
        ),
        (
            "ACCR",
            None,
            '<RsltnRltdInf><IntrBkSttlmAmt Ccy="USD">1.00</IntrBkSttlmAmt></RsltnRltdInf>',
            ItemRefusal.BAD_AMOUNT,
        ),
    ],
)
def test_what_cannot_be_read_is_refused_with_a_counted_reason(
    status: str, reason: str | None, extra: str, refusal: ItemRefusal
) -> None:
    item = read_one(transaction(status, reason=reason, extra=extra))

    assert item.status is None
    assert item.refusal is refusal
    assert item.detail


def test_an_unknown_code_is_named_in_the_detail_but_a_strange_one_is_not() -> None:
    assert "XXXX" in (read_one(transaction("RJCR", reason="<Rsn><Cd>XXXX</Cd></Rsn>")).detail or "")
    detail = read_one(transaction("RJCR", reason="<Rsn><Cd>a&lt;b</Cd></Rsn>")).detail or ""
    assert "<" not in detail


def test_a_transaction_without_its_own_status_takes_the_messages() -> None:
    document = transaction("ACCR").replace(b"<TxCxlSts>ACCR</TxCxlSts>", b"")
    item = read_one(document)
    assert item.status is not None and item.status.answer is not None
    assert item.status.answer.kind is AnswerKind.STOPPED

    modified = document.replace(b"<Conf>CNCL</Conf>", b"<Conf>MODI</Conf>")
    assert read_one(modified).refusal is ItemRefusal.NO_STATUS


# --- the shared examples --------------------------------------------------------------------


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.xml")))
def test_every_example_passes_the_official_schema(name: str) -> None:
    root = parse_document(example(name))
    assert message_of(root).value == name.split("_")[0]


def test_the_cancelled_example_reads_as_stopped_with_all_of_it_held() -> None:
    read = read_resolution(parse_document(example("camt.029.001.09_cancelled.xml")))

    assert read.message_id == "ASGN-20250601-0102"
    assert read.sender == "YYYYDEFFXXX"
    (item,) = read.items
    assert item.idempotency_key == "CASE-FRAUD-0001"  # not one of Stopper's: no hold
    assert item.hold_id is None
    assert item.status is not None and item.status.answer is not None
    assert item.status.answer == InstitutionAnswer(AnswerKind.STOPPED, 455_000)


def test_the_rejected_example_reads_as_not_found_with_the_banks_words() -> None:
    read = read_resolution(parse_document(example("camt.029.001.09_rejected-AC04.xml")))

    (item,) = read.items
    assert item.status is not None and item.status.answer is not None
    assert item.status.answer.kind is AnswerKind.NOT_FOUND
    assert item.status.answer.reason == (
        "AC04 closed account number: Beneficiary account closed, funds no longer held"
    )


@pytest.mark.parametrize(
    "name",
    ["camt.056.001.08_fraud-recall.xml", "camt.056.001.08_fraud-recall-two-transactions.xml"],
)
def test_a_recall_not_written_by_stopper_is_refused_naming_the_transaction(name: str) -> None:
    with pytest.raises(XmlRefused) as refused:
        read_recall(parse_document(example(name)))
    assert refused.value.reason is XmlRefusal.INVALID
    assert "TxInf[1]" in refused.value.detail


# xs:dateTime values the schema accepts and Python's datetime cannot hold.
UNREADABLE_TIMES = ["2025-06-01T24:00:00Z", "12025-06-01T11:05:00Z", "-2025-06-01T11:05:00Z"]


@pytest.mark.parametrize("at", UNREADABLE_TIMES)
def test_a_message_time_python_cannot_hold_is_a_refusal_not_a_crash(at: str) -> None:
    document = example("camt.029.001.09_cancelled.xml").replace(
        b"2025-06-01T11:05:00Z", at.encode()
    )
    with pytest.raises(XmlRefused) as refused:
        read_resolution(parse_document(document))
    assert refused.value.reason is XmlRefusal.INVALID
    assert "CreDtTm" in refused.value.detail


@pytest.mark.parametrize("at", UNREADABLE_TIMES)
def test_an_onward_transfer_at_a_time_python_cannot_hold_is_refused_alone(at: str) -> None:
    onward = (OnwardTransfer(OnwardKind.CASH_WITHDRAWAL, 1, NOW),)
    sent = answered(InstitutionAnswer(AnswerKind.STOPPED, 5, None, onward))
    document = resolution_of(sent, answered(InstitutionAnswer(AnswerKind.NOT_FOUND)))
    document = document.replace(
        f"<DtTm>{NOW.isoformat()}</DtTm>".encode(), f"<DtTm>{at}</DtTm>".encode()
    )

    first, second = read_resolution(parse_document(document)).items

    assert first.refusal is ItemRefusal.BAD_ONWARD
    assert second.status is not None


def test_times_are_read_in_utc_and_without_an_offset_as_utc() -> None:
    document = example("camt.029.001.09_cancelled.xml")
    local = document.replace(b"2025-06-01T11:05:00Z", b"2025-06-01T19:05:00+08:00")
    bare = document.replace(b"2025-06-01T11:05:00Z", b"2025-06-01T11:05:00")

    for variant in (document, local, bare):
        created = read_resolution(parse_document(variant)).created_at
        assert created == datetime(2025, 6, 1, 11, 5, tzinfo=UTC)
        assert created.utcoffset() == timedelta(0)


def test_a_known_mule_is_said_in_its_own_addtlinf_line_and_reads_back() -> None:
    mule = RecallItem(dataclasses.replace(stop_request(), mule_cases=3), (payment(),), "PSB-SZ")
    plain = RecallItem(stop_request(), (payment(),), "PSB-SZ")
    sent = recall(mule, plain)
    xml = build_recall(sent)
    assert xml.decode().count("<AddtlInf>/MULE/3</AddtlInf>") == 1
    assert read_recall(parse_document(xml)) == sent  # valid against the schema, and read back


@pytest.mark.parametrize("line", ["/MULE/1", "/MULE/11", "/MULE/x", "/MULE/²"])
def test_a_mule_line_that_is_no_count_of_cases_is_refused(line: str) -> None:
    item = RecallItem(dataclasses.replace(stop_request(), mule_cases=2), (), "PSB-SZ")
    xml = build_recall(recall(item)).replace(b"/MULE/2", line.encode())
    with pytest.raises(XmlRefused) as refused:
        read_recall(parse_document(xml))
    assert refused.value.reason is XmlRefusal.INVALID and "/MULE/" in refused.value.detail


# --- supplements ------------------------------------------------------------------------------


def supplement_request(first: RequestStop, number: int = 1, amount: int = 120_000) -> RequestStop:
    """The `number`-th supplement of `first`'s hold: `amount` more on that stop."""
    return dataclasses.replace(
        first,
        amount=amount,
        idempotency_key=supplement_key_for(first.hold_id, number),
        supplement=SupplementOf(number, first.idempotency_key, uuid4()),
    )


@pytest.mark.parametrize("generation", [0, 2])
def test_a_supplement_is_a_valid_txinf_of_the_extra_naming_the_same_payments(
    generation: int,
) -> None:
    first = stop_request(generation=generation)
    paid = (payment(), payment(200_000, None))
    extra = supplement_request(first, 7)
    sent = recall(RecallItem(first, paid, "PSB-SZ"), RecallItem(extra, paid, "PSB-SZ"))

    xml = build_recall(sent)
    root = parse_document(xml)  # valid against the official schema

    assert read_recall(root) == sent
    text = xml.decode()
    assert f"<CxlId>{first.hold_id.hex}S7</CxlId>" in text
    assert f"<AddtlInf>/SPLM/{first.hold_id.hex}-{generation}</AddtlInf>" in text
    assert f"<AddtlInf>/MRGD/{extra.supplement.merged_from}</AddtlInf>" in text  # type: ignore[union-attr]
    assert '<OrgnlIntrBkSttlmAmt Ccy="CNY">1200.00</OrgnlIntrBkSttlmAmt>' in text
    assert "<CtrlSum>5750.00</CtrlSum>" in text
    assert text.count("<RmtInf><Ustrd>fake investment</Ustrd></RmtInf>") == 0  # two payments
    assert text.count("<Pmts ") == 2  # both TxInf name the same original payments


@pytest.mark.parametrize("number", [1, 42, 99])
def test_a_supplement_s_key_survives_as_a_cxl_id_and_back(number: int) -> None:
    hold_id = uuid4()
    key = supplement_key_for(hold_id, number)
    cxl_id = cxl_id_for(key)

    assert len(cxl_id) <= 35 and cxl_id == f"{hold_id.hex}S{number}"
    assert stop_key_for_cxl_id(cxl_id) == (key, hold_id)
    assert key_for_cxl_id(cxl_id) is None  # not a first request's
    assert stop_key_for_cxl_id(cxl_id_for(idempotency_key_for(hold_id, 1))) == (
        idempotency_key_for(hold_id, 1),
        hold_id,
    )


@pytest.mark.parametrize("cxl_id", [f"{uuid4().hex}S0", f"{uuid4().hex}S100", f"{uuid4().hex}S01"])
def test_a_supplement_cxl_id_stopper_never_writes_is_not_a_key(cxl_id: str) -> None:
    assert stop_key_for_cxl_id(cxl_id) is None


def test_a_supplement_without_what_it_adds_to_is_refused() -> None:
    first = stop_request()
    extra = supplement_request(first)
    xml = build_recall(recall(RecallItem(extra, (), "PSB-SZ"))).decode()
    broken = xml.replace(f"<AddtlInf>/SPLM/{first.hold_id.hex}-0</AddtlInf>", "")
    with pytest.raises(XmlRefused) as refused:
        read_recall(parse_document(broken.encode()))
    assert "/SPLM/" in refused.value.detail


def test_an_answer_to_a_supplement_reads_back_under_the_supplement_s_key() -> None:
    hold_id = uuid4()
    key = supplement_key_for(hold_id, 3)
    onward = (OnwardTransfer(OnwardKind.TRANSFER, 20_000, NOW, "BK02", "6222999988887777"),)
    answer = InstitutionAnswer(AnswerKind.STOPPED, 100_000, None, onward)
    item = ItemAnswer(key, "CNY", 120_000, StopStatus(key, StatusKind.ANSWERED, hold_id, answer))

    [read] = read_resolution(parse_document(resolution_of(item))).items

    assert (read.idempotency_key, read.hold_id) == (key, hold_id)
    assert read.status == item.status
