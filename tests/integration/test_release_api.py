"""The release routes on the embedded default with keys required: who may release and withdraw
(operators; an agency's own intake key its own cases only), what a bad body, an unknown hold or
case and a hold that cannot be released answer, and the schema that documents them."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from stopper.app.auth import KeyRole, new_key
from stopper.app.hold_changes import Concluded
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.config import ApiSettings
from stopper.domain.holds import HoldEvent, HoldState
from stopper.runtime import Runtime
from tests.factories import report_doc
from tests.integration.helpers import embedded_api, eventually

pytestmark = pytest.mark.integration

BODY = {"reason": "the report was withdrawn by the victim", "requested_by": "officer-3"}


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    async with embedded_api(ApiSettings(require_keys=True), tmp_path / "stopper.db") as api:
        yield api


async def key(
    runtime: Runtime, role: KeyRole, agency: str | None = None, holder: str | None = None
) -> tuple[dict[str, str], str]:
    stored, token = new_key(agency, role, "test", datetime.now(UTC), holder)
    await runtime.store.add_api_key(stored)
    return {"authorization": f"Bearer {token}"}, stored.key_id


async def a_case(
    runtime: Runtime, client: httpx.AsyncClient, agency: str
) -> tuple[str, dict[str, str]]:
    doc = report_doc(agency={"code": agency, "name": "Test"})
    intake, _ = await key(runtime, KeyRole.INTAKE, agency)
    answer = await client.post("/v1/reports", content=json.dumps(doc), headers=intake)
    assert answer.status_code == 202
    case_id: str = answer.json()["case_id"]

    async def opened() -> bool:
        return (await client.get(f"/v1/cases/{case_id}", headers=intake)).status_code == 200

    await eventually(opened)
    return case_id, intake


async def test_an_agency_withdraws_its_own_case_and_no_other(
    guarded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = guarded
    mine, intake = await a_case(runtime, client, "PSB-REL-A")
    theirs, _ = await a_case(runtime, client, "PSB-REL-B")
    other = await client.post(f"/v1/cases/{theirs}/withdraw", json=BODY, headers=intake)
    assert other.status_code == 404  # another agency's case is no case at all
    # An intake key does not release single holds: that is an operator's.
    case = (await client.get(f"/v1/cases/{mine}", headers=intake)).json()
    hold_id = case["holds"][0]["hold_id"]
    refused = await client.post(f"/v1/holds/{hold_id}/release", json=BODY, headers=intake)
    assert refused.status_code == 403
    answer = await client.post(f"/v1/cases/{mine}/withdraw", json=BODY, headers=intake)
    assert answer.status_code == 202, answer.text
    withdrawn = answer.json()
    assert withdrawn["case_id"] == mine and withdrawn["ground"] == "report_withdrawn"
    assert {r["hold_id"] for r in withdrawn["releases"]} == {h["hold_id"] for h in case["holds"]}
    assert {r["state"] for r in withdrawn["releases"]} <= {"releasing", "released"}
    # The audit names the agency's officer and key, and why.
    audit = await runtime.store.case_audit(uuid.UUID(mine), 100)
    ordered = [e for e in audit if e.event in ("release_ordered", "request_cancelled")]
    assert len(ordered) == len(case["holds"])
    assert all(e.actor.startswith("agency:PSB-REL-A:officer-3 (key:") for e in ordered)
    assert all("the report was withdrawn by the victim" in e.cause for e in ordered)


async def test_an_operator_releases_a_hold_and_is_told_why_one_cannot_be(
    guarded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = guarded
    ops, key_id = await key(runtime, KeyRole.OPERATOR, holder="li.wei")
    case_id, _ = await a_case(runtime, client, "PSB-REL-C")
    holds = (await client.get(f"/v1/cases/{case_id}", headers=ops)).json()["holds"]
    first, second = (uuid.UUID(h["hold_id"]) for h in holds)
    for bad in ({"requested_by": "li.wei"}, {**BODY, "reason": ""}, {**BODY, "by": "x"}):
        invalid = await client.post(f"/v1/holds/{first}/release", json=bad, headers=ops)
        assert invalid.status_code == 422, bad
    unknown = await client.post(f"/v1/holds/{uuid.uuid4()}/release", json=BODY, headers=ops)
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no such hold"
    no_case = await client.post(f"/v1/cases/{uuid.uuid4()}/withdraw", json=BODY, headers=ops)
    assert no_case.status_code == 404

    answer = await client.post(f"/v1/holds/{first}/release", json=BODY, headers=ops)
    assert answer.status_code == 202, answer.text
    assert answer.json()["ground"] == "account_cleared"
    assert answer.json()["outcome"] in ("ordered", "cancelled")

    # A hold whose institution found nothing cannot be released: 409 with the reason.
    now = datetime.now(UTC)

    def not_found(record: HoldRecord) -> HoldUpdate:
        hold = record.hold
        moves = []
        if hold.state is HoldState.REQUESTED:
            moves.append(hold.apply(HoldEvent.REQUEST_SENT, cause="t", actor="t", at=now))
        moves.append(hold.apply(HoldEvent.NOT_FOUND, cause="t", actor="t", at=now))
        return HoldUpdate(at=now, transitions=moves, change=Concluded(None))

    assert await runtime.store.update_hold(second, not_found) is not None
    refused = await client.post(f"/v1/holds/{second}/release", json=BODY, headers=ops)
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "the hold is not_found: its institution found no such account: nothing is held"
    )
    audit = await runtime.store.case_audit(uuid.UUID(case_id), 100)
    mine = [
        e
        for e in audit
        if e.hold_id == first and e.event in ("release_ordered", "request_cancelled")
    ]
    assert [e.actor for e in mine] == [f"operator:officer-3 (key:{key_id})"]

    schema = (await client.get("/openapi.json")).json()
    for path, codes in (
        ("/v1/holds/{hold_id}/release", {"202", "404", "409", "422"}),
        ("/v1/cases/{case_id}/withdraw", {"202", "403", "404", "409", "422"}),
    ):
        assert codes <= set(schema["paths"][path]["post"]["responses"]), path
    assert {"ReleaseV1", "HoldReleasedV1", "WithdrawnV1"} <= set(schema["components"]["schemas"])
