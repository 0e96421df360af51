"""Integration fixtures: Stopper on the real PostgreSQL and the real Kafka-protocol broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.config import DatabaseSettings, KafkaSettings, Settings
from stopper.runtime import Runtime, build_runtime

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def migrated_postgres(postgres_url: str) -> str:
    engine = create_engine(DatabaseSettings(url=postgres_url))
    await migrate.upgrade(engine)
    await engine.dispose()
    return postgres_url


def unique_kafka(bootstrap: str) -> KafkaSettings:
    """Topics and group of one test's own, so tests never see each other's records."""
    tag = uuid.uuid4().hex[:10]
    return KafkaSettings(
        bootstrap=bootstrap,
        reports_topic=f"stopper.reports.{tag}",
        reports_dlq_topic=f"stopper.reports.dlq.{tag}",
        stop_requests_topic=f"stopper.stop-requests.{tag}",
        stop_requests_dlq_topic=f"stopper.stop-requests.dlq.{tag}",
        intake_group=f"stopper-intake-{tag}",
        dispatch_group=f"stopper-dispatch-{tag}",
        case_events_topic=f"stopper.case-events.{tag}",
        webhooks_group=f"stopper-webhooks-{tag}",
        topic_partitions=3,
    )


def real_settings(postgres_url: str, kafka: KafkaSettings) -> Settings:
    return Settings(
        database=DatabaseSettings(url=postgres_url, migrate_on_start=False), kafka=kafka
    )


@pytest.fixture
async def real_runtime(migrated_postgres: str, kafka_bootstrap: str) -> AsyncIterator[Runtime]:
    runtime = build_runtime(real_settings(migrated_postgres, unique_kafka(kafka_bootstrap)))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
