"""The HTTP API on the embedded default (in-process bus + SQLite file): what a caller sees."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stopper.adapters.db import migrate
from stopper.api.app import create_app
from stopper.config import ApiSettings, DatabaseSettings, Settings
from stopper.contracts.signing import signed_headers
from stopper.runtime import Runtime, build_runtime
from tests.factories import report_doc
from tests.integration.helpers import embedded_api, eventually

LIMIT = 64 * 1024


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    async with embedded_api(ApiSettings(max_body_bytes=LIMIT), tmp_path / "stopper.db") as api:
        yield api


async def post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(
        "/v1/reports", content=body, headers={"content-type": "application/json"}
    )


async def test_report_to_case_on_the_embedded_default(
    embedded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, client = embedded
    answer = await post(client, json.dumps(report_doc()).encode())
    assert answer.status_code == 202
    case_id = answer.json()["case_id"]

    async def case() -> dict[str, Any] | None:
        r = await client.get(f"/v1/cases/{case_id}")
        return r.json() if r.status_code == 200 else None

    found = await eventually(case)
    # No institutions run here, so the holds wait in `requested` or retry in `sent`.
    assert sum(found["holds_by_state"].values()) == 2
    assert set(found["holds_by_state"]) <= {"requested", "sent"}
    assert (found["victims"], found["transfers"]) == (2, 3)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b'{"report_id": ', 400, "body: Invalid JSON"),
        (b'\xff\xfe\x00{"a": 1}', 400, "body: not valid UTF-8"),
        (b"[]", 422, "body: Input should be an object"),
        (json.dumps(report_doc(report_id=7)).encode(), 422, "report_id: Input should be a valid"),
        (json.dumps(report_doc(extra=1)).encode(), 422, "extra: Extra inputs are not permitted"),
        (b'{"report_id": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "body: Invalid JSON"),
    ],
)
async def test_bad_input_gets_a_4xx_with_the_reason(
    embedded: tuple[Runtime, httpx.AsyncClient], body: bytes, status: int, detail: str
) -> None:
    _, client = embedded
    answer = await post(client, body)
    assert answer.status_code == status
    assert answer.json()["detail"].startswith(detail), answer.json()


async def test_negative_amount_and_unknown_institution(
    embedded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, client = embedded
    doc = report_doc()
    doc["transfers"][1]["amount"] = "-10"
    doc["transfers"][2]["receiving_account"]["institution_code"] = "NOPE1"
    answer = await post(client, json.dumps(doc).encode())
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert {tuple(e["loc"]) for e in errors} == {
        ("transfers", 1, "amount"),
        ("transfers", 2, "receiving_account", "institution_code"),
    }
    assert "6222" not in answer.text


async def test_oversized_bodies_are_refused_early(
    embedded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, client = embedded
    five_mb = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    assert (await post(client, five_mb)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(LIMIT // 1024 + 2):
            yield b" " * 1024

    streamed = await client.post("/v1/reports", content=chunks())
    assert streamed.status_code == 413


async def test_unknown_case_and_bad_case_id(embedded: tuple[Runtime, httpx.AsyncClient]) -> None:
    _, client = embedded
    missing = await client.get("/v1/cases/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "no such case" in missing.json()["detail"]
    bad = await client.get("/v1/cases/not-a-uuid")
    assert bad.status_code == 422 and "input" not in bad.json()["errors"][0]


async def test_health_readiness_metrics_and_schema(
    embedded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, client = embedded
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": True,
        "schema": True,
        "bus": True,
        "consumers": True,
    }
    await post(client, json.dumps(report_doc()).encode())
    metrics = (await client.get("/metrics")).text
    assert 'stopper_reports_received_total{outcome="accepted"}' in metrics
    assert "stopper_intake_latency_seconds_bucket" in metrics
    schema = (await client.get("/openapi.json")).json()
    body = schema["paths"]["/v1/reports"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/FraudReportV1"}
    assert schema["components"]["schemas"]["FraudReportV1"]["title"] == "FraudReportV1"
    assert {"202", "200", "400", "409", "413", "422", "503"} <= set(
        schema["paths"]["/v1/reports"]["post"]["responses"]
    )


async def test_readiness_fails_when_the_consumer_is_gone(
    embedded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = embedded
    for task in runtime._tasks:
        task.cancel()
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["consumers"] is False


async def test_a_forged_callback_is_refused_and_counted(
    embedded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, client = embedded
    body = json.dumps({"hold_id": "00000000-0000-0000-0000-000000000001"}).encode()
    headers = signed_headers("not-the-secret", int(time.time()), "nonce-forged-1", body)
    answer = await client.post("/v1/institutions/BK01/callbacks", content=body, headers=headers)
    assert answer.status_code == 401 and answer.json()["detail"] == "signature does not match"
    unsigned = await client.post("/v1/institutions/BK01/callbacks", content=body)
    assert unsigned.status_code == 401
    unknown = await client.post("/v1/institutions/NOPE/callbacks", content=body)
    assert unknown.status_code == 404
    metrics = (await client.get("/metrics")).text
    assert 'stopper_callbacks_total{institution="BK01",outcome="bad_signature"}' in metrics
    assert 'institution="NOPE"' not in metrics


async def test_a_return_order_names_its_case_and_document_and_nothing_else(
    embedded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, client = embedded
    order = {"legal_document_ref": "PSB-RET-1", "requested_by": "officer-7"}
    unknown = await client.post(f"/v1/cases/{uuid.uuid4()}/returns", json=order)
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no such case"
    for bad in (
        {"requested_by": "officer-7"},
        {**order, "legal_document_ref": ""},
        {**order, "pay_to": "someone else"},
        {**order, "hold_ids": ["not-a-uuid"]},
    ):
        refused = await client.post(f"/v1/cases/{uuid.uuid4()}/returns", json=bad)
        assert refused.status_code == 422, bad
    accepted = await client.post("/v1/reports", json=report_doc())
    case_id = accepted.json()["case_id"]
    await eventually(lambda: _case_exists(client, case_id))
    nothing = await client.post(f"/v1/cases/{case_id}/returns", json=order)
    assert nothing.status_code == 409 and nothing.json()["detail"].startswith("nothing to return")
    schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"]["/v1/cases/{case_id}/returns"]["post"]["responses"]
    assert {"202", "403", "404", "409", "422"} <= set(responses)
    assert "order_id" in schema["components"]["schemas"]["ReturnOrderAnswerV1"]["properties"]
    assert not (await client.get("/v1/return-orders", params={"status": "pending"})).json()[
        "orders"
    ]
    for path, codes in (
        ("/v1/return-orders/{order_id}/approve", {"202", "403", "404", "409", "422"}),
        ("/v1/return-orders/{order_id}/reject", {"200", "403", "404", "409", "422"}),
        ("/v1/freeze-orders/{order_id}/approve", {"202", "403", "404", "409", "422"}),
    ):
        assert codes <= set(schema["paths"][path]["post"]["responses"]), path
    assert "get" in schema["paths"]["/v1/return-orders"]
    missing = await client.post(
        f"/v1/return-orders/{uuid.uuid4()}/approve", json={"approved_by": "supervisor-2"}
    )
    assert missing.status_code == 404 and missing.json()["detail"] == "no such return order"


async def _case_exists(client: httpx.AsyncClient, case_id: str) -> bool:
    return (await client.get(f"/v1/cases/{case_id}")).status_code == 200


async def test_readiness_waits_for_the_schema(tmp_path: Path) -> None:
    settings = Settings(
        database=DatabaseSettings(embedded_path=tmp_path / "old.db", migrate_on_start=False)
    )
    runtime = build_runtime(settings)
    await migrate.upgrade(runtime.engine, "0007")  # a migration the process has not seen run
    await runtime.start()
    app = create_app(runtime, start_runtime=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://stopper"
        ) as client:
            before = await client.get("/readyz")
            await migrate.upgrade(runtime.engine)
            after = await client.get("/readyz")
    finally:
        await runtime.stop()
    assert before.status_code == 503 and before.json()["checks"]["schema"] is False
    assert after.status_code == 200 and after.json()["checks"]["schema"] is True
