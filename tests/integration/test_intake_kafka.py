"""Intake end to end on the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from stopper.adapters.db.models import CaseRow, HoldRow, OutboxRow
from stopper.api.app import create_app
from stopper.app.consuming import consume
from stopper.app.intake import IntakeResult
from stopper.app.ports import Message
from stopper.domain.cases import case_id_for
from stopper.errors import BusRefused
from stopper.runtime import Runtime, build_runtime
from tests.factories import report_doc
from tests.integration.conftest import real_settings, unique_kafka
from tests.integration.helpers import eventually, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(real_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(real_runtime, start_runtime=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stopper") as c:
        yield c


async def case_json(client: httpx.AsyncClient, case_id: str) -> dict[str, Any] | None:
    answer = await client.get(f"/v1/cases/{case_id}")
    return answer.json() if answer.status_code == 200 else None


async def count_rows(runtime: Runtime, model: type, **where: object) -> int:
    async with runtime.engine.connect() as connection:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(await connection.scalar(query) or 0)


async def test_report_over_http_becomes_case_and_holds(
    client: httpx.AsyncClient, real_runtime: Runtime
) -> None:
    doc = report_doc()
    answer = await client.post("/v1/reports", json=doc)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["case_id"] == str(case_id_for(doc["report_id"]))
    assert answer.headers["location"] == body["status_url"] == f"/v1/cases/{body['case_id']}"

    case = await eventually(lambda: case_json(client, body["case_id"]))
    assert sum(case["holds_by_state"].values()) == 2
    assert {(h["institution_code"], h["account"], h["amount_asked"]) for h in case["holds"]} == {
        ("BK01", "****3333", "20000.50"),
        ("PI04", "****5678", "820.00"),
    }
    assert "6222111122223333" not in json.dumps(case)

    # The worker that opened the case sends its stop requests itself, not via the broker.
    async def dispatched() -> dict[str, Any] | None:
        now = await case_json(client, body["case_id"])
        return now if now and "requested" not in now["holds_by_state"] else None

    assert sum((await eventually(dispatched))["holds_by_state"].values()) == 2
    topic = real_runtime.settings.kafka.stop_requests_topic
    assert await count_rows(real_runtime, OutboxRow, topic=topic) == 0


async def test_duplicate_report_is_one_case(
    client: httpx.AsyncClient, real_runtime: Runtime
) -> None:
    doc = report_doc()
    answers = [await client.post("/v1/reports", json=doc) for _ in range(2)]
    case_id = answers[0].json()["case_id"]
    await eventually(lambda: case_json(client, case_id))
    third = await client.post("/v1/reports", json=doc)
    assert {a.json()["case_id"] for a in [*answers, third]} == {case_id}
    assert third.status_code == 200 and third.json()["duplicate"] is True
    await asyncio.sleep(1)  # let the consumer take the second record too
    assert await count_rows(real_runtime, CaseRow, report_id=doc["report_id"]) == 1

    changed = dict(doc, victims=[{"victim_id": "V1"}, {"victim_id": "V2"}])
    conflict = await client.post("/v1/reports", json=changed)
    assert conflict.status_code == 409


async def test_bad_record_goes_to_dlq_and_the_next_is_processed(
    real_runtime: Runtime, kafka_bootstrap: str, client: httpx.AsyncClient
) -> None:
    topics = real_runtime.settings.kafka
    good = report_doc()
    await real_runtime.bus.publish(topics.reports_topic, "bad-1", b'{"report_id": 42')
    await real_runtime.bus.publish(
        topics.reports_topic, good["report_id"], json.dumps(good).encode()
    )
    await eventually(lambda: case_json(client, str(case_id_for(good["report_id"]))))
    [(key, value, headers)] = await read_topic(kafka_bootstrap, topics.reports_dlq_topic, 1)
    assert (key, value) == (b"bad-1", b'{"report_id": 42')
    assert headers["stopper-dlq-reason"].startswith("body: Invalid JSON")
    assert json.loads(headers["stopper-dlq-origin"])["topic"] == topics.reports_topic


async def test_a_bad_stop_request_goes_to_its_dlq_and_the_consumer_goes_on(
    real_runtime: Runtime, kafka_bootstrap: str
) -> None:
    topics = real_runtime.settings.kafka
    await real_runtime.bus.publish(topics.stop_requests_topic, "bad-1", b"not a stop request")
    [(key, value, headers)] = await read_topic(kafka_bootstrap, topics.stop_requests_dlq_topic, 1)
    assert (key, value) == (b"bad-1", b"not a stop request")
    assert headers["stopper-dlq-reason"].startswith("not a stop request: ")
    assert json.loads(headers["stopper-dlq-origin"])["topic"] == topics.stop_requests_topic
    # The consumer committed past it and takes the next record.
    await real_runtime.bus.publish(topics.stop_requests_topic, "bad-2", b'{"hold_id": "x"}')
    records = await read_topic(kafka_bootstrap, topics.stop_requests_dlq_topic, 2)
    assert {k for k, _, _ in records} == {b"bad-1", b"bad-2"}


async def test_crash_between_db_commit_and_offset_commit_makes_no_second_case(
    migrated_postgres: str, kafka_bootstrap: str
) -> None:
    kafka = unique_kafka(kafka_bootstrap)
    runtime = build_runtime(real_settings(migrated_postgres, kafka))
    await runtime.start(consumers=False)
    try:
        doc = report_doc()
        case_id: UUID = case_id_for(doc["report_id"])
        await runtime.bus.publish(kafka.reports_topic, doc["report_id"], json.dumps(doc).encode())

        # First life: the batch is handled (database committed), then the process dies before
        # the offset commit.
        first = runtime.bus.subscribe(kafka.reports_topic, kafka.intake_group)
        batch: Sequence[Message] = []
        while not batch:
            batch = await first.next_batch()
        assert (await runtime.intake.handle_batch(batch)).created == 1
        await first.close()

        # Second life: the record comes again and changes nothing.
        results: list[IntakeResult] = []

        async def recording(messages: Sequence[Message]) -> None:
            results.append(await runtime.intake.handle_batch(messages))

        stopping = asyncio.Event()
        second = runtime.bus.subscribe(kafka.reports_topic, kafka.intake_group)
        task = asyncio.create_task(consume(second, recording, name="t", stopping=stopping))
        await eventually(lambda: asyncio.sleep(0, results or None))
        stopping.set()
        await task
        assert [(r.created, r.duplicates) for r in results] == [(0, 1)]
        assert await count_rows(runtime, CaseRow, id=case_id) == 1
        assert await count_rows(runtime, HoldRow, case_id=case_id) == 2
    finally:
        await runtime.stop()


async def test_a_record_too_large_for_the_broker_is_refused_not_retried(
    real_runtime: Runtime,
) -> None:
    # Past the producer's max_request_size (1 MiB): aiokafka says not `retriable`.
    topic = real_runtime.settings.kafka.reports_topic
    with pytest.raises(BusRefused) as raised:
        await real_runtime.bus.publish(topic, "too-large", b"x" * 2_000_000)
    assert not raised.value.retryable
    assert type(raised.value.__cause__).__name__ == "MessageSizeTooLargeError"
    # The bus is still there for what it can take.
    await real_runtime.bus.publish(topic, "small", b"{}")
