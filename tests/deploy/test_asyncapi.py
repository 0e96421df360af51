"""deploy/asyncapi.yaml: a valid AsyncAPI 3.0 document whose payload schemas are what Stopper
publishes and takes (real records from the broker are checked against them in
tests/integration/test_webhooks_stack.py and test_kafkajs_intake.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import get_args
from uuid import uuid4

from stopper.app.case_events import case_opened, stop_expiring, trail_followed, transition_events
from stopper.app.intake import parse_report
from stopper.config import KafkaSettings
from stopper.contracts.amounts import WRITTEN_AMOUNT_SCHEMA
from stopper.contracts.reports import (
    SUPPORTED_CURRENCIES,
    AgencyV1,
    Channel,
    FraudReportV1,
    ReceivingAccountV1,
    TransferV1,
    VictimV1,
)
from stopper.contracts.webhooks import CaseEventType, CaseEventV1
from stopper.domain.cases import Case
from stopper.domain.holds import Hold, HoldEvent, HoldState
from stopper.registry import load_registry
from stopper.simulation.reports import ReportFactory
from tests.deploy.asyncapi import document, document_validator, payload_validator
from tests.deploy.tools import REPO
from tests.factories import report_doc

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_the_document_is_valid_asyncapi_3() -> None:
    doc = document()
    errors = [e.message for e in document_validator().iter_errors(doc)]
    assert errors == []
    assert doc["asyncapi"] == "3.0.0"


def test_a_broken_document_is_caught() -> None:
    doc = document()
    del doc["info"]
    doc["operations"]["publishCaseEvents"]["action"] = "publish"  # AsyncAPI 2's word
    assert not document_validator().is_valid(doc)


def test_the_channel_is_the_configured_topic_and_the_types_are_stoppers() -> None:
    doc = document()
    assert doc["channels"]["caseEvents"]["address"] == KafkaSettings().case_events_topic
    schema = doc["components"]["schemas"]["CaseEvent"]
    assert schema["properties"]["type"]["enum"] == [t.value for t in CaseEventType]
    assert set(schema["required"]) == set(CaseEventV1.model_fields)


def _hold(state: HoldState, layer: int = 1) -> Hold:
    return Hold(
        id=uuid4(),
        case_id=uuid4(),
        institution_code="BK01",
        account_number="6222000011112222",
        currency="CNY",
        amount_asked=10_000,
        state=state,
        layer=layer,
        parent_id=uuid4() if layer > 1 else None,
    )


def test_what_stopper_builds_matches_the_payload_schema() -> None:
    validator = payload_validator()
    hold = _hold(HoldState.SENT)
    t = hold.apply(HoldEvent.STOP_CONFIRMED, cause="x", actor="x", at=NOW, amount=9_000)
    case = Case(uuid4(), "R-1", "PSB-X", NOW, NOW, (), [_hold(HoldState.REQUESTED)])
    releasing = _hold(HoldState.RELEASING)
    released = releasing.apply(HoldEvent.RELEASE_CONFIRMED, cause="x", actor="x", at=NOW)
    events = [
        case_opened(case),
        *transition_events(hold, [t], "R-1"),
        *transition_events(releasing, [released], "R-1"),
        trail_followed(_hold(HoldState.REQUESTED, layer=2), NOW, "R-1"),
        stop_expiring(_hold(HoldState.STOPPED), NOW, NOW, "R-1"),
    ]
    for event in events:
        payload = event.payload()
        assert [e.message for e in validator.iter_errors(payload)] == [], event.type
        CaseEventV1.model_validate(payload)
    unmasked = events[1].payload()
    unmasked["data"] = {**events[1].data, "account": "6222000011112222"}
    assert not validator.is_valid(unmasked)


def test_the_reports_channel_is_the_configured_topic_and_its_schema_the_contract() -> None:
    doc = document()
    assert doc["channels"]["reports"]["address"] == KafkaSettings().reports_topic
    assert doc["operations"]["fileReports"]["action"] == "receive"
    schemas = doc["components"]["schemas"]
    report = schemas["FraudReport"]
    for schema, model in (
        (report, FraudReportV1),
        (report["properties"]["agency"], AgencyV1),
        (report["properties"]["victims"]["items"], VictimV1),
        (schemas["Transfer"], TransferV1),
        (schemas["Account"], ReceivingAccountV1),
    ):
        assert set(schema["properties"]) == set(model.model_fields), model.__name__
        required = {n for n, f in model.model_fields.items() if f.is_required()}
        assert set(schema["required"]) == required, model.__name__
    transfer = schemas["Transfer"]["properties"]
    assert set(transfer["currency"]["enum"]) == SUPPORTED_CURRENCIES
    assert transfer["channel"]["enum"] == list(get_args(Channel))
    # The amounts' patterns are the contracts' own (OpenAPI says the same).
    written = FraudReportV1.model_json_schema()["$defs"]["TransferV1"]["properties"]["amount"]
    assert schemas["ReportedAmount"]["pattern"] == written["pattern"]
    assert schemas["Amount"]["pattern"] == WRITTEN_AMOUNT_SCHEMA["pattern"]


def test_reports_stopper_takes_match_the_report_schema_and_its_refusals_do_not() -> None:
    validator = payload_validator("fraudReport")
    example = json.loads((REPO / "examples" / "report.json").read_text())
    made = ReportFactory(load_registry(), seed=5).report(datetime.now(UTC))
    for taken in (example, made, report_doc()):
        assert [e.message for e in validator.iter_errors(taken)] == []
        parse_report(json.dumps(taken).encode(), load_registry())
    as_number = report_doc()
    as_number["transfers"][0]["amount"] = 15000.0  # still read, deprecated: not the contract
    assert not validator.is_valid(as_number)
    surprise = {**report_doc(), "surprise": 1}
    assert not validator.is_valid(surprise)
