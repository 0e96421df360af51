"""Wiring: builds the adapters the settings ask for and runs Stopper's consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from stopper.adapters.clock import SystemClock
from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.store import SqlStore
from stopper.adapters.kafka_bus import KafkaBus
from stopper.adapters.memory_bus import InProcessBus
from stopper.app.consuming import consume
from stopper.app.intake import IntakeHandler, IntakeTopics
from stopper.app.ports import Bus, Clock
from stopper.config import Settings
from stopper.registry import Registry, load_registry

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    clock: Clock
    engine: AsyncEngine
    store: SqlStore
    bus: Bus
    intake: IntakeHandler
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, *, consumers: bool = True) -> None:
        """Migrate (if configured), connect the bus, and start the consumers."""
        if self.settings.database.migrate_on_start:
            await migrate.upgrade(self.engine)
        await self.bus.start()
        if consumers:
            kafka = self.settings.kafka
            subscription = self.bus.subscribe(kafka.reports_topic, kafka.intake_group)
            self._tasks.append(
                asyncio.create_task(
                    consume(
                        subscription,
                        self.intake.handle_batch,
                        name="intake",
                        stopping=self._stopping,
                    ),
                    name="consumer:intake",
                )
            )

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        self._tasks.clear()
        await self.bus.stop()
        await self.engine.dispose()

    def consumers_alive(self) -> bool:
        return all(not t.done() for t in self._tasks)


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    clock = clock or SystemClock()
    registry = load_registry(settings.registry_path)
    engine = create_engine(settings.database)
    store = SqlStore(engine)
    kafka = settings.kafka
    bus: Bus
    if kafka.bootstrap is None:
        bus = InProcessBus(clock, max_batch=kafka.max_batch)
    else:
        bus = KafkaBus(
            kafka, topics=(kafka.reports_topic, kafka.reports_dlq_topic, kafka.stop_requests_topic)
        )
    intake = IntakeHandler(
        store,
        bus,
        clock,
        registry,
        IntakeTopics(dead_letter=kafka.reports_dlq_topic, stop_requests=kafka.stop_requests_topic),
    )
    return Runtime(settings, registry, clock, engine, store, bus, intake)
