"""The truth at the institutions, on the real stack (PostgreSQL, the broker, the simulated
institutions over HTTP): callbacks that never arrive are found by status inquiry and by
reconciliation, an accepted request is never sent again, and every hold ends as its
institution's own ledger says."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import ColumnElement, select

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
    Role,
    Settings,
)
from stopper.registry import load_registry
from stopper.runtime import build_runtime
from stopper.serving import free_port, serving
from stopper.simulation.institutions import Simulation
from stopper.simulation.profiles import Behaviour, profile
from stopper.simulation.server import create_simulation_app
from tests.integration.conftest import unique_kafka
from tests.integration.helpers import eventually, fast_registry
from tests.integration.test_fanout import post_reports
from tests.servers import create_database, drop_database

pytestmark = pytest.mark.integration

_MATCHES = {"stopped": "stopped", "not_found": "not_found", "rejected": "rejected"}


async def stopper_holds(settings: Settings, case_ids: list[str]) -> dict[str, tuple[str, int]]:
    runtime = build_runtime(settings)
    try:
        async with runtime.engine.connect() as connection:
            rows = await connection.execute(
                select(HoldRow.id, HoldRow.state, HoldRow.amount_stopped).where(
                    HoldRow.case_id.in_([UUID(c) for c in case_ids])
                )
            )
            return {str(r.id): (r.state, r.amount_stopped) for r in rows}
    finally:
        await runtime.engine.dispose()


def divergent(ledger: list[dict[str, Any]], holds: dict[str, tuple[str, int]]) -> list[str]:
    """Holds whose state in Stopper is not what their institution's ledger says."""
    by_hold = {entry["hold_id"]: entry for entry in ledger}
    wrong = []
    for hold_id, (state, amount) in holds.items():
        entry = by_hold.get(hold_id)
        if entry is None:
            if state != "failed":  # never received there, and a person must act: true
                wrong.append(hold_id)
        elif _MATCHES.get(entry["status"]) != state or (
            state == "stopped" and entry["amount_held"] != amount
        ):
            wrong.append(hold_id)
    return wrong


@contextlib.asynccontextmanager
async def truth_world(
    tmp_path: Path,
    postgres_url: str,
    kafka_bootstrap: str,
    name: str,
    behave: Callable[[Behaviour], Behaviour],
    registry_text: Callable[[str], str] = lambda text: text,
) -> AsyncIterator[tuple[Settings, Simulation, str]]:
    """Stopper's settings for the simulated world of the realistic profile changed by `behave`,
    served over HTTP, on a database of its own (the sweepers and reconciliation would otherwise
    also ask about other tests' holds, and the requests counted here are this test's)."""
    database_url = await create_database(postgres_url, name)
    engine = create_engine(DatabaseSettings(url=database_url))
    await migrate.upgrade(engine)
    await engine.dispose()
    registry_path = fast_registry(tmp_path)
    registry_path.write_text(registry_text(registry_path.read_text()))
    registry = load_registry(registry_path)
    behaviours = {
        code: behave(behaviour) for code, behaviour in profile("realistic", registry).items()
    }
    simulation = Simulation(
        registry,
        behaviours,
        secret_for=lambda ref: "unused",
        stopper_url=f"http://127.0.0.1:{free_port()}",
    )
    async with serving(create_simulation_app(simulation)) as sim_url:
        settings = Settings(
            registry_path=registry_path,
            database=DatabaseSettings(url=database_url, migrate_on_start=False),
            kafka=unique_kafka(kafka_bootstrap),
            api=ApiSettings(port=free_port()),
            dispatch=DispatchSettings(
                sweep_interval_ms=100, first_dispatch_grace_s=2, reconcile_interval_s=3600
            ),
            institutions=InstitutionsSettings(base_url=sim_url),
        )
        yield settings, simulation, sim_url
        simulation.close_requests()
    await drop_database(database_url)


@pytest.fixture
async def lost_callbacks(
    tmp_path: Path, postgres_url: str, kafka_bootstrap: str
) -> AsyncIterator[tuple[Settings, Simulation, str]]:
    """Every institution answers by callback, and every callback is lost (sent to a port
    nobody listens on): only status inquiries and reconciliation can find the outcomes."""
    async with truth_world(
        tmp_path,
        postgres_url,
        kafka_bootstrap,
        "truth",
        lambda b: replace(b, answers_by_callback=True, timeout_rate=0.0),
    ) as world:
        yield world


@pytest.fixture
async def answers_too_late(
    tmp_path: Path, postgres_url: str, kafka_bootstrap: str
) -> AsyncIterator[tuple[Settings, Simulation, str]]:
    """Every institution is up and carries out every request, and answers it at once, but only
    after Stopper's timeout (400 ms here): no attempt is ever answered in time. Three attempts
    each, and breakers that do not open, so every attempt meets the institution."""
    async with truth_world(
        tmp_path,
        postgres_url,
        kafka_bootstrap,
        "truth_late",
        lambda b: replace(
            b,
            answers_by_callback=False,
            timeout_rate=1.0,
            hang_s=2.0,
            error_rate=0.0,
            malformed_rate=0.0,
            outage=None,
        ),
        lambda text: re.sub(
            r"max_attempts = \d+",
            "max_attempts = 3",
            re.sub(r"failure_threshold = \d+", "failure_threshold = 100000", text),
        ),
    ) as world:
        yield world


async def matching_the_ledger(
    settings: Settings, simulation: Simulation, *, reports: int, seed: int, timeout: float
) -> dict[str, tuple[str, int]]:
    """Post `reports` to a Stopper of `settings` and wait until every hold of theirs is as its
    institution's ledger says (state, amount): the holds, by id."""
    runtime = build_runtime(settings)
    async with serving(create_app(runtime), port=settings.api.port) as url:
        case_ids = await post_reports(url, reports, seed=seed)
        last: Counter[str] = Counter()

        async def settled() -> dict[str, tuple[str, int]] | None:
            holds = await stopper_holds(settings, case_ids)
            wrong = divergent(simulation.ledger(), holds)
            last.clear()
            last.update(holds[h][0] for h in wrong)
            return holds if holds and not wrong else None

        try:
            return await eventually(settled, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"still divergent, by Stopper's state: {dict(last)}") from e


async def test_lost_callbacks_are_found_by_status_inquiry_and_never_re_sent(
    lost_callbacks: tuple[Settings, Simulation, str],
) -> None:
    settings, simulation, _ = lost_callbacks
    holds = await matching_the_ledger(settings, simulation, reports=15, seed=71, timeout=90)
    totals = simulation.stats()["totals"]
    # Accepted requests were asked about, not sent again (retries after 5xx are not accepts).
    assert totals["status_inquiries"] >= len(holds) // 2
    assert totals["stop_requests"] <= 1.2 * len(holds), totals
    # Per hold that was unconfirmed: the state it left unconfirmed for.
    accepted = await _transitions_to(settings, holds, HoldTransitionRow.from_state == "unconfirmed")
    assert accepted, "the holds went through unconfirmed"
    assert all(to in ("stopped", "not_found", "rejected") for to in accepted.values())
    assert Counter(state for state, _ in holds.values())["stopped"] > 0
    assert totals["double_stops"] == 0


async def command(args: list[str]) -> tuple[int, str]:
    """A `stopper` command, as an operator runs it against the running API."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(cli.main, args)
    return code, out.getvalue()


async def _transitions_to(
    settings: Settings, hold_ids: Iterable[str], which: ColumnElement[bool]
) -> dict[str, str]:
    """Per hold with a transition `which` selects: the state that transition led to."""
    runtime = build_runtime(settings)
    try:
        async with runtime.engine.connect() as connection:
            rows = await connection.execute(
                select(HoldTransitionRow.hold_id, HoldTransitionRow.to_state).where(
                    HoldTransitionRow.hold_id.in_([UUID(h) for h in hold_ids]), which
                )
            )
            return {str(r.hold_id): r.to_state for r in rows}
    finally:
        await runtime.engine.dispose()


async def test_reconciliation_moves_failed_and_unconfirmed_holds_to_the_ledger(
    lost_callbacks: tuple[Settings, Simulation, str],
) -> None:
    settings, simulation, _ = lost_callbacks
    # Nobody asks by inquiry here (the first inquiry would come after a day): only the
    # operator's reconciliation finds the outcomes.
    registry_path = settings.registry_path
    assert registry_path is not None
    text = registry_path.read_text().replace("callback_wait_s = 3", "callback_wait_s = 86400")
    registry_path.write_text(text)
    runtime = build_runtime(settings)
    async with serving(create_app(runtime), port=settings.api.port) as url:
        case_ids = await post_reports(url, 10, seed=72)

        async def all_unconfirmed() -> dict[str, tuple[str, int]] | None:
            holds = await stopper_holds(settings, case_ids)
            states = {state for state, _ in holds.values()}
            return holds if holds and states <= {"unconfirmed", "failed"} else None

        await eventually(all_unconfirmed, timeout=30)
        code, listed = await command(["holds", "unconfirmed", "--url", url])
        assert code == 0 and "unconfirmed" in listed and "accepted by the institution" in listed
        # Reconciliation asks only about requests accepted longer ago than callback_wait_s.
        text = registry_path.read_text().replace("callback_wait_s = 86400", "callback_wait_s = 0")
        registry_path.write_text(text)
        second = build_runtime(settings.model_copy(update={"role": Role.API}))
        async with (
            serving(create_app(second)) as second_url,
            httpx.AsyncClient(base_url=second_url, timeout=30) as client,
        ):
            code, printed = await command(["reconcile", "--json", "--url", second_url])
            assert code == 0, printed
            first = json.loads(printed)
            applied = first["total"].get("applied", 0)

            # Stops that found money moved on open holds a layer deeper, whose callbacks are
            # lost too: reconcile again until nothing diverges.
            async def reconciled() -> dict[str, tuple[str, int]] | None:
                nonlocal applied
                again = (await client.post("/v1/reconciliations", json={})).json()
                applied += again["total"].get("applied", 0)
                holds = await stopper_holds(settings, case_ids)
                return None if divergent(simulation.ledger(), holds) else holds

            await eventually(reconciled, timeout=60)
            code, printed = await command(["reconcile", "--url", second_url])
            assert code == 0 and "No divergence" in printed, printed
            divergences = (await client.get("/v1/divergences?limit=1000")).json()["divergences"]
            refused = await client.post("/v1/reconciliations", json={"institution": "NOPE"})
    assert first["total"].get("applied", 0) > 0
    assert {d["stopper_state"] for d in divergences} <= {"unconfirmed", "failed"}
    assert len(divergences) == applied
    assert refused.status_code == 404
    assert simulation.stats()["totals"]["status_queries"] >= 1


async def test_requests_never_answered_in_time_are_asked_about_and_never_fail(
    answers_too_late: tuple[Settings, Simulation, str],
) -> None:
    """No answer is not a refusal: holds whose every attempt timed out are `unconfirmed`
    (`unanswered`), and the status inquiry finds what the institution did; none is `failed`
    for a person while its institution holds the money."""
    settings, simulation, _ = answers_too_late
    holds = await matching_the_ledger(settings, simulation, reports=4, seed=73, timeout=120)
    states = Counter(state for state, _ in holds.values())
    assert "failed" not in states and states["stopped"] > 0, states
    unanswered = await _transitions_to(settings, holds, HoldTransitionRow.event == "unanswered")
    assert set(unanswered) == set(holds)  # every one went unanswered first ...
    assert set(unanswered.values()) == {"unconfirmed"}
    totals = simulation.stats()["totals"]
    assert totals["status_inquiries"] >= len(holds)  # ... and was asked about
    assert totals["double_stops"] == 0
