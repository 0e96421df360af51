"""POST /v1/holds/{hold_id}/handled on the embedded default: a person marks a failed or
unconfirmed hold as handled, the note lands in the case's audit and the hold leaves the
"needs a person" list until it moves again."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from stopper.app.auth import KeyRole, new_key
from stopper.app.handling import NEEDS_A_PERSON
from stopper.app.hold_changes import Concluded
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.config import ApiSettings
from stopper.domain.holds import HoldEvent
from stopper.runtime import Runtime
from tests.factories import report_doc
from tests.integration.helpers import embedded_api, eventually

pytestmark = pytest.mark.integration

NOTE = {"requested_by": "duty-officer", "note": "phoned BK01: stop in place, ref 4471"}


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    async with embedded_api(ApiSettings(require_keys=True), tmp_path / "stopper.db") as api:
        yield api


async def key(runtime: Runtime, role: KeyRole, agency: str | None = None) -> dict[str, str]:
    stored, token = new_key(agency, role, "test", datetime.now(UTC))
    await runtime.store.add_api_key(stored)
    return {"authorization": f"Bearer {token}"}


async def a_case(runtime: Runtime, client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    doc = report_doc()
    doc["report_id"] = f"R-{uuid.uuid4()}"
    intake = await key(runtime, KeyRole.INTAKE, doc["agency"]["code"])
    answer = await client.post("/v1/reports", content=json.dumps(doc), headers=intake)
    assert answer.status_code == 202
    case_id: str = answer.json()["case_id"]

    async def opened() -> bool:
        return (await client.get(f"/v1/cases/{case_id}", headers=headers)).status_code == 200

    await eventually(opened)
    return case_id


async def fail(runtime: Runtime, hold_id: uuid.UUID, at: datetime) -> None:
    def give_up(record: HoldRecord) -> HoldUpdate:
        moved = record.hold.apply(HoldEvent.GAVE_UP, cause="test", actor="test", at=at)
        return HoldUpdate(at=at, transitions=[moved], change=Concluded("unreachable"))

    assert await runtime.store.update_hold(hold_id, give_up)


async def test_a_failed_hold_marked_handled_leaves_the_list_and_enters_the_audit(
    guarded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = guarded
    ops = await key(runtime, KeyRole.OPERATOR)
    case_id = await a_case(runtime, client, ops)
    case = (await client.get(f"/v1/cases/{case_id}", headers=ops)).json()
    hold_id = uuid.UUID(case["holds"][0]["hold_id"])
    now = datetime.now(UTC)
    await fail(runtime, hold_id, now)
    failed_states = [s.value for s in NEEDS_A_PERSON]

    async def waiting() -> list[Any]:
        holds = await runtime.store.list_holds(states=failed_states, limit=100, unhandled_only=True)
        return [h for h in holds if h.hold.hold_id == hold_id]

    assert await waiting()
    answer = await client.post(f"/v1/holds/{hold_id}/handled", json=NOTE, headers=ops)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"hold_id": str(hold_id), "handled": True}
    assert not await waiting()
    # Another hold moving later leaves this one handled; it needs a person itself.
    other = uuid.UUID(case["holds"][1]["hold_id"])
    await fail(runtime, other, datetime.now(UTC))
    assert not await waiting()
    others = await runtime.store.list_holds(states=failed_states, limit=100, unhandled_only=True)
    assert other in {h.hold.hold_id for h in others}
    # The API's list of failed holds is unchanged: a handled hold is still failed; asked for
    # the unhandled ones only (as `stopper holds failed` does), it has left the list.
    listed = (await client.get("/v1/holds", headers=ops)).json()["holds"]
    assert str(hold_id) in {h["hold_id"] for h in listed}
    waiting_list = await client.get("/v1/holds", params={"unhandled": "true"}, headers=ops)
    assert {h["hold_id"] for h in waiting_list.json()["holds"]} == {str(other)}

    # No institution runs here: the hold, requested or sent, is failed by hand.
    audit = await runtime.store.case_audit(uuid.UUID(case_id), 100)
    notes = [e for e in audit if e.is_note]
    assert [(n.hold_id, n.event, n.cause, n.to_state) for n in notes] == [
        (hold_id, "handled", NOTE["note"], "failed")
    ]
    assert notes[0].actor.startswith("operator:duty-officer (key:")

    activity = await runtime.store.activity(
        hour_since=now - timedelta(hours=1),
        day_since=now - timedelta(days=1),
        needs_a_person=failed_states,
    )
    assert activity.reports >= 1 and activity.holds >= 2
    assert activity.needing_a_person == 1  # the other hold


async def test_handled_needs_an_operator_a_known_hold_and_one_needing_a_person(
    guarded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = guarded
    ops = await key(runtime, KeyRole.OPERATOR)
    path = f"/v1/holds/{uuid.uuid4()}/handled"
    assert (await client.post(path, json=NOTE)).status_code == 401
    intake = await key(runtime, KeyRole.INTAKE, "PSB-TEST")
    assert (await client.post(path, json=NOTE, headers=intake)).status_code == 403
    missing = await client.post(path, json=NOTE, headers=ops)
    assert missing.status_code == 404 and missing.json()["detail"] == "no such hold"
    empty = await client.post(path, json={**NOTE, "note": ""}, headers=ops)
    assert empty.status_code in (400, 422)

    case_id = await a_case(runtime, client, ops)
    case = (await client.get(f"/v1/cases/{case_id}", headers=ops)).json()
    hold_id = case["holds"][0]["hold_id"]
    refused = await client.post(f"/v1/holds/{hold_id}/handled", json=NOTE, headers=ops)
    assert refused.status_code == 409
    assert refused.json()["detail"] == "only a failed or unconfirmed hold can be marked handled"
    assert not [e for e in await runtime.store.case_audit(uuid.UUID(case_id), 100) if e.is_note]


async def test_handled_is_in_the_schema(guarded: tuple[Runtime, httpx.AsyncClient]) -> None:
    _, client = guarded
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/holds/{hold_id}/handled"]["post"]
    assert set(operation["responses"]) >= {"200", "404", "409"}
    assert "HandledV1" in schema["components"]["schemas"]
