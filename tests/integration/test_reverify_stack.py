"""Re-verification on the real stack (PostgreSQL, the broker, the simulated institutions over
HTTP): holds are stopped, some institutions lift stops on their own, a re-verification asks
again, Stopper restarts in the middle of it and the new process resumes where it stopped, and
every first-level hold ends as its institution's ledger says, the divergences recorded."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from stopper import cli
from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.models import HoldRow, HoldTransitionRow
from stopper.api.app import create_app
from stopper.config import (
    ApiSettings,
    DatabaseSettings,
    DispatchSettings,
    InstitutionsSettings,
    ReverifySettings,
    Settings,
)
from stopper.registry import load_registry
from stopper.runtime import build_runtime
from stopper.serving import free_port, serving
from stopper.simulation.institutions import Simulation
from stopper.simulation.profiles import profile
from stopper.simulation.server import create_simulation_app
from tests.integration.conftest import unique_kafka
from tests.integration.helpers import eventually, fast_registry
from tests.integration.test_fanout import post_reports
from tests.servers import create_database, drop_database

pytestmark = pytest.mark.integration

PAGE = 3
# Stopper's state for what the ledger says of a first-level hold's newest stop.
_CONVERGED = {"stopped": "stopped", "lifted": "expired", "not_found": "not_found"}


@pytest.fixture
async def stack(
    tmp_path: Path, postgres_url: str, kafka_bootstrap: str
) -> AsyncIterator[tuple[Settings, Simulation, str]]:
    """Settings for Stopper on a database of its own (the job asks about every stopped hold
    there), small pages at a slow pace so the test can stop it midway, a short lease; the
    simulated institutions answering at once."""
    database_url = await create_database(postgres_url, "reverify")
    engine = create_engine(DatabaseSettings(url=database_url))
    await migrate.upgrade(engine)
    await engine.dispose()
    registry_path = fast_registry(tmp_path)
    registry = load_registry(registry_path)
    simulation = Simulation(
        registry,
        profile("instant", registry),
        secret_for=lambda ref: "unused",
        stopper_url=f"http://127.0.0.1:{free_port()}",
    )
    async with serving(create_simulation_app(simulation)) as sim_url:
        settings = Settings(
            registry_path=registry_path,
            instance_id="stopper-1",
            database=DatabaseSettings(url=database_url, migrate_on_start=False),
            kafka=unique_kafka(kafka_bootstrap),
            api=ApiSettings(port=free_port()),
            dispatch=DispatchSettings(sweep_interval_ms=100, first_dispatch_grace_s=2),
            institutions=InstitutionsSettings(base_url=sim_url),
            reverify=ReverifySettings(
                page=PAGE, holds_per_s=PAGE / 0.4, lease_s=1, poll_interval_s=0.2
            ),
        )
        yield settings, simulation, sim_url
        simulation.close_requests()
    await drop_database(database_url)


async def command(args: list[str]) -> tuple[int, str]:
    """A `stopper` command, as an operator runs it: its exit code, and what it printed (the
    error line on stderr too)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = await asyncio.to_thread(cli.main, args)
    return code, out.getvalue()


async def first_level(settings: Settings, case_ids: list[str]) -> dict[UUID, tuple[str, str, int]]:
    """The cases' first-level holds: institution, state, amount stopped."""
    engine = create_engine(settings.database)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(
                    HoldRow.id, HoldRow.institution_code, HoldRow.state, HoldRow.amount_stopped
                ).where(HoldRow.case_id.in_([UUID(c) for c in case_ids]), HoldRow.layer == 1)
            )
            return {r.id: (r.institution_code, r.state, r.amount_stopped) for r in rows}
    finally:
        await engine.dispose()


async def causes(settings: Settings, hold_ids: list[UUID]) -> dict[UUID, str]:
    """Each hold's newest transition's cause."""
    engine = create_engine(settings.database)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(HoldTransitionRow.hold_id, HoldTransitionRow.cause)
                .where(HoldTransitionRow.hold_id.in_(hold_ids))
                .order_by(HoldTransitionRow.id)
            )
            return {r.hold_id: r.cause for r in rows}
    finally:
        await engine.dispose()


async def test_a_reverification_resumed_after_a_restart_converges_to_the_ledger(
    stack: tuple[Settings, Simulation, str],
) -> None:
    settings, simulation, sim_url = stack
    first = build_runtime(settings)
    async with serving(create_app(first), port=settings.api.port) as url:
        case_ids = await post_reports(url, 12, seed=93)

        async def settled() -> dict[UUID, tuple[str, str, int]] | None:
            holds = await first_level(settings, case_ids)
            busy = {"requested", "sent", "unconfirmed"}
            return holds if holds and not any(s in busy for _, s, _ in holds.values()) else None

        holds = await eventually(settled, timeout=60)
        stopped = sorted(h for h, (_, state, _) in holds.items() if state == "stopped")
        assert len(stopped) >= 3 * PAGE, holds
        # Some institutions lift stops on their own decision: every third stopped hold.
        lifted = stopped[::3]
        async with httpx.AsyncClient(base_url=sim_url) as bank:
            for hold_id in lifted:
                answer = await bank.post(
                    f"/institutions/{holds[hold_id][0]}/ledger/lifted",
                    json={"idempotency_keys": [f"stopper-{hold_id}-0"]},
                )
                assert answer.json() == {"lifted": 1}
        code, printed = await command(["reverify", "--url", url, "--json", "--by", "ana"])
        assert code == 0, printed
        job = json.loads(printed)
        assert (job["state"], job["holds"], job["institution"]) == ("running", len(stopped), None)
        code, printed = await command(["reverify", "--url", url, "--institution", "BK01"])
        assert code != 0 and "409" in printed and job["id"] in printed, printed

        async def begun() -> dict[str, Any] | None:
            async with httpx.AsyncClient(base_url=url) as client:
                now = (await client.get(f"/v1/reverifications/{job['id']}")).json()
            return now if now["asked"] >= PAGE else None

        midway = await eventually(begun, timeout=30)
        assert midway["state"] == "running" and midway["remaining"] > 0, midway
    # Stopper restarts (another process: the first one's lease lapses and the job is resumed).
    asked_before = simulation.stats()["totals"]["status_keys_asked"]
    second = build_runtime(settings.model_copy(update={"instance_id": "stopper-2"}))
    async with (
        serving(create_app(second), port=settings.api.port) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):

        async def finished() -> dict[str, Any] | None:
            now = (await client.get(f"/v1/reverifications/{job['id']}")).json()
            return now if now["state"] == "finished" else None

        done = await eventually(finished, timeout=60)
        divergences = (await client.get("/v1/divergences?limit=1000")).json()["divergences"]
        listed = (await client.get("/v1/reverifications")).json()["reverifications"]
        # Asked again, every hold is confirmed now.
        code, printed = await command(["reverify", "--url", url, "--wait"])
    assert code == 0 and "0 diverged" in printed and "finished" in printed, printed
    assert done["outcomes"] == {"confirmed": len(stopped) - len(lifted), "lifted": len(lifted)}
    assert (done["asked"], done["diverged"], done["remaining"]) == (len(stopped), len(lifted), 0)
    assert done["requested_by"].startswith("operator:ana")
    assert [j["id"] for j in listed] == [job["id"]]
    # Resumed, not started over: each hold asked once, but for the page under way at the stop;
    # the second job asked about the holds still stopped.
    asked = simulation.stats()["totals"]["status_keys_asked"]
    both_jobs = len(stopped) + len(stopped) - len(lifted)
    assert asked_before < len(stopped) and both_jobs <= asked <= both_jobs + PAGE
    # Stopper's first-level holds are what each institution's ledger says.
    ledger = {UUID(e["hold_id"]): e for e in simulation.ledger()}
    now_held = await first_level(settings, case_ids)
    for hold_id, (_, state, amount) in now_held.items():
        entry = ledger[hold_id]
        assert _CONVERGED.get(entry["status"], entry["status"]) == state, (entry, state)
        if state == "stopped":
            assert entry["amount_held"] == amount
    assert {h for h, (_, s, _) in now_held.items() if s == "expired"} == set(lifted)
    assert {(UUID(d["hold_id"]), d["institution_status"], d["found_by"]) for d in divergences} == {
        (h, "lifted", "reverification") for h in lifted
    }
    found = await causes(settings, lifted)
    assert all(c == "reverified: the institution says lifted" for c in found.values()), found
