"""Report acceptance: what a report filed over HTTP becomes, with no HTTP in sight."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import pytest
from prometheus_client import REGISTRY

from stopper.app.acceptance import ReportAcceptance
from stopper.app.auth import ANONYMOUS, Caller, KeyRole
from stopper.app.intake import ACCEPTED_AT_HEADER, SOURCE_HEADER, parse_report
from stopper.domain.cases import case_id_for
from stopper.errors import AuthRefusal, AuthRefused, ReportRejected, ReportRejection
from stopper.registry import load_registry
from tests.factories import report_doc
from tests.unit.fakes import FakePublisher, FixedClock

REGISTRY_ = load_registry()
TOPIC = "reports-test"
INTAKE = Caller(KeyRole.INTAKE, "PSB-TEST", "k1")


@dataclass
class FakeKnownReports:
    fingerprints: dict[UUID, str] = field(default_factory=dict)

    async def case_fingerprint(self, case_id: UUID) -> str | None:
        return self.fingerprints.get(case_id)


def desk() -> tuple[ReportAcceptance, FakeKnownReports, FakePublisher, FixedClock]:
    known, publisher, clock = FakeKnownReports(), FakePublisher(), FixedClock()
    return ReportAcceptance(known, publisher, clock, REGISTRY_, TOPIC), known, publisher, clock


def counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("stopper_reports_received_total", {"outcome": outcome})
    return value or 0.0


async def test_a_new_report_is_queued_raw_with_when_it_was_accepted() -> None:
    acceptance, _, publisher, clock = desk()
    doc = report_doc()
    raw = json.dumps(doc).encode()
    before = counted("accepted")
    accepted = await acceptance.accept(raw, INTAKE)
    assert (accepted.report_id, accepted.duplicate) == (doc["report_id"], False)
    assert accepted.case_id == case_id_for(doc["report_id"])
    [sent] = publisher.sent
    assert (sent.topic, sent.key, sent.value) == (TOPIC, doc["report_id"], raw)
    assert datetime.fromisoformat(sent.headers[ACCEPTED_AT_HEADER]) == clock.now()
    assert sent.headers[SOURCE_HEADER] == "http"
    assert counted("accepted") == before + 1


async def test_a_repost_is_a_duplicate_and_a_reused_report_id_is_refused() -> None:
    acceptance, known, publisher, _ = desk()
    doc = report_doc()
    raw = json.dumps(doc).encode()
    case_id = case_id_for(doc["report_id"])
    known.fingerprints[case_id] = parse_report(raw, REGISTRY_).fingerprint()
    before = counted("duplicate"), counted("conflict")

    again = await acceptance.accept(raw, INTAKE)
    assert (again.case_id, again.duplicate) == (case_id, True)

    other = dict(doc, victims=[{"victim_id": "V1"}, {"victim_id": "V2", "name": "Zhao Lei"}])
    with pytest.raises(ReportRejected) as raised:
        await acceptance.accept(json.dumps(other).encode(), INTAKE)
    assert raised.value.reason is ReportRejection.REPORT_ID_REUSED
    assert publisher.sent == []
    assert (counted("duplicate"), counted("conflict")) == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff{}", ReportRejection.UNREADABLE),
        (b'{"report_id": ', ReportRejection.UNREADABLE),
        (json.dumps(report_doc(report_id=7)).encode(), ReportRejection.INVALID),
    ],
)
async def test_a_report_that_breaks_the_contract_is_refused_and_nothing_queued(
    raw: bytes, reason: ReportRejection
) -> None:
    acceptance, _, publisher, _ = desk()
    before = counted("rejected")
    with pytest.raises(ReportRejected) as raised:
        await acceptance.accept(raw, INTAKE)
    assert raised.value.reason is reason
    assert publisher.sent == []
    assert counted("rejected") == before + 1


async def test_an_intake_key_files_for_its_own_agency_only() -> None:
    acceptance, _, publisher, _ = desk()
    raw = json.dumps(report_doc()).encode()
    with pytest.raises(AuthRefused) as raised:
        await acceptance.accept(raw, Caller(KeyRole.INTAKE, "PSB-OTHER", "k2"))
    assert raised.value.reason is AuthRefusal.OTHER_AGENCY
    assert publisher.sent == []
    assert not (await acceptance.accept(raw, ANONYMOUS)).duplicate
    assert len(publisher.sent) == 1
    assert not Caller(KeyRole.OPERATOR, None, "k3").files_reports  # refused at the API
    assert INTAKE.files_reports and ANONYMOUS.files_reports
