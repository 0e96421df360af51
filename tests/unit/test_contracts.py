from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stopper.app.intake import parse_report
from stopper.errors import ReportRejected, ReportRejection
from stopper.registry import load_registry
from tests.factories import report_doc

REGISTRY = load_registry()


def rejected(doc: dict[str, Any] | bytes) -> ReportRejected:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(ReportRejected) as raised:
        parse_report(raw, REGISTRY)
    return raised.value


def test_valid_report_parses_with_exact_amounts() -> None:
    report = parse_report(json.dumps(report_doc()).encode(), REGISTRY)
    assert [t.amount_minor for t in report.transfers] == [1_500_000, 500_050, 82_000]


def test_packaged_registry_has_16_banks_and_28_payment_institutions() -> None:
    kinds = [i.kind.value for i in REGISTRY.values()]
    assert (kinds.count("bank"), kinds.count("payment_institution")) == (16, 28)


def with_transfer(**change: Any) -> dict[str, Any]:
    doc = report_doc()
    doc["transfers"][0].update(change)
    return doc


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        (with_transfer(amount="-1.00"), "transfers.0.amount"),
        (with_transfer(amount="0"), "transfers.0.amount"),
        (with_transfer(amount="1.001"), "transfers.0.amount"),
        (with_transfer(amount="abc"), "transfers.0.amount"),
        (with_transfer(currency="XYZ"), "transfers.0.currency"),
        (with_transfer(channel="pigeon"), "transfers.0.channel"),
        (with_transfer(victim_id="nobody"), "body"),
        (
            with_transfer(
                receiving_account={"institution_code": "ZZ99", "account_number": "12345678"}
            ),
            "transfers.0.receiving_account.institution_code",
        ),
        (
            with_transfer(
                receiving_account={"institution_code": "BK01", "account_number": "12 34"}
            ),
            "transfers.0.receiving_account.account_number",
        ),
        (report_doc(report_id=""), "report_id"),
        (report_doc(report_id="x" * 200), "report_id"),
        (report_doc(victims=[]), "victims"),
        (report_doc(victims=[{"victim_id": "V1"}, {"victim_id": "V1"}]), "body"),
        (report_doc(transfers=[]), "transfers"),
        (report_doc(reported_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()), "body"),
        (report_doc(reported_at="2026-11-21T10:00:00"), "reported_at"),  # no time zone
        (report_doc(unexpected="field"), "unexpected"),
        (report_doc(schema_version=2), "schema_version"),
    ],
)
def test_bad_reports_are_rejected_with_where_and_why(doc: dict[str, Any], where: str) -> None:
    error = rejected(doc)
    assert error.detail.startswith(f"{where}:"), error.detail
    assert error.reason is ReportRejection.INVALID


def test_too_many_transfers() -> None:
    doc = report_doc()
    doc["transfers"] = doc["transfers"][:1] * 501
    assert rejected(doc).detail.startswith("transfers:")


def test_one_account_in_two_currencies() -> None:
    doc = report_doc()
    doc["transfers"][1]["currency"] = "USD"
    assert "two currencies" in rejected(doc).detail


def test_transfer_after_the_report_is_refused() -> None:
    doc = report_doc()
    doc["transfers"][0]["transferred_at"] = datetime.now(UTC).isoformat()
    doc["reported_at"] = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    assert "after reported_at" in rejected(doc).detail


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", ReportRejection.UNREADABLE),
        (b"{", ReportRejection.UNREADABLE),
        (b"\xff\xfe{}", ReportRejection.UNREADABLE),
        (b"[1, 2]", ReportRejection.INVALID),
        (b"null", ReportRejection.INVALID),
    ],
)
def test_garbage_is_rejected(raw: bytes, reason: ReportRejection) -> None:
    error = rejected(raw)
    assert error.detail
    assert error.reason is reason


def test_errors_never_repeat_account_numbers_or_names() -> None:
    doc = with_transfer(amount="-1")
    doc["transfers"][0]["receiving_account"]["account_number"] = "SECRET99887766"
    doc["victims"][0]["name"] = "x" * 500
    error = rejected(doc)
    text = error.detail + json.dumps(error.errors)
    assert "SECRET99887766" not in text and "xxxxx" not in text


def test_fingerprint_tells_a_repost_from_a_different_report() -> None:
    doc = report_doc()
    first = parse_report(json.dumps(doc).encode(), REGISTRY)
    same = parse_report(json.dumps(doc, indent=2).encode(), REGISTRY)
    doc["transfers"][0]["amount"] = "15000.01"
    other = parse_report(json.dumps(doc).encode(), REGISTRY)
    assert first.fingerprint() == same.fingerprint() != other.fingerprint()
