"""Agencies' webhooks on the real stack: PostgreSQL, the Kafka-protocol broker, the simulated
institutions and a test receiver over HTTP on loopback. The receiver gets every case event of
the scenario, signed, in order per case, also across a restart of Stopper while it was down;
the same events are on `stopper.case-events` (key = case id) as deploy/asyncapi.yaml says."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import func, select

from stopper.adapters.db.models import HoldRow, OutboxRow
from stopper.api.app import create_app
from stopper.app.auth import KeyRole, new_key
from stopper.config import (
    ApiSettings,
    DatabaseSettings,
    DispatchSettings,
    InstitutionsSettings,
    Settings,
    WebhookSettings,
)
from stopper.contracts.signing import signature_matches
from stopper.contracts.webhooks import CaseEventType
from stopper.registry import load_registry
from stopper.runtime import build_runtime
from stopper.serving import free_port, serving
from stopper.simulation.institutions import Simulation
from stopper.simulation.profiles import profile
from stopper.simulation.reports import ReportFactory
from stopper.simulation.server import create_simulation_app
from tests.deploy.asyncapi import payload_validator
from tests.integration.conftest import unique_kafka
from tests.integration.helpers import eventually, fast_registry, read_topic

pytestmark = pytest.mark.integration

SETTLED = {"stopped", "not_found", "rejected", "failed"}


@dataclass
class Receiver:
    """An agency's endpoint: records what it accepts; answers 503 while `down`, and to every
    `flaky`-th request."""

    down: bool = False
    flaky: int = 0
    requests: int = 0
    accepted: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.requests += 1
            body = await request.body()
            if self.down or (self.flaky and self.requests % self.flaky == 0):
                return Response(status_code=503)
            self.accepted.append((dict(request.headers), body))
            return Response(status_code=204)

        @app.post("/moved")
        async def moved() -> Response:
            return Response(status_code=307, headers={"location": "/hook"})

        return app


@dataclass
class Scenario:
    settings: Settings
    stopper_port: int
    receiver: Receiver
    receiver_url: str


@pytest.fixture
async def scenario(
    tmp_path: Path, migrated_postgres: str, kafka_bootstrap: str
) -> AsyncIterator[Scenario]:
    registry_path = fast_registry(tmp_path)
    registry = load_registry(registry_path)
    stopper_port = free_port()
    settings = Settings(
        registry_path=registry_path,
        database=DatabaseSettings(url=migrated_postgres, migrate_on_start=False),
        kafka=unique_kafka(kafka_bootstrap),
        api=ApiSettings(port=stopper_port),
        dispatch=DispatchSettings(sweep_interval_ms=100, first_dispatch_grace_s=2),
        webhooks=WebhookSettings(first_retry_s=0.2, max_retry_s=1.0, sweep_interval_ms=50),
    )
    simulation = Simulation(
        registry,
        profile("realistic", registry),
        secret_for=lambda ref: settings.institutions.secret_for(ref, settings.environment),
        stopper_url=f"http://127.0.0.1:{stopper_port}",
    )
    receiver = Receiver()
    async with (
        serving(create_simulation_app(simulation)) as sim_url,
        serving(receiver.app()) as receiver_url,
    ):
        settings = settings.model_copy(
            update={"institutions": InstitutionsSettings(base_url=sim_url)}
        )
        yield Scenario(settings, stopper_port, receiver, receiver_url)
        simulation.close_requests()


def reports(agency: str, count: int, seed: int) -> list[dict[str, Any]]:
    factory = ReportFactory(load_registry(), seed=seed)
    made = []
    for _ in range(count):
        report = factory.report(datetime.now(UTC))
        report["agency"]["code"] = agency
        report["report_id"] = f"{agency}-{uuid.uuid4().hex[:12]}"
        made.append(report)
    return made


async def post_all(client: httpx.AsyncClient, docs: list[dict[str, Any]]) -> list[str]:
    case_ids = []
    for doc in docs:
        answer = await client.post("/v1/reports", json=doc)
        assert answer.status_code == 202, answer.text
        case_ids.append(answer.json()["case_id"])
    return case_ids


async def case_events(settings: Settings, case_ids: list[str]) -> dict[str, list[str]] | None:
    """Each case's event ids in the outbox's order, once every hold has settled and every
    event is published; None before."""
    runtime = build_runtime(settings)
    ids = [UUID(c) for c in case_ids]
    try:
        async with runtime.engine.connect() as connection:
            states = set(
                (
                    await connection.execute(select(HoldRow.state).where(HoldRow.case_id.in_(ids)))
                ).scalars()
            )
            unpublished = await connection.scalar(
                select(func.count())
                .select_from(OutboxRow)
                .where(OutboxRow.published_at.is_(None), OutboxRow.key.in_(case_ids))
            )
            rows = (
                await connection.execute(
                    select(OutboxRow.key, OutboxRow.payload)
                    .where(
                        OutboxRow.topic == settings.kafka.case_events_topic,
                        OutboxRow.key.in_(case_ids),
                    )
                    .order_by(OutboxRow.id)
                )
            ).all()
    finally:
        await runtime.engine.dispose()
    if not states or not states <= SETTLED or unpublished:
        return None
    by_case: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_case[row.key].append(row.payload["event_id"])
    return by_case if set(by_case) == set(case_ids) else None


def received_in_order(receiver: Receiver, secret: str) -> dict[str, list[str]]:
    """Each case's event ids in the order first accepted (a redelivery is a duplicate), every
    signature checked."""
    by_case: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for headers, body in receiver.accepted:
        assert signature_matches(
            secret,
            int(headers["x-stopper-timestamp"]),
            headers["x-stopper-nonce"],
            body,
            headers["x-stopper-signature"],
        )
        event = json.loads(body)
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            by_case[event["case_id"]].append(event["event_id"])
    return by_case


async def test_a_subscribed_agency_gets_every_event_signed_and_in_order_across_a_restart(
    scenario: Scenario, kafka_bootstrap: str
) -> None:
    agency = f"PSB-WH-{uuid.uuid4().hex[:8]}"
    receiver = scenario.receiver
    receiver.down = True
    first = build_runtime(scenario.settings)
    async with (
        serving(create_app(first), port=scenario.stopper_port) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        hook = f"{scenario.receiver_url}/hook"
        made = await client.post(
            f"/v1/agencies/{agency}/webhooks", json={"url": hook, "events": ["case_opened"]}
        )
        assert made.status_code == 201
        subscribed = await client.post(
            f"/v1/agencies/{agency}/webhooks",
            json={"url": hook, "events": [t.value for t in CaseEventType]},
        )
        assert subscribed.status_code == 201, subscribed.text
        webhook_id, secret = subscribed.json()["id"], subscribed.json()["secret"]
        assert (
            await client.delete(f"/v1/agencies/{agency}/webhooks/{made.json()['id']}")
        ).status_code == 204
        listed = (await client.get(f"/v1/agencies/{agency}/webhooks")).json()["webhooks"]
        assert [w["id"] for w in listed] == [webhook_id] and "secret" not in listed[0]

        case_ids = await post_all(client, reports(agency, 3, seed=31))
        log = f"/v1/agencies/{agency}/webhooks/{webhook_id}/deliveries"

        async def failing() -> bool:
            attempts = (await client.get(log)).json()["attempts"]
            return len({a["case_id"] for a in attempts if a["outcome"] == "http_error"}) == 3

        await eventually(failing, timeout=30)

    # Stopper restarts; the receiver is back (and drops one request in five).
    receiver.down, receiver.flaky = False, 5
    second = build_runtime(scenario.settings)
    async with (
        serving(create_app(second), port=scenario.stopper_port) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        moved = await client.post(
            f"/v1/agencies/{agency}/webhooks",
            json={"url": f"{scenario.receiver_url}/moved", "events": ["case_opened"]},
        )
        case_ids += await post_all(client, reports(agency, 2, seed=32))
        expected = await eventually(lambda: case_events(scenario.settings, case_ids), timeout=90)

        async def all_received() -> dict[str, list[str]] | None:
            got = received_in_order(receiver, secret)
            current = await case_events(scenario.settings, case_ids)
            return got if current is not None and got == current else None

        got = await eventually(all_received, timeout=60)
        attempts = (await client.get(log)).json()["attempts"]
        redirected = (
            await client.get(f"/v1/agencies/{agency}/webhooks/{moved.json()['id']}/deliveries")
        ).json()["attempts"]
        metrics = (await client.get("/metrics")).text

    assert set(got) == set(expected) == set(case_ids)
    kinds = [json.loads(b)["type"] for _, b in receiver.accepted]
    assert kinds.count("case_opened") >= 5 and {"hold_stopped"} & set(kinds)
    for case_id, events in got.items():
        first_type = next(
            json.loads(b)["type"]
            for _, b in receiver.accepted
            if json.loads(b)["event_id"] == events[0]
        )
        assert first_type == "case_opened", case_id
    outcomes = {a["outcome"] for a in attempts}
    # A redirect is never followed: logged, retried, and the receiver's /hook saw none of it.
    assert redirected and {a["outcome"] for a in redirected} == {"redirect"}
    assert {a["status_code"] for a in redirected} == {307}
    assert {"delivered", "http_error"} <= outcomes
    assert f'stopper_webhook_attempts_total{{agency="{agency}",outcome="delivered"}}' in metrics
    assert scenario.receiver_url not in metrics

    # The same events on the topic, keyed by case id, each as the AsyncAPI document says.
    total = sum(len(v) for v in got.values())
    # Other tests' cases publish on the topic too: only this scenario's are compared.
    ours = {case_id.encode() for case_id in got}
    records = await read_topic(
        kafka_bootstrap,
        scenario.settings.kafka.case_events_topic,
        total,
        keep=lambda key, _: key in ours,
    )
    validator = payload_validator()
    on_topic: dict[str, list[str]] = defaultdict(list)
    for key, value, _ in records:
        event = json.loads(value)
        assert [e.message for e in validator.iter_errors(event)] == []
        assert key is not None and key.decode() == event["case_id"]
        on_topic[event["case_id"]].append(event["event_id"])
    assert dict(on_topic) == dict(got)


async def test_bad_urls_are_refused_and_agencies_see_only_their_own(
    scenario: Scenario,
) -> None:
    api = scenario.settings.api.model_copy(update={"require_keys": True})
    runtime = build_runtime(scenario.settings.model_copy(update={"api": api}))
    tag = uuid.uuid4().hex[:8]
    mine, theirs = f"PSB-A-{tag}", f"PSB-B-{tag}"
    tokens = {}
    for agency in (mine, theirs):
        stored, tokens[agency] = new_key(agency, KeyRole.INTAKE, "test", datetime.now(UTC))
        await runtime.store.add_api_key(stored)
    app = create_app(runtime, start_runtime=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://s",
        headers={"authorization": f"Bearer {tokens[mine]}"},
    ) as c:
        ok = await c.post(
            f"/v1/agencies/{mine}/webhooks",
            json={"url": "https://agency.example/h", "events": ["hold_stopped"]},
        )
        assert ok.status_code == 201
        other = {"authorization": f"Bearer {tokens[theirs]}"}
        for call in (
            c.get(f"/v1/agencies/{mine}/webhooks", headers=other),
            c.delete(f"/v1/agencies/{mine}/webhooks/{ok.json()['id']}", headers=other),
            c.get(f"/v1/agencies/{mine}/webhooks/{ok.json()['id']}/deliveries", headers=other),
        ):
            assert (await call).status_code == 403
        gone = await c.delete(f"/v1/agencies/{theirs}/webhooks/{ok.json()['id']}", headers=other)
        assert gone.status_code == 404  # its own path, someone else's webhook: none at all
        assert len((await c.get(f"/v1/agencies/{mine}/webhooks")).json()["webhooks"]) == 1
        own = f"http://127.0.0.1:{scenario.stopper_port}/v1/reports"
        for url, reason in [
            ("ftp://agency.example/h", "the URL must be http or https"),
            (own, "the URL points at Stopper itself"),
        ]:
            refused = await c.post(
                f"/v1/agencies/{mine}/webhooks", json={"url": url, "events": ["hold_stopped"]}
            )
            assert refused.status_code == 422 and refused.json()["detail"] == reason
        unknown = await c.post(
            f"/v1/agencies/{mine}/webhooks",
            json={"url": "https://agency.example/h", "events": ["nothing_happened"]},
        )
        assert unknown.status_code == 422
        schema = (await c.get("/openapi.json")).json()
        for path in (
            "/v1/agencies/{agency_code}/webhooks",
            "/v1/agencies/{agency_code}/webhooks/{webhook_id}",
            "/v1/agencies/{agency_code}/webhooks/{webhook_id}/deliveries",
        ):
            assert path in schema["paths"]
    await runtime.engine.dispose()
