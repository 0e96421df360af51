"""Properties of the ISO 20022 codec: any hold and any batch make a camt.056 that the official
schema accepts and that reads back to the same items; any answers an institution gives make a
valid camt.029 that reads back to the same statuses; and any schema-valid camt.029 becomes a
domain status or a counted refusal for each of its transactions, as the code table says."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stopper.adapters.institutions.iso20022 import (
    ItemAnswer,
    ItemRefusal,
    Message,
    OriginalPayment,
    Recall,
    RecallItem,
    build_recall,
    build_resolution,
    parse_document,
    read_recall,
    read_resolution,
)
from stopper.adapters.institutions.iso20022.codes import (
    DEFAULT_REJECTION_CODES,
    PENDING_REASONS,
    REJECTION_REASONS,
)
from stopper.domain.holds import idempotency_key_for
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OnwardKind,
    OnwardTransfer,
    RequestStop,
    StatusKind,
    StopStatus,
)
from stopper.errors import XmlRefusal, XmlRefused

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

codes = st.from_regex(r"\A[A-Z0-9]{2,12}\Z")
accounts = st.from_regex(r"\A[A-Za-z0-9]{4,34}\Z")
currencies = st.sampled_from(["CNY", "HKD", "USD", "EUR", "GBP"])
amounts = st.integers(min_value=1, max_value=10**14)
identifiers = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
# Text as reports carry it: any character XML 1.0 can hold (a carriage return too).
xml_text = st.characters(
    exclude_categories=["Cs"],
    exclude_characters="".join(map(chr, [*range(0, 9), 11, 12, *range(14, 32)])) + "\ufffe\uffff",
)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))])
times = st.builds(
    lambda at, tz: at.replace(tzinfo=UTC).astimezone(tz),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    offsets,
)


@st.composite
def stop_requests(draw: st.DrawFn) -> RequestStop:
    hold_id = draw(st.uuids(version=4))
    generation = draw(st.integers(min_value=0, max_value=99))
    return RequestStop(
        hold_id=hold_id,
        case_id=draw(st.uuids()),
        institution_code=draw(codes),
        account_number=draw(accounts),
        currency=draw(currencies),
        amount=draw(amounts),
        layer=draw(st.integers(min_value=1, max_value=9)),
        idempotency_key=idempotency_key_for(hold_id, generation),
        generation=generation,
        requested_at=draw(times),
    )


payments = st.builds(
    OriginalPayment,
    reference=st.none() | st.text(xml_text, min_size=1, max_size=140),
    amount=amounts,
    currency=currencies,
    settled_at=times,
    debtor_institution=codes,
    debtor_account=accounts,
    creditor_institution=codes,
    creditor_account=accounts,
)
recall_items = st.builds(
    RecallItem,
    request=stop_requests(),
    payments=st.lists(payments, max_size=4).map(tuple),
    agency_code=identifiers,
    legal_basis=st.text(xml_text, min_size=1, max_size=99),
)
recalls = st.builds(
    Recall,
    message_id=st.text(xml_text, min_size=1, max_size=35),
    created_at=times,
    sender=st.from_regex(r"\A[A-Za-z0-9-]{1,35}\Z"),
    receiver=codes,
    items=st.lists(recall_items, min_size=1, max_size=8, unique_by=lambda i: i.request.hold_id).map(
        tuple
    ),
)


@SETTINGS
@given(recalls)
def test_any_batch_makes_a_valid_camt056_that_reads_back_to_the_same_items(
    recall: Recall,
) -> None:
    root = parse_document(build_recall(recall))  # refused unless the schema accepts it
    assert read_recall(root) == recall


onward_transfers = st.one_of(
    st.builds(
        OnwardTransfer,
        kind=st.just(OnwardKind.TRANSFER),
        amount=amounts,
        transferred_at=times,
        institution_code=codes,
        account_number=accounts,
    ),
    st.builds(
        OnwardTransfer,
        kind=st.just(OnwardKind.CASH_WITHDRAWAL),
        amount=amounts,
        transferred_at=times,
    ),
)
outcomes = st.one_of(
    st.builds(
        InstitutionAnswer,
        kind=st.just(AnswerKind.STOPPED),
        amount_held=st.integers(min_value=0, max_value=10**14),
        onward=st.lists(onward_transfers, max_size=3).map(tuple),
    ),
    st.builds(
        InstitutionAnswer,
        kind=st.sampled_from([AnswerKind.NOT_FOUND, AnswerKind.REJECTED]),
        reason=st.none() | st.text(xml_text, min_size=1, max_size=400),
    ),
    st.none(),  # pending
)


@st.composite
def item_answers(draw: st.DrawFn) -> ItemAnswer:
    hold_id = draw(st.uuids(version=4))
    key = idempotency_key_for(hold_id, draw(st.integers(min_value=0, max_value=99)))
    outcome = draw(outcomes)
    status = (
        StopStatus(key, StatusKind.PENDING, hold_id)
        if outcome is None
        else StopStatus(key, StatusKind.ANSWERED, hold_id, outcome)
    )
    return ItemAnswer(key, draw(currencies), draw(amounts), status)


@SETTINGS
@given(
    st.lists(item_answers(), min_size=1, max_size=8),
    st.none() | st.text(xml_text, min_size=1, max_size=35),
)
def test_any_answers_make_a_valid_camt029_that_reads_back_to_the_same_statuses(
    answers: list[ItemAnswer], answers_message_id: str | None
) -> None:
    document = build_resolution(
        message_id="A-1",
        created_at=datetime.now(UTC),
        sender="BK01",
        receiver="STOPPER",
        answers_message_id=answers_message_id,
        answers=answers,
    )
    read = read_resolution(parse_document(document))

    assert read.answers_message_id == answers_message_id
    assert len(read.items) == len(answers)
    for sent, item in zip(answers, read.items, strict=True):
        assert item.refusal is None and item.status is not None
        assert item.idempotency_key == sent.idempotency_key
        assert item.hold_id == sent.status.hold_id
        said = sent.status.answer
        if said is None or said.kind is AnswerKind.STOPPED:
            assert item.status == sent.status
            continue
        code = DEFAULT_REJECTION_CODES[said.kind]
        reason = f"{code} {REJECTION_REASONS[code][1]}" + (
            f": {said.reason}" if said.reason else ""
        )
        assert item.status.answer == InstitutionAnswer(said.kind, None, reason[:500])


# --- any schema-valid camt.029 ---------------------------------------------------------------

NS = Message.CAMT_029.namespace
KNOWN = sorted({*REJECTION_REASONS, *PENDING_REASONS})
reason_codes = st.sampled_from(KNOWN) | st.from_regex(r"\A[A-Z0-9]{1,4}\Z")


@st.composite
def amount_elements(draw: st.DrawFn, name: str) -> str:
    whole = draw(st.integers(min_value=0, max_value=10**12))
    places = draw(st.integers(min_value=0, max_value=5))
    fraction = draw(st.integers(min_value=0, max_value=10**places - 1)) if places else 0
    value = f"{whole}.{fraction:0{places}d}" if places else str(whole)
    currency = draw(st.sampled_from(["EUR", "CNY", "JPY"]))
    return f'<{name} Ccy="{currency}">{value}</{name}>'


@st.composite
def transactions(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    facts: dict[str, object] = {}
    hold_id = draw(st.uuids(version=4))
    case = draw(st.sampled_from([f"{hold_id.hex}-0", f"{hold_id.hex}-7", "CASE-FRAUD-1", None]))
    status = draw(st.sampled_from(["ACCR", "RJCR", "PDCR", None]))
    reason = draw(
        st.none()
        | reason_codes.map(lambda c: f"<Rsn><Cd>{c}</Cd></Rsn>")
        | st.just("<Rsn><Prtry>OWN</Prtry></Rsn>")
        | st.just("<AddtlInf>words only</AddtlInf>")
    )
    held = draw(st.none() | amount_elements("IntrBkSttlmAmt"))
    asked = draw(st.none() | amount_elements("OrgnlIntrBkSttlmAmt"))
    facts.update(case=case, status=status, reason=reason, held=held, asked=asked)
    parts = ["<TxInfAndSts>"]
    if case is not None:
        parts.append(f"<RslvdCase><Id>{case}</Id><Cretr><Pty><Nm>S</Nm></Pty></Cretr></RslvdCase>")
    if status is not None:
        parts.append(f"<TxCxlSts>{status}</TxCxlSts>")
    if reason is not None:
        parts.append(f"<CxlStsRsnInf>{reason}</CxlStsRsnInf>")
    if held is not None:
        parts.append(f"<RsltnRltdInf>{held}</RsltnRltdInf>")
    if asked is not None:
        parts.append(asked)
    parts.append("</TxInfAndSts>")
    return "".join(parts), facts


# Times the schema accepts, some of which Python's datetime cannot hold (refused, not a crash).
created_times = st.sampled_from(
    [
        "2025-06-01T11:05:00",
        "2025-06-01T11:05:00.123456789Z",
        "2025-06-01T19:05:00+08:00",
        "2025-06-01T24:00:00Z",
        "12025-06-01T11:05:00Z",
    ]
)


@st.composite
def resolutions(draw: st.DrawFn) -> tuple[bytes, str, str | None, list[dict[str, object]]]:
    confirmation = draw(st.sampled_from(["CNCL", "RJCR", "PDCR", "PECR", "MODI"]))
    found = draw(st.lists(transactions(), max_size=5))
    message_case = draw(st.none() | st.just("0123456789abcdef0123456789abcdef-1"))
    head = (
        f'<Document xmlns="{NS}"><RsltnOfInvstgtn><Assgnmt><Id>A</Id>'
        "<Assgnr><Agt><FinInstnId><BICFI>YYYYDEFFXXX</BICFI></FinInstnId></Agt></Assgnr>"
        "<Assgne><Pty><Nm>Stopper</Nm></Pty></Assgne>"
        f"<CreDtTm>{draw(created_times)}</CreDtTm>"
        "</Assgnmt>"
    )
    if message_case is not None:
        head += (
            f"<RslvdCase><Id>{message_case}</Id><Cretr><Pty><Nm>S</Nm></Pty></Cretr></RslvdCase>"
        )
    body = head + f"<Sts><Conf>{confirmation}</Conf></Sts>"
    if found:
        body += "<CxlDtls>" + "".join(t for t, _ in found) + "</CxlDtls>"
    body += "</RsltnOfInvstgtn></Document>"
    return body.encode(), confirmation, message_case, [f for _, f in found]


_AMOUNT = re.compile(r'Ccy="([A-Z]{3})">([0-9.]+)<')


def _minor(element: object) -> tuple[str, int | None]:
    """What an amount element generated above says: currency, minor units (None: too precise)."""
    match = _AMOUNT.search(str(element))
    assert match is not None
    currency, value = match.groups()
    minor = Decimal(value).scaleb(0 if currency == "JPY" else 2)
    return currency, int(minor) if minor == minor.to_integral_value() else None


@SETTINGS
@given(resolutions())
def test_any_valid_camt029_becomes_a_status_or_a_counted_refusal_per_transaction(
    generated: tuple[bytes, str, str | None, list[dict[str, object]]],
) -> None:
    document, confirmation, message_case, facts = generated
    root = parse_document(document)  # generated valid: the schema accepts it
    try:
        read = read_resolution(root)
    except XmlRefused as refused:  # a clear refusal of the whole message, never a crash
        assert refused.reason is XmlRefusal.INVALID and "CreDtTm" in refused.detail
        return

    assert len(read.items) == (len(facts) if facts else (1 if message_case else 0))
    for item in read.items:
        assert (item.status is None) != (item.refusal is None)
        assert item.refusal is None or item.detail
        if item.hold_id is not None:
            assert item.idempotency_key.startswith(f"stopper-{item.hold_id}-")
    for fact, item in zip(facts, read.items, strict=False):
        assert item.refusal is None or item.refusal is _expected(fact, confirmation)[0]
        assert item.refusal is not None or _expected(fact, confirmation)[1] == (
            item.status.kind if item.status else None,
            item.status.answer.kind if item.status and item.status.answer else None,
            item.status.answer.amount_held if item.status and item.status.answer else None,
        )


def _expected(
    fact: dict[str, object], confirmation: str
) -> tuple[ItemRefusal | None, tuple[StatusKind, AnswerKind | None, int | None] | None]:
    """The refusal, or the (status, answer kind, amount held), the code table makes of `fact`."""
    status = fact["status"] or {"CNCL": "ACCR", "RJCR": "RJCR", "PDCR": "PDCR"}.get(confirmation)
    reason = str(fact["reason"] or "")
    code = reason[len("<Rsn><Cd>") : -len("</Cd></Rsn>")] if "<Cd>" in reason else None
    proprietary = "<Prtry>" in reason
    if status is None:
        return ItemRefusal.NO_STATUS, None
    if status == "PDCR":
        if (code is not None and code not in KNOWN) or proprietary:
            return ItemRefusal.UNKNOWN_REASON_CODE, None
        return None, (StatusKind.PENDING, None, None)
    if status == "RJCR":
        if code is None:
            return (ItemRefusal.UNKNOWN_REASON_CODE if proprietary else ItemRefusal.NO_REASON), None
        if code not in REJECTION_REASONS:
            return ItemRefusal.UNKNOWN_REASON_CODE, None
        return None, (StatusKind.ANSWERED, REJECTION_REASONS[code][0], None)
    held, asked = fact["held"], fact["asked"]
    said = held if held is not None else asked
    if said is None:
        return ItemRefusal.NO_AMOUNT, None
    currency, minor = _minor(said)
    if minor is None or (held is not None and asked is not None and _minor(asked)[0] != currency):
        return ItemRefusal.BAD_AMOUNT, None
    return None, (StatusKind.ANSWERED, AnswerKind.STOPPED, minor)
