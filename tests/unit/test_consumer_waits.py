"""Each of a worker's consumers fetches with the wait its settings give it: intake's is short
(report -> stop request on a broker that waits out the maximum), the stop-request consumer's
and the webhook fan-out's longer (an idle fetch costs the broker and the worker)."""

from __future__ import annotations

from pathlib import Path

from stopper.adapters.memory_bus import InProcessBus, InProcessSubscription
from stopper.app.ports import Clock
from stopper.config import Settings
from stopper.config.sections import DatabaseSettings, KafkaSettings
from stopper.runtime import build_runtime


class RecordingBus(InProcessBus):
    """The in-process bus, remembering the fetch wait each subscription asked for."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.waits: dict[str, int | None] = {}

    def subscribe(
        self, topic: str, group: str, fetch_max_wait_ms: int | None = None
    ) -> InProcessSubscription:
        self.waits[topic] = fetch_max_wait_ms
        return super().subscribe(topic, group, fetch_max_wait_ms)


async def test_each_consumer_fetches_with_its_own_wait(tmp_path: Path) -> None:
    kafka = KafkaSettings(
        fetch_max_wait_ms=7, dispatch_fetch_max_wait_ms=70, webhooks_fetch_max_wait_ms=700
    )
    settings = Settings(
        database=DatabaseSettings(embedded_path=tmp_path / "stopper.db"), kafka=kafka
    )
    runtime = build_runtime(settings)
    bus = RecordingBus(runtime.clock)
    runtime.bus = bus
    await runtime.start(consumers=True)
    try:
        assert bus.waits == {
            kafka.reports_topic: None,  # the bus's default: `fetch_max_wait_ms`
            kafka.stop_requests_topic: 70,
            kafka.case_events_topic: 700,
        }
    finally:
        await runtime.stop()


def test_the_webhook_fan_out_waits_longer_than_intake_by_default() -> None:
    kafka = KafkaSettings()
    assert kafka.fetch_max_wait_ms < kafka.webhooks_fetch_max_wait_ms
    assert kafka.fetch_max_wait_ms < kafka.dispatch_fetch_max_wait_ms
