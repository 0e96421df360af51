"""Amounts on the wire (`stopper.contracts.amounts`): decimal strings with the currency's minor
digits on every JSON interface, minor units inside; the transition's old forms read, with their
old meaning, and counted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY as REGISTRY_OF_METRICS
from pydantic import ValidationError

from stopper.app.case_events import hold_data
from stopper.app.intake import parse_report
from stopper.contracts.amounts import (
    MINOR_DIGITS,
    WIRE_DIGITS,
    LegacyForms,
    format_amount,
    parse_amount,
)
from stopper.contracts.institutions import (
    CallbackV1,
    FreezeAnswerV1,
    ReturnRequestV1,
    StopAnswerV1,
    StopRequestV1,
    StopStatusV1,
)
from stopper.contracts.reports import SUPPORTED_CURRENCIES
from stopper.domain.holds import Hold, HoldState
from stopper.errors import ReportRejected
from stopper.registry import load_registry
from tests.factories import report_doc

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
REGISTRY = load_registry()


def test_every_currency_taken_has_the_digits_the_contracts_convert_with() -> None:
    # A currency with other minor digits (JPY: 0, BHD: 3) needs the conversion to be told the
    # currency before it can be taken.
    assert SUPPORTED_CURRENCIES == set(MINOR_DIGITS)
    assert set(MINOR_DIGITS.values()) == {WIRE_DIGITS}


@pytest.mark.parametrize(
    ("minor", "text"),
    [(0, "0.00"), (1, "0.01"), (10, "0.10"), (125_000, "1250.00"), (4_554_050, "45540.50")],
)
def test_minor_units_are_written_with_the_minor_digits_and_read_back(minor: int, text: str) -> None:
    assert format_amount(minor) == text
    assert parse_amount(text) == minor


def test_fewer_decimals_are_read_exactly() -> None:
    assert [parse_amount(t) for t in ("1250", "1250.5", "0.1")] == [125_000, 125_050, 10]
    # Exact where a float is not: 2^53 + 1 cents.
    assert parse_amount("90071992547409.93") == 9_007_199_254_740_993


@pytest.mark.parametrize(
    "text", ["", "-1.00", "+1.00", "1e3", "1.001", " 1.00", "1,00", "1.", ".5", "NaN", "1" * 16]
)
def test_anything_else_is_not_an_amount(text: str) -> None:
    with pytest.raises(ValueError, match="decimal string"):
        parse_amount(text)


def stop_request(amount: int = 125_000) -> StopRequestV1:
    return StopRequestV1(
        hold_id=uuid4(),
        case_id=uuid4(),
        institution_code="BK07",
        account_number="6222000011112222",
        currency="CNY",
        idempotency_key="stopper-x-0",
        requested_at=NOW,
        amount=amount,
        layer=1,
    )


def test_a_stop_request_carries_a_decimal_string_and_minor_units_in_python() -> None:
    request = stop_request()
    wire = json.loads(request.model_dump_json())
    assert wire["amount"] == "1250.00"
    assert request.model_dump(mode="json")["amount"] == "1250.00"  # the outbox's payload too
    assert request.model_dump()["amount"] == 125_000
    assert StopRequestV1.model_validate_json(request.model_dump_json()) == request
    # A record written before the convention (the outbox, the stop-request topic) still reads.
    old = {**wire, "amount": 125_000}
    assert StopRequestV1.model_validate_json(json.dumps(old)).amount == 125_000


def test_answers_are_read_from_decimal_strings() -> None:
    stopped = StopAnswerV1.model_validate_json(
        '{"status": "stopped", "amount_held": "980.50", "onward": [{"kind": "cash_withdrawal",'
        ' "amount": "269.50", "transferred_at": "2026-12-02T07:00:00+00:00"}]}'
    )
    answer = stopped.to_domain()
    assert (answer.amount_held, [t.amount for t in answer.onward]) == (98_050, [26_950])
    frozen = FreezeAnswerV1.model_validate_json('{"status": "frozen", "amount_frozen": "980.50"}')
    assert frozen.to_domain().amount == 98_050


def test_the_old_integer_form_of_an_answer_is_read_as_minor_units_and_counted() -> None:
    forms = LegacyForms()
    body = '{"status": "stopped", "amount_held": 98050}'
    old = StopAnswerV1.model_validate_json(body, context=forms.context())
    assert (old.amount_held, forms.count) == (98_050, 1)
    new = LegacyForms()
    StopAnswerV1.model_validate_json(
        '{"status": "stopped", "amount_held": "980.50"}', context=new.context()
    )
    assert new.count == 0


@pytest.mark.parametrize("amount", ["980.505", 980.5, -1, "-1.00", True, "1e3"])
def test_a_float_a_sign_or_too_many_decimals_is_refused(amount: object) -> None:
    body = json.dumps({"status": "stopped", "amount_held": amount})
    with pytest.raises(ValidationError):
        StopAnswerV1.model_validate_json(body)


def test_a_zero_is_refused_where_an_amount_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        stop_request(amount=0)
    status = {"idempotency_key": "k", "hold_id": str(uuid4()), "status": "stopped"}
    nothing_left = StopStatusV1.model_validate_json(json.dumps({**status, "amount_held": "0.00"}))
    assert nothing_left.amount_held == 0  # nothing left to hold is an answer


def test_a_return_request_writes_every_payout_as_a_decimal_string() -> None:
    request = ReturnRequestV1.model_validate(
        {
            **stop_request().model_dump(exclude={"amount", "layer", "generation", "known_mule"}),
            "amount": 30_001,
            "legal_document_ref": "DOC-1",
            "payouts": [
                {
                    "victim_ref": "V1",
                    "institution_code": "BK02",
                    "account_number": "62170000",
                    "amount": 30_000,
                },
                {
                    "victim_ref": "V2",
                    "institution_code": "BK02",
                    "account_number": "62170001",
                    "amount": 1,
                },
            ],
        }
    )
    wire = json.loads(request.model_dump_json())
    assert (wire["amount"], [p["amount"] for p in wire["payouts"]]) == (
        "300.01",
        ["300.00", "0.01"],
    )


def test_a_callback_takes_decimal_strings_and_still_reads_the_old_integers() -> None:
    base = {
        "hold_id": str(uuid4()),
        "idempotency_key": "stopper-x-0",
        "status": "stopped",
        "answered_at": NOW.isoformat(),
    }
    forms = LegacyForms()
    new = CallbackV1.model_validate_json(
        json.dumps({**base, "amount_held": "420.00"}), context=forms.context()
    )
    old = CallbackV1.model_validate_json(
        json.dumps({**base, "amount_held": 42_000}), context=forms.context()
    )
    assert new.to_domain() == old.to_domain() and new.amount_held == 42_000
    assert forms.count == 1


def test_a_case_event_says_its_amounts_as_decimal_strings() -> None:
    hold = Hold(
        id=uuid4(),
        case_id=uuid4(),
        institution_code="BK07",
        account_number="6222000011112222",
        currency="CNY",
        amount_asked=4_554_000,
        state=HoldState.STOPPED,
        layer=1,
        amount_stopped=98_050,
    )
    data = hold_data(hold)
    assert (data["amount_asked"], data["amount_stopped"], data["amount_frozen"]) == (
        "45540.00",
        "980.50",
        "0.00",
    )


def legacy_reports() -> float:
    counted = REGISTRY_OF_METRICS.get_sample_value(
        "stopper_legacy_amounts_total", {"interface": "report", "institution": ""}
    )
    return counted or 0.0


def test_a_report_takes_decimal_strings_and_still_reads_a_json_number() -> None:
    doc = report_doc()
    doc["transfers"][0]["amount"] = "15000.5"
    before = legacy_reports()
    assert parse_report(json.dumps(doc).encode(), REGISTRY).transfers[0].amount_minor == 1_500_050
    assert legacy_reports() == before
    doc["transfers"][0]["amount"] = 15000.5  # the old form: major units, as it always was
    assert parse_report(json.dumps(doc).encode(), REGISTRY).transfers[0].amount_minor == 1_500_050
    assert legacy_reports() == before + 1
    # A record HTTP intake accepted (and counted) is not counted again by the consumer.
    parse_report(json.dumps(doc).encode(), REGISTRY, count_legacy=False)
    assert legacy_reports() == before + 1
    for refused in ("1.5e4", "+15000.50", " 15000.50", "15000.505"):
        doc["transfers"][0]["amount"] = refused
        with pytest.raises(ReportRejected, match=r"transfers\.0\.amount"):
            parse_report(json.dumps(doc).encode(), REGISTRY)
