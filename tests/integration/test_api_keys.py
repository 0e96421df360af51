"""Who may do what through the API, with keys required (as in production)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from stopper.app.auth import KeyRole, new_key
from stopper.config import ApiSettings
from stopper.runtime import Runtime
from tests.factories import report_doc
from tests.integration.helpers import embedded_api, eventually

pytestmark = pytest.mark.integration


class Keys:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def add(self, role: KeyRole, agency: str | None = None) -> dict[str, str]:
        stored, token = new_key(agency, role, "test", datetime.now(UTC))
        await self.runtime.store.add_api_key(stored)
        return {"authorization": f"Bearer {token}"}


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Keys]]:
    async with embedded_api(ApiSettings(require_keys=True), tmp_path / "stopper.db") as api:
        runtime, client = api
        yield client, Keys(runtime)


def report_of(agency: str, report_id: str) -> dict[str, Any]:
    doc = report_doc()
    doc["report_id"] = report_id
    doc["agency"] = {"code": agency, "name": f"{agency} centre"}
    return doc


async def test_every_call_but_health_needs_a_valid_key(
    guarded: tuple[httpx.AsyncClient, Keys],
) -> None:
    client, _ = guarded
    for method, path in [
        ("POST", "/v1/reports"),
        ("GET", "/v1/cases"),
        ("GET", "/v1/cases/00000000-0000-0000-0000-000000000001"),
        ("GET", "/v1/holds"),
        ("GET", "/v1/institutions/status"),
    ]:
        refused = await client.request(method, path, json={})
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.get("/v1/cases", headers={"authorization": "Bearer stk_123_nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "the API key is not valid"
    assert (await client.get("/healthz")).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'stopper_auth_refused_total{reason="missing"}' in metrics


async def test_an_agency_files_and_sees_its_own_cases_only(
    guarded: tuple[httpx.AsyncClient, Keys],
) -> None:
    client, keys = guarded
    one = await keys.add(KeyRole.INTAKE, "PSB-ONE")
    two = await keys.add(KeyRole.INTAKE, "PSB-TWO")
    centre = await keys.add(KeyRole.OPERATOR)

    forged = await client.post("/v1/reports", json=report_of("PSB-TWO", "R-1"), headers=one)
    assert forged.status_code == 403
    filed = await client.post("/v1/reports", json=report_of("PSB-ONE", "R-2"), headers=one)
    assert filed.status_code == 202
    case_id = filed.json()["case_id"]
    mine = await eventually(lambda: ok(client, f"/v1/cases/{case_id}", one))
    assert mine["agency_code"] == "PSB-ONE"

    assert (await client.get(f"/v1/cases/{case_id}", headers=two)).status_code == 404
    assert (await client.get(f"/v1/cases/{case_id}/trail", headers=two)).status_code == 404
    theirs = (await client.get("/v1/cases?active=false", headers=two)).json()["cases"]
    assert theirs == []
    listed = (await client.get("/v1/cases?active=false", headers=one)).json()["cases"]
    assert [c["case_id"] for c in listed] == [case_id]

    # The anti-fraud centre sees everything and acts; intake systems do not act on holds.
    assert (await client.get(f"/v1/cases/{case_id}", headers=centre)).status_code == 200
    assert (await client.get("/v1/holds", headers=centre)).status_code == 200
    hold_id = mine["holds"][0]["hold_id"]
    order = {"legal_document_ref": "FRZ-1", "requested_by": "officer-7"}
    for path in ("/v1/holds", "/v1/institutions/status"):
        assert (await client.get(path, headers=one)).status_code == 403
    acted = await client.post(f"/v1/holds/{hold_id}/freeze", json=order, headers=one)
    assert acted.status_code == 403 and acted.json()["detail"] == "this needs an operator key"
    not_filed = await client.post("/v1/reports", json=report_of("PSB-ONE", "R-3"), headers=centre)
    assert not_filed.status_code == 403


async def test_the_console_asks_a_browser_for_an_operator_key(
    guarded: tuple[httpx.AsyncClient, Keys],
) -> None:
    client, keys = guarded
    asked = await client.get("/console")
    assert asked.status_code == 401
    assert asked.headers["www-authenticate"] == 'Basic realm="Stopper console"'
    token = (await keys.add(KeyRole.OPERATOR))["authorization"].removeprefix("Bearer ")
    basic = base64.b64encode(f"officer-7:{token}".encode()).decode()
    page = await client.get("/console", headers={"authorization": f"Basic {basic}"})
    assert page.status_code == 200 and "Stopper console" in page.text
    intake = (await keys.add(KeyRole.INTAKE, "PSB-ONE"))["authorization"]
    assert (await client.get("/console", headers={"authorization": intake})).status_code == 403


async def ok(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Any:
    answer = await client.get(path, headers=headers)
    return answer.json() if answer.status_code == 200 else None
