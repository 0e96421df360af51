"""Rotating an agency's webhook secret without an outage, on SQLite and PostgreSQL: while the
rotation lasts each delivery is signed by the new secret and the old one (so a receiver holding
either verifies it), and once the agency ends it, or its window passes, only by the new one.
The API's routes for it on the embedded default."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stopper.adapters.db.store import SqlStore
from stopper.app.auth import KeyRole, new_key
from stopper.app.intake import parse_report, to_opened_case
from stopper.app.webhook_delivery import PostOutcome, RetryPolicy, WebhookSender
from stopper.app.webhooks import EventToDeliver, Subscription
from stopper.config import ApiSettings
from stopper.contracts.signing import signature_matches
from stopper.registry import load_registry
from stopper.runtime import Runtime
from tests.factories import report_doc
from tests.integration.helpers import embedded_api, sql_store_on

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def now(self) -> datetime:
        return self.at


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Mapping[str, str]]] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> PostOutcome:
        self.sent.append((body, headers))
        return PostOutcome("delivered", 200)

    async def close(self) -> None: ...


def verifies(secret: str, sent: tuple[bytes, Mapping[str, str]]) -> bool:
    """As an agency's receiver checks: any signature of the header by its secret."""
    body, headers = sent
    timestamp, nonce = int(headers["X-Stopper-Timestamp"]), headers["X-Stopper-Nonce"]
    given = headers["X-Stopper-Signature"].split(", ")
    return any(signature_matches(secret, timestamp, nonce, body, g) for g in given)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with sql_store_on(request, tmp_path, "rotation", "stopper.stop-requests") as store:
        yield store


async def test_a_rotation_signs_by_both_secrets_until_it_is_ended_or_its_window_passes(
    store: SqlStore,
) -> None:
    doc = report_doc()
    report = parse_report(json.dumps(doc).encode(), load_registry())
    case = to_opened_case(report, accepted_at=NOW, opened_at=NOW, source="http")
    await store.record_opened_cases([case])
    subscription = Subscription(
        uuid.uuid4(), doc["agency"]["code"], "http://agency.example/hook", ("hold_stopped",),
        "old-secret", NOW, "test",
    )  # fmt: skip
    await store.add_subscription(subscription)
    clock, receiver = Clock(), Recorder()
    sender = WebhookSender(store, receiver, clock, RetryPolicy())

    async def deliver_one() -> tuple[bytes, Mapping[str, str]]:
        event = EventToDeliver(uuid.uuid4(), "hold_stopped", case.case.id, '{"n":1}')
        assert await store.record_deliveries([event], clock.now()) == 1
        assert await sender.deliver_due() == 1
        return receiver.sent[-1]

    assert verifies("old-secret", await deliver_one())

    assert not await store.end_rotation(subscription.id)  # none under way
    until = NOW + timedelta(hours=24)
    assert await store.rotate_secret(subscription.id, "new-secret", until)
    [listed] = await store.subscriptions_of(subscription.agency_code)
    assert (listed.secret, listed.previous_secret, listed.previous_until) == (
        "new-secret", "old-secret", until,
    )  # fmt: skip
    during = await deliver_one()
    assert verifies("new-secret", during) and verifies("old-secret", during)
    assert during[1]["X-Stopper-Signature"].count("sha256=") == 2

    # The window passes: the old secret signs no more, though nobody ended the rotation.
    clock.at = until + timedelta(seconds=1)
    after_window = await deliver_one()
    assert verifies("new-secret", after_window) and not verifies("old-secret", after_window)

    # Ended by the agency before its window: at once.
    clock.at = NOW + timedelta(hours=1)
    assert await store.rotate_secret(subscription.id, "newer-secret", until)
    assert verifies("new-secret", await deliver_one())  # the one it replaced signs too
    assert await store.end_rotation(subscription.id)
    ended = await deliver_one()
    assert verifies("newer-secret", ended) and not verifies("new-secret", ended)
    assert ended[1]["X-Stopper-Signature"].count("sha256=") == 1

    assert await store.remove_subscription(subscription.id, clock.now())
    assert not await store.rotate_secret(subscription.id, "x", until)  # a removed one


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    async with embedded_api(ApiSettings(require_keys=True), tmp_path / "stopper.db") as api:
        yield api


async def key(runtime: Runtime, role: KeyRole, agency: str | None = None) -> dict[str, str]:
    stored, token = new_key(agency, role, "test", datetime.now(UTC))
    await runtime.store.add_api_key(stored)
    return {"authorization": f"Bearer {token}"}


async def test_the_api_rotates_an_agencys_own_webhook_secret_and_ends_the_rotation(
    guarded: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = guarded
    mine = await key(runtime, KeyRole.INTAKE, "PSB-A")
    theirs = await key(runtime, KeyRole.INTAKE, "PSB-B")
    made = await client.post(
        "/v1/agencies/PSB-A/webhooks",
        json={"url": "http://agency.example/hook", "events": ["hold_stopped"]},
        headers=mine,
    )
    assert made.status_code == 201, made.text
    webhook, first_secret = made.json()["id"], made.json()["secret"]
    base = f"/v1/agencies/PSB-A/webhooks/{webhook}"

    assert (await client.post(f"{base}/secret", headers=theirs)).status_code == 403
    unknown = await client.post(f"/v1/agencies/PSB-A/webhooks/{uuid.uuid4()}/secret", headers=mine)
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no such webhook"

    rotated = await client.post(f"{base}/secret", headers=mine)
    assert rotated.status_code == 201, rotated.text
    answer = rotated.json()
    assert answer["id"] == webhook and answer["secret"] != first_secret
    until = datetime.fromisoformat(answer["previous_valid_until"])
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(hours=24)
    [listed] = (await client.get("/v1/agencies/PSB-A/webhooks", headers=mine)).json()["webhooks"]
    assert "secret" not in listed and datetime.fromisoformat(listed["rotating_until"]) == until

    assert (await client.delete(f"{base}/previous-secret", headers=theirs)).status_code == 403
    assert (await client.delete(f"{base}/previous-secret", headers=mine)).status_code == 204
    again = await client.delete(f"{base}/previous-secret", headers=mine)
    assert again.status_code == 404 and again.json()["detail"] == "no rotation under way"
    [listed] = (await client.get("/v1/agencies/PSB-A/webhooks", headers=mine)).json()["webhooks"]
    assert listed["rotating_until"] is None
    [stored] = await runtime.store.subscriptions_of("PSB-A")
    assert stored.secret == answer["secret"] and stored.previous_secret is None
