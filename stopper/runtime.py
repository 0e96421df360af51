"""Wiring: builds the adapters the settings ask for and runs Stopper's consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from stopper import metrics
from stopper.adapters.clock import SystemClock
from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.store import SqlStore
from stopper.adapters.institutions.by_adapter import AdapterPerInstitution
from stopper.adapters.institutions.http_json import HttpJsonAdapter
from stopper.adapters.institutions.iso20022.adapter import Iso20022Adapter
from stopper.adapters.kafka_bus import KafkaBus
from stopper.adapters.memory_bus import InProcessBus
from stopper.adapters.sqlite_bus import SqliteBus
from stopper.adapters.webhook_http import HttpWebhookTransport
from stopper.app.acceptance import ReportAcceptance
from stopper.app.approvals import ApprovalDesk
from stopper.app.auth import ApiKeys
from stopper.app.background import RefusedLoops, run_periodically
from stopper.app.callbacks import CallbackHandler
from stopper.app.consuming import consume
from stopper.app.deadlines import DeadlineKeeper
from stopper.app.dispatch import Dispatcher
from stopper.app.freezes import FreezeDesk
from stopper.app.gateway import InstitutionGateway
from stopper.app.intake import IntakeHandler, IntakeTopics
from stopper.app.loop_lag import LoopLag
from stopper.app.ports import Bus, Clock
from stopper.app.reconcile import Reconciler
from stopper.app.releases import ReleaseDesk
from stopper.app.retention import Retention, RetentionPolicy
from stopper.app.returns import ReturnDesk
from stopper.app.reverify import Reverifier
from stopper.app.rotating_secrets import RotatingSecret
from stopper.app.stop_requests import StopRequestConsumer, publish_outbox
from stopper.app.webhook_delivery import RetryPolicy, WebhookFanOut, WebhookSender
from stopper.app.webhooks import WebhookDesk, own_addresses
from stopper.config import Role, Settings
from stopper.domain.holds import HoldState
from stopper.errors import ConfigurationError
from stopper.registry import Registry, load_registry

log = logging.getLogger(__name__)

# How often a worker looks for rows past their retention (`stopper.app.retention`) when none
# were due; while some are, it deletes batch after batch.
RETENTION_INTERVAL_S = 60.0


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    clock: Clock
    engine: AsyncEngine
    store: SqlStore
    bus: Bus
    intake: IntakeHandler
    dispatcher: Dispatcher
    adapter: AdapterPerInstitution
    outbox_written: asyncio.Event
    callbacks: CallbackHandler
    deadlines: DeadlineKeeper
    freezes: FreezeDesk
    returns: ReturnDesk
    keys: ApiKeys
    reconciler: Reconciler
    acceptance: ReportAcceptance
    webhooks: WebhookDesk
    webhook_sender: WebhookSender
    webhook_transport: HttpWebhookTransport
    approvals: ApprovalDesk
    releases: ReleaseDesk
    reverifier: Reverifier
    # Loops whose work the bus refuses right now (they keep trying, slowly): not ready meanwhile.
    refusals: RefusedLoops = field(default_factory=RefusedLoops)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _schema_ready: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, *, consumers: bool | None = None) -> None:
        """Migrate (if configured), connect the bus, and start the consumers and background
        jobs (unless `consumers` is False; by default, unless this process has the api role)."""
        if self.settings.database.migrate_on_start:
            await migrate.upgrade(self.engine)
        await self.bus.start()
        if consumers is None:
            consumers = self.settings.role is not Role.API
        if not consumers:
            return
        # The processes that call institutions in the background watch their loop's stalls
        # (`LoopLag`): a call failed by a stall of their own is not held against the institution.
        lag = self.dispatcher.gateway.lag
        if lag is not None:
            self._spawn("loop-lag", lag.run(self._stopping))
        kafka = self.settings.kafka
        dispatch = self.settings.dispatch
        stop_requests = StopRequestConsumer(
            self.dispatcher, self.bus, kafka.stop_requests_dlq_topic
        )
        self._spawn(
            "consumer:intake",
            consume(
                self.bus.subscribe(kafka.reports_topic, kafka.intake_group),
                self.intake.handle_batch,
                name="intake",
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "consumer:dispatch",
            consume(
                self.bus.subscribe(
                    kafka.stop_requests_topic,
                    kafka.dispatch_group,
                    fetch_max_wait_ms=kafka.dispatch_fetch_max_wait_ms,
                ),
                stop_requests.handle_batch,
                name="dispatch",
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "consumer:webhooks",
            consume(
                self.bus.subscribe(
                    kafka.case_events_topic,
                    kafka.webhooks_group,
                    fetch_max_wait_ms=kafka.webhooks_fetch_max_wait_ms,
                ),
                WebhookFanOut(self.store, self.clock).handle_batch,
                name="webhooks",
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "webhook-sender",
            run_periodically(
                "webhook sender",
                self.webhook_sender.deliver_due,
                interval_s=self.settings.webhooks.sweep_interval_ms / 1000,
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "outbox-relay",
            run_periodically(
                "outbox relay",
                self._relay_outbox,
                interval_s=dispatch.relay_interval_ms / 1000,
                stopping=self._stopping,
                refusals=self.refusals,
                wake=self.outbox_written,
            ),
        )
        self._spawn(
            "retry-sweeper",
            run_periodically(
                "retry sweeper",
                self.dispatcher.sweep_once,
                interval_s=dispatch.sweep_interval_ms / 1000,
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "deadline-sweeper",
            run_periodically(
                "deadline sweeper",
                self.deadlines.sweep_once,
                interval_s=self.settings.deadlines.sweep_interval_ms / 1000,
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "freeze-sweeper",
            run_periodically(
                "freeze sweeper",
                self.freezes.sweep_once,
                interval_s=self.settings.dispatch.sweep_interval_ms / 1000,
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "return-sweeper",
            run_periodically(
                "return sweeper",
                self.returns.sweep_once,
                interval_s=self.settings.dispatch.sweep_interval_ms / 1000,
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "release-sweeper",
            run_periodically(
                "release sweeper",
                self.releases.sweep_once,
                interval_s=self.settings.dispatch.sweep_interval_ms / 1000,
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "reconciler",
            run_periodically(
                "reconciler",
                self.reconciler.sweep_once,
                interval_s=dispatch.reconcile_interval_s,
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )
        self._spawn(
            "reverifier",
            run_periodically(
                "reverifier",
                self.reverifier.run_once,
                interval_s=self.settings.reverify.poll_interval_s,
                stopping=self._stopping,
                refusals=self.refusals,
                wake=self.reverifier.started,
            ),
        )
        retention = Retention(
            self.store,
            RetentionPolicy.of(
                dispatch.outbox_retention_h, self.settings.institutions.callback_window_s
            ),
            self.clock,
        )
        self._spawn(
            "retention",
            run_periodically(
                "retention",
                retention.prune_once,
                interval_s=RETENTION_INTERVAL_S,
                stopping=self._stopping,
            ),
        )
        self._spawn(
            "gauges",
            run_periodically(
                "gauges",
                self._refresh_gauges,
                interval_s=5.0,
                stopping=self._stopping,
                refusals=self.refusals,
            ),
        )

    def _spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))

    async def _relay_outbox(self) -> int:
        return await self.store.relay_outbox(
            lambda messages: publish_outbox(self.bus, messages),
            self.settings.dispatch.relay_batch,
        )

    async def _refresh_gauges(self) -> int:
        by_state, outbox_pending = await self.store.gauge_counts()
        for state in HoldState:
            metrics.HOLDS.labels(state.value).set(by_state.get(state.value, 0))
        metrics.OUTBOX_PENDING.set(outbox_pending)
        overdue = self.clock.now() - timedelta(seconds=self.settings.dispatch.unconfirmed_alert_s)
        metrics.HOLDS_UNCONFIRMED_OVERDUE.set(await self.store.count_unconfirmed(overdue))
        self.dispatcher.gateway.publish_breaker_states()
        await self.store.save_health(
            self.settings.instance_id, self.dispatcher.gateway.health_snapshots(), self.clock.now()
        )
        return 0

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            # A consumer still joining its group does not notice `_stopping`: cancel it.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout=10)
        self._tasks.clear()
        await self.dispatcher.close()
        await self.freezes.close()
        await self.returns.close()
        await self.releases.close()
        await self.bus.stop()
        await self.adapter.close()
        await self.webhook_transport.close()
        await self.engine.dispose()

    async def schema_ready(self) -> bool:
        """The database schema is at the newest migration (remembered once it is)."""
        if not self._schema_ready:
            try:
                self._schema_ready = await migrate.at_head(self.engine)
            except Exception:  # an unreachable database is the `database` check's to report
                log.warning("cannot read the schema version", exc_info=True)
                return False
        return self._schema_ready

    def consumers_alive(self) -> bool:
        """Every consumer and background loop runs, and none is refused by the bus."""
        return all(not t.done() for t in self._tasks) and not self.refusals.names()


def build_runtime(
    settings: Settings, *, clock: Clock | None = None, deadline_clock: Clock | None = None
) -> Runtime:
    """`clock` runs everything; `deadline_clock` (default: the same) only the stops'
    deadlines, so an accelerated run keeps real timeouts and signature windows."""
    clock = clock or SystemClock()
    registry = load_registry(settings.registry_path)
    engine = create_engine(settings.database)
    store = SqlStore(engine, settings.kafka.stop_requests_topic, settings.kafka.case_events_topic)
    kafka = settings.kafka
    bus: Bus
    if kafka.bootstrap is None and engine.dialect.name == "sqlite":
        # The embedded default: the records in the store's database file, on connections of
        # the bus's own (the outbox relay publishes while it holds the store's only one).
        writes, reads = create_engine(settings.database), create_engine(settings.database)
        bus = SqliteBus(writes, reads, clock, max_batch=kafka.max_batch)
    elif kafka.bootstrap is None:
        bus = InProcessBus(clock, max_batch=kafka.max_batch)
    else:
        bus = KafkaBus(
            kafka,
            topics=(
                kafka.reports_topic,
                kafka.reports_dlq_topic,
                kafka.stop_requests_topic,
                kafka.stop_requests_dlq_topic,
                kafka.hold_events_topic,
                kafka.case_events_topic,
            ),
        )
    outbox_written = asyncio.Event()
    # Each institution's calls go through the adapter its registry entry names; the ISO 20022
    # adapter sends its XML (and its JSON status inquiries, freezes and releases) through the
    # same client.
    http_json = HttpJsonAdapter(settings.institutions.base_url)
    adapter = AdapterPerInstitution(
        {"http_json": http_json, "iso20022": Iso20022Adapter(http_json, store, clock)}, registry
    )
    gateway = InstitutionGateway(adapter, registry, hedge=settings.dispatch.hedge, lag=LoopLag())
    dispatcher = Dispatcher(
        store,
        gateway,
        clock,
        settings.dispatch_policy(),
        on_outbox=outbox_written.set,
        deadline_clock=deadline_clock,
    )
    intake = IntakeHandler(
        store,
        bus,
        clock,
        registry,
        IntakeTopics(dead_letter=kafka.reports_dlq_topic),
        dispatch=dispatcher,
    )
    callbacks = CallbackHandler(
        dispatcher,
        registry,
        clock,
        callback_secrets(settings, registry),
        settings.institutions.callback_window_s,
    )
    hooks = settings.webhooks
    webhook_transport = HttpWebhookTransport()
    webhook_sender = WebhookSender(
        store,
        webhook_transport,
        clock,
        RetryPolicy(
            timeout=timedelta(seconds=hooks.timeout_s),
            first_retry=timedelta(seconds=hooks.first_retry_s),
            max_retry=timedelta(seconds=hooks.max_retry_s),
            retry_for=timedelta(seconds=hooks.retry_for_s),
        ),
        batch=hooks.batch,
    )
    api = settings.api
    freezes = FreezeDesk(store, gateway, clock, settings.deadline_policy())
    returns = ReturnDesk(store, gateway, clock)
    return Runtime(
        settings,
        registry,
        clock,
        engine,
        store,
        bus,
        intake,
        dispatcher,
        adapter,
        outbox_written,
        callbacks,
        DeadlineKeeper(
            store,
            registry,
            deadline_clock or clock,
            settings.deadline_policy(),
            events_topic=kafka.hold_events_topic,
            stop_requests_topic=kafka.stop_requests_topic,
            on_outbox=outbox_written.set,
        ),
        freezes,
        returns,
        ApiKeys(store),
        Reconciler(store, dispatcher, clock),
        ReportAcceptance(store, bus, clock, registry, kafka.reports_topic),
        WebhookDesk(
            store,
            clock,
            own_addresses(api.host, api.port, api.public_url),
            timedelta(hours=settings.webhooks.rotation_window_h),
        ),
        webhook_sender,
        webhook_transport,
        ApprovalDesk(
            store, returns, freezes, clock, freezes_need_approval=settings.approvals.freezes
        ),
        ReleaseDesk(store, gateway, clock),
        Reverifier(
            store,
            dispatcher,
            clock,
            owner=settings.instance_id,
            policy=settings.reverify.policy(),
        ),
    )


def callback_secrets(settings: Settings, registry: Registry) -> dict[str, RotatingSecret]:
    """Every institution's callback secret (with its previous one during a rotation window),
    resolved at start-up: a missing one stops start-up outside development."""
    try:
        return {
            i.callback_secret_ref: settings.institutions.rotating_secret_for(
                i.callback_secret_ref, settings.environment
            )
            for i in registry.values()
        }
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
