"""Stopper as its clients meet it: the API served over loopback on PostgreSQL and the broker,
with the simulated institutions it asks (and that call it back), for the tests of clients that
are not Stopper's own (a generated client, a producer in another language)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from stopper.api.app import create_app
from stopper.config import (
    ApiSettings,
    DatabaseSettings,
    DispatchSettings,
    InstitutionsSettings,
    Settings,
)
from stopper.registry import Registry, load_registry
from stopper.runtime import Runtime, build_runtime
from stopper.serving import free_port, serving
from stopper.simulation.institutions import Simulation
from stopper.simulation.profiles import Behaviour, profile
from stopper.simulation.server import create_simulation_app
from tests.integration.conftest import unique_kafka
from tests.integration.helpers import fast_registry


@dataclass(frozen=True)
class LiveStack:
    url: str  # Stopper's API
    settings: Settings
    runtime: Runtime
    simulation: Simulation
    sim_url: str  # the simulated institutions' (their /ledger, /stats)


@asynccontextmanager
async def live_stack(
    tmp_path: Path,
    postgres_url: str,
    kafka_bootstrap: str,
    by_callback: Mapping[str, bool] | None = None,
    behaviours: Callable[[Registry], dict[str, Behaviour]] | None = None,
    registry_path: Path | None = None,
) -> AsyncIterator[LiveStack]:
    """Stopper (API, intake consumer, dispatcher) and the simulated institutions, which answer
    at once and faultlessly (`instant`, or as `behaviours` of the registry says), or by signed
    callback for the codes `by_callback` says. Topics of its own (`unique_kafka`); the world
    of `registry_path` (default: the fast packaged one, `fast_registry`)."""
    registry_path = registry_path or fast_registry(tmp_path)
    registry = load_registry(registry_path)
    stopper_port = free_port()
    settings = Settings(
        registry_path=registry_path,
        database=DatabaseSettings(url=postgres_url, migrate_on_start=False),
        kafka=unique_kafka(kafka_bootstrap),
        api=ApiSettings(port=stopper_port),
        dispatch=DispatchSettings(sweep_interval_ms=100, first_dispatch_grace_s=2),
    )
    behaving = (behaviours or (lambda r: profile("instant", r)))(registry)
    for code, later in (by_callback or {}).items():
        behaving[code] = replace(behaving[code], answers_by_callback=later)
    simulation = Simulation(
        registry,
        behaving,
        secret_for=lambda ref: settings.institutions.secret_for(ref, settings.environment),
        stopper_url=f"http://127.0.0.1:{stopper_port}",
    )
    async with serving(create_simulation_app(simulation)) as sim_url:
        settings = settings.model_copy(
            update={"institutions": InstitutionsSettings(base_url=sim_url)}
        )
        runtime = build_runtime(settings)
        async with serving(create_app(runtime), port=stopper_port) as url:
            yield LiveStack(url, settings, runtime, simulation, sim_url)
        simulation.close_requests()
