"""Fan-out on the real stack: PostgreSQL, the Kafka-protocol broker, and the simulated
institutions over HTTP on loopback, with Stopper's API taking their callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from stopper import cli
from stopper.adapters.db.models import HoldRow, HoldTransitionRow
from stopper.api.app import create_app
from stopper.app.hold_changes import Concluded
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.config import (
    ApiSettings,
    DatabaseSettings,
    DispatchSettings,
    InstitutionsSettings,
    Role,
    Settings,
)
from stopper.domain.cases import case_id_for
from stopper.domain.holds import HoldEvent
from stopper.logs import KeyValueFormatter
from stopper.registry import load_registry
from stopper.runtime import Runtime, build_runtime
from stopper.serving import free_port, serving
from stopper.simulation.institutions import Simulation
from stopper.simulation.mules import Destination, MulePlan
from stopper.simulation.profiles import profile
from stopper.simulation.reports import ReportFactory
from stopper.simulation.server import create_simulation_app
from tests.factories import report_doc
from tests.integration.conftest import unique_kafka
from tests.integration.helpers import DEADLINE_S, eventually, fast_registry

pytestmark = pytest.mark.integration

FINAL_FIRST_LEVEL = {"stopped", "not_found", "rejected", "failed"}


@dataclass
class World:
    settings: Settings
    simulation: Simulation
    sim_url: str
    stopper_port: int


@pytest.fixture
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_postgres: str, kafka_bootstrap: str
) -> AsyncIterator[World]:
    registry_path = fast_registry(tmp_path)
    registry = load_registry(registry_path)
    stopper_port = free_port()
    settings = Settings(
        registry_path=registry_path,
        database=DatabaseSettings(url=migrated_postgres, migrate_on_start=False),
        kafka=unique_kafka(kafka_bootstrap),
        api=ApiSettings(port=stopper_port),
        dispatch=DispatchSettings(sweep_interval_ms=100, first_dispatch_grace_s=2),
    )
    simulation = Simulation(
        registry,
        profile(getattr(request, "param", "realistic"), registry),
        secret_for=lambda ref: settings.institutions.secret_for(ref, settings.environment),
        stopper_url=f"http://127.0.0.1:{stopper_port}",
    )
    async with serving(create_simulation_app(simulation)) as sim_url:
        settings = settings.model_copy(
            update={"institutions": InstitutionsSettings(base_url=sim_url)}
        )
        yield World(settings, simulation, sim_url, stopper_port)
        simulation.close_requests()


@pytest.fixture
async def stopper(world: World) -> AsyncIterator[str]:
    runtime = build_runtime(world.settings)
    async with serving(create_app(runtime), port=world.stopper_port) as url:
        yield url


async def post_reports(url: str, count: int, seed: int) -> list[str]:
    factory = ReportFactory(load_registry(), seed=seed)
    case_ids = []
    # The subject here is fan-out, not intake speed: a generous timeout keeps a busy CI honest.
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(count):
            report = factory.report(datetime.now(UTC))
            answer = await client.post("/v1/reports", json=report)
            for _ in range(3):
                # As a police system does with a 503: the broker was briefly unable to take the
                # record (nothing was recorded), so post it again after Retry-After.
                if answer.status_code != 503:
                    break
                await asyncio.sleep(int(answer.headers["Retry-After"]))
                answer = await client.post("/v1/reports", json=report)
            assert answer.status_code == 202, answer.text
            case_ids.append(answer.json()["case_id"])
    return case_ids


async def hold_states(settings: Settings, case_ids: list[str]) -> dict[UUID, str] | None:
    """States of every hold of the cases, or None while a case is still missing."""
    runtime = build_runtime(settings)
    try:
        async with runtime.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(HoldRow.id, HoldRow.state, HoldRow.case_id).where(
                        HoldRow.case_id.in_([UUID(c) for c in case_ids])
                    )
                )
            ).all()
    finally:
        await runtime.engine.dispose()
    if {str(r.case_id) for r in rows} != set(case_ids):
        return None
    return {r.id: r.state for r in rows}


async def all_settled(settings: Settings, case_ids: list[str]) -> dict[UUID, str] | None:
    states = await hold_states(settings, case_ids)
    if states is None or not set(states.values()) <= FINAL_FIRST_LEVEL:
        return None
    return states


async def assert_no_double_stops(world: World, states: dict[UUID, str]) -> None:
    executed = world.simulation.executed_stops()
    assert all(count == 1 for count in executed.values()), "a hold was stopped twice"
    assert world.simulation.stats()["totals"]["double_stops"] == 0
    stopped = {hold for hold, state in states.items() if state == "stopped"}
    executed_holds = {hold for hold, _generation in executed}
    assert stopped <= executed_holds, "Stopper says stopped but the institution never stopped"
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{world.sim_url}/stats")).json()
    assert stats["totals"]["double_stops"] == 0


async def test_every_first_level_hold_ends_stopped_not_found_rejected_or_failed(
    world: World, stopper: str
) -> None:
    case_ids = await post_reports(stopper, 25, seed=11)
    states = await eventually(
        lambda: all_settled(world.settings, case_ids), timeout=DEADLINE_S + 30
    )
    assert Counter(states.values())["stopped"] > len(states) / 2
    await assert_no_double_stops(world, states)
    async with httpx.AsyncClient(base_url=stopper) as client:
        metrics = (await client.get("/metrics")).text
        case = (await client.get(f"/v1/cases/{case_ids[0]}")).json()
    assert "stopper_report_to_stop_confirmed_seconds_bucket" in metrics
    assert re.search(
        r'stopper_stop_attempts_total\{institution="[A-Z0-9]+",outcome="stopped"\}', metrics
    )
    # A stop holds what is still there: all, part, or (account emptied) nothing of what was asked.
    stopped = [h for h in case["holds"] if h["state"] == "stopped"]
    assert all(0 <= float(h["amount_stopped"]) <= float(h["amount_asked"]) for h in stopped)
    assert re.search(r'stopper_amount_stopped_total\{currency="CNY"\} [1-9]', metrics)


@pytest.mark.parametrize("world", ["chaos"], indirect=True)
async def test_chaos_ends_the_same_way_with_no_double_stops(world: World, stopper: str) -> None:
    case_ids = await post_reports(stopper, 25, seed=12)
    states = await eventually(
        lambda: all_settled(world.settings, case_ids), timeout=DEADLINE_S + 40
    )
    await assert_no_double_stops(world, states)
    totals = world.simulation.stats()["totals"]
    assert totals["requests"] > len(states)  # timeouts and 5xx were retried
    runtime = build_runtime(world.settings)
    try:
        async with runtime.engine.connect() as connection:
            gaps = await connection.scalar(
                select(func.count())
                .select_from(HoldRow)
                .where(
                    HoldRow.id.in_(list(states)),
                    ~HoldRow.id.in_(
                        select(HoldTransitionRow.hold_id).where(
                            HoldTransitionRow.to_state == HoldRow.state
                        )
                    ),
                )
            )
    finally:
        await runtime.engine.dispose()
    assert gaps == 0, "every hold's current state is recorded in the audit trail"


async def test_a_restart_mid_run_loses_nothing_and_doubles_nothing(world: World) -> None:
    first = build_runtime(world.settings)
    async with serving(create_app(first), port=world.stopper_port) as url:
        case_ids = await post_reports(url, 20, seed=13)
        await asyncio.sleep(1.0)  # some holds answered, some in flight, some not yet sent
    second = build_runtime(world.settings)
    async with serving(create_app(second), port=world.stopper_port):
        states = await eventually(
            lambda: all_settled(world.settings, case_ids), timeout=DEADLINE_S + 30
        )
    await assert_no_double_stops(world, states)
    assert len(set(case_ids)) == 20  # every report its own case, all of them settled above


@pytest.mark.parametrize("world", ["instant"], indirect=True)
async def test_a_three_layer_mule_chain_is_followed_to_stopped_funds(
    world: World, stopper: str
) -> None:
    mules = world.simulation.mules
    first, second, third = (
        ("BK01", "6222000011110001"),
        ("PI02", "880000000002"),
        ("BK05", "6222000055550003"),
    )
    mules.plant(*first, MulePlan(keep_share=0.0, destinations=(Destination(1.0, *second),)))
    mules.plant(*second, MulePlan(keep_share=0.1, destinations=(Destination(1.0, *third),)))
    mules.plant(*third, MulePlan(keep_share=1.0))
    doc = report_doc()
    doc["victims"] = [{"victim_id": "V1"}]
    doc["transfers"] = [
        dict(
            doc["transfers"][0],
            amount="50000.00",
            receiving_account={"institution_code": first[0], "account_number": first[1]},
        )
    ]
    async with httpx.AsyncClient(base_url=stopper) as client:
        answer = await client.post("/v1/reports", json=doc)
        assert answer.status_code == 202
        case_id = answer.json()["case_id"]

        async def three_layers_settled() -> dict[str, Any] | None:
            trail: dict[str, Any] = (await client.get(f"/v1/cases/{case_id}/trail")).json()
            holds = trail.get("holds", [])
            if len(holds) == 3 and all(h["state"] == "stopped" for h in holds):
                return trail
            return None

        trail = await eventually(three_layers_settled, timeout=30)
    assert [
        (row["layer"], row["holds"], row["amount_asked"], row["amount_stopped"])
        for row in trail["layers"]
    ] == [
        (1, 1, "50000.00", "0.00"),
        (2, 1, "50000.00", "5000.00"),
        (3, 1, "45000.00", "45000.00"),
    ]
    by_layer = {h["layer"]: h for h in trail["holds"]}
    assert by_layer[3]["institution_code"] == "BK05" and by_layer[3]["account"] == "****0003"
    assert by_layer[3]["parent_hold_id"] == by_layer[2]["hold_id"]
    assert by_layer[2]["parent_hold_id"] == by_layer[1]["hold_id"]
    assert [(e["outcome"], e["amount_traced"]) for e in trail["edges"]] == [
        ("followed", "50000.00"),
        ("followed", "45000.00"),
    ]
    assert "6222000055550003" not in json.dumps(trail)
    await assert_no_double_stops(world, {UUID(h["hold_id"]): h["state"] for h in trail["holds"]})

    # The money found at layer 3 is frozen under a legal document.
    async with httpx.AsyncClient(base_url=stopper) as client:
        ordered = await client.post(
            f"/v1/holds/{by_layer[3]['hold_id']}/freeze",
            json={"legal_document_ref": "PSB-FRZ-2026-0417", "requested_by": "officer-7"},
        )
        assert ordered.status_code == 202, ordered.text

        async def frozen() -> dict[str, Any] | None:
            case: dict[str, Any] = (await client.get(f"/v1/cases/{case_id}")).json()
            hold = next(h for h in case["holds"] if h["layer"] == 3)
            return hold if hold["state"] == "frozen" else None

        hold = await eventually(frozen, timeout=15)
        renewed = await client.post(
            f"/v1/holds/{by_layer[1]['hold_id']}/reapply",
            json={"requested_by": "officer-7", "reason": "renew before it lapses"},
        )
    assert hold["amount_frozen"] == "45000.00"
    assert renewed.status_code == 202  # a stopped hold may be renewed


@pytest.mark.parametrize("world", ["instant"], indirect=True)
async def test_frozen_funds_go_back_to_two_victims_from_two_layers(
    world: World, stopper: str
) -> None:
    """Two victims pay one mule account; half moves on to a second. Both are frozen and returned:
    each layer is split 3:1 like the money that reached it, and nobody gets more than lost."""
    mules = world.simulation.mules
    first, second = ("BK03", "6222000033330001"), ("PI04", "880000000444")
    mules.plant(*first, MulePlan(keep_share=0.5, destinations=(Destination(1.0, *second),)))
    mules.plant(*second, MulePlan(keep_share=1.0))
    doc = report_doc()
    template = doc["transfers"][0]
    doc["victims"] = [{"victim_id": "V1"}, {"victim_id": "V2"}]
    doc["transfers"] = [
        dict(
            template,
            victim_id=victim,
            amount=amount,
            victim_account={"institution_code": "BK09", "account_number": account},
            receiving_account={"institution_code": first[0], "account_number": first[1]},
        )
        for victim, amount, account in (
            ("V1", "60000.00", "6217000000000001"),
            ("V2", "20000.00", "6217000000000002"),
        )
    ]
    async with httpx.AsyncClient(base_url=stopper) as client:
        answer = await client.post("/v1/reports", json=doc)
        assert answer.status_code == 202, answer.text
        case_id = answer.json()["case_id"]

        async def case_in(states: set[str], count: int = 2) -> dict[str, Any] | None:
            case: dict[str, Any] = (await client.get(f"/v1/cases/{case_id}")).json()
            holds = case.get("holds", [])
            return case if len(holds) == count and {h["state"] for h in holds} <= states else None

        case = await eventually(lambda: case_in({"stopped"}), timeout=30)
        refused = await client.post(
            f"/v1/cases/{case_id}/returns",
            json={"legal_document_ref": "PSB-RET-1", "requested_by": "officer-7"},
        )
        assert refused.status_code == 409 and "not frozen" in refused.json()["detail"]
        for hold in case["holds"]:
            ordered = await client.post(
                f"/v1/holds/{hold['hold_id']}/freeze",
                json={"legal_document_ref": "PSB-FRZ-9", "requested_by": "officer-7"},
            )
            assert ordered.status_code == 202
        await eventually(lambda: case_in({"frozen"}), timeout=15)

        pending = await client.post(
            f"/v1/cases/{case_id}/returns",
            json={"legal_document_ref": "PSB-RET-1", "requested_by": "officer-7"},
            headers={"x-operator": "officer-7"},
        )
        assert pending.status_code == 202, pending.text
        assert pending.json()["approval"] == "pending"
        # Four eyes: nothing goes out until a second operator approves.
        assert (await case_in({"frozen"})) is not None
        ordered = await client.post(
            f"/v1/return-orders/{pending.json()['order_id']}/approve",
            json={"approved_by": "supervisor-2"},
            headers={"x-operator": "supervisor-2"},
        )
        assert ordered.status_code == 202, ordered.text
        assert ordered.json()["approval"] == "approved"
        case = await eventually(lambda: case_in({"returned"}), timeout=15)
        again = await client.post(
            f"/v1/cases/{case_id}/returns",
            json={"legal_document_ref": "PSB-RET-1", "requested_by": "officer-7"},
        )

    layer_of = {h["hold_id"]: h["layer"] for h in case["holds"]}
    paid = sorted(
        (layer_of[p["hold_id"]], p["victim_ref"], p["amount"], p["account"], p["status"])
        for p in case["payouts"]
    )
    assert paid == [
        (1, "V1", "30000.00", "****0001", "paid"),
        (1, "V2", "10000.00", "****0002", "paid"),
        (2, "V1", "30000.00", "****0001", "paid"),
        (2, "V2", "10000.00", "****0002", "paid"),
    ]
    assert {h["amount_returned"] for h in case["holds"]} == {"40000.00"}
    assert again.status_code == 409  # everything went back already: nothing is paid twice
    stats = world.simulation.stats()["totals"]
    assert (stats["returns"], stats["double_returns"], stats["amount_returned"]) == (
        2,
        0,
        8_000_000,
    )
    assert "6217000000000001" not in json.dumps(ordered.json())
    assert "6217000000000001" not in json.dumps(pending.json())


@pytest.mark.parametrize("world", ["instant"], indirect=True)
async def test_an_api_process_and_a_worker_process_share_the_work(world: World) -> None:
    """Roles: the api process takes reports and answers questions; only the worker consumes and
    talks to the institutions. Together they settle every hold."""
    api = build_runtime(world.settings.model_copy(update={"role": Role.API}))
    worker_port = free_port()
    worker = build_runtime(
        world.settings.model_copy(
            update={"role": Role.WORKER, "api": ApiSettings(port=worker_port)}
        )
    )
    async with (
        serving(create_app(api), port=world.stopper_port) as url,
        serving(create_app(worker), port=worker_port) as worker_url,
    ):
        assert not api._tasks and worker._tasks  # consumers and sweepers run in the worker only
        case_ids = await post_reports(url, 10, seed=21)
        states = await eventually(lambda: all_settled(world.settings, case_ids), timeout=30)
        async with httpx.AsyncClient() as client:
            refused = await client.post(f"{worker_url}/v1/reports", json=report_doc())
            health = await client.get(f"{worker_url}/readyz")
            # The worker reports what it saw of the institutions; the api serves it. Its
            # snapshot is saved every few seconds: one taken before the last attempts ended
            # counts fewer, so wait for one taken after.
            status = await eventually(
                lambda: institutions_with_attempts(client, url, at_least=len(states)), timeout=15
            )
    assert refused.status_code == 404 and health.status_code == 200
    assert "stopped" in states.values()
    assert sum(i["attempts"] for i in status) >= len(states)
    await assert_no_double_stops(world, states)


async def institutions_with_attempts(
    client: httpx.AsyncClient, url: str, at_least: int = 1
) -> list[Any] | None:
    doc = (await client.get(f"{url}/v1/institutions/status")).json()
    busy = [i for i in doc["institutions"] if i["attempts"] > 0]
    return busy if sum(i["attempts"] for i in busy) >= at_least else None


@pytest.mark.parametrize("world", ["instant"], indirect=True)
async def test_operator_commands_show_cases_holds_and_institutions(
    world: World, stopper: str
) -> None:
    case_ids = await post_reports(stopper, 5, seed=22)
    await eventually(lambda: all_settled(world.settings, case_ids), timeout=30)
    runtime = build_runtime(world.settings)
    try:
        failed_hold, failed_case = await give_up_on_one_hold(runtime, case_ids)
    finally:
        await runtime.engine.dispose()

    async def command(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = await asyncio.to_thread(cli.main, [*args, "--url", stopper])
        return code, out.getvalue()

    code, listing = await command("cases", "list")
    assert code == 0 and listing.splitlines()[0].split()[:3] == ["CASE", "AGENCY", "OPENED"]
    assert all(case_id in listing for case_id in case_ids)
    code, shown = await command("cases", "show", str(failed_case))
    assert code == 0 and "L1" in shown and "failed" in shown and "****" in shown
    code, failed = await command("holds", "failed", "--json")
    holds = json.loads(failed)["holds"]
    # The database is shared with earlier tests: ours is the most recently failed.
    assert code == 0 and holds[0]["hold_id"] == str(failed_hold)
    assert holds[0]["state_reason"] == "operator test: institution gone"
    code, lapsing = await command("holds", "lapsing")
    assert code == 0 and " in 47h " in lapsing  # stops confirmed a moment ago lapse in 48 h
    status = await eventually(lambda: status_table(command), timeout=15)
    assert status.splitlines()[0].split()[:3] == ["CODE", "KIND", "NAME"]
    code, missing = await command("cases", "show", str(UUID(int=1)))
    assert code == 1 and missing == ""
    # No account number in any of it.
    accounts = re.findall(r'"account_number": "([A-Za-z0-9]+)"', json.dumps(report_doc()))
    assert not any(a in listing + shown + failed + lapsing + status for a in accounts)


async def status_table(command: Callable[..., Awaitable[tuple[int, str]]]) -> str | None:
    code, out = await command("institutions", "status")
    first_row = out.splitlines()[2].split() if code == 0 else []
    return out if first_row and first_row[4] != "0" else None


async def give_up_on_one_hold(runtime: Runtime, case_ids: list[str]) -> tuple[UUID, UUID]:
    """Re-apply one stopped hold and give up on it at once: a failed hold for a person."""
    for case_id in case_ids:
        view = await runtime.store.get_case(UUID(case_id))
        stopped = [h.hold_id for h in view.holds if h.state == "stopped"] if view else []
        if stopped:
            break
    target, now = stopped[0], datetime.now(UTC)

    def fail(record: HoldRecord) -> HoldUpdate:
        moved = [
            record.hold.apply(event, cause="operator test", actor="test", at=now)
            for event in (HoldEvent.REAPPLIED, HoldEvent.GAVE_UP)
        ]
        return HoldUpdate(
            at=now, transitions=moved, change=Concluded("operator test: institution gone")
        )

    await runtime.store.update_hold(target, fail)
    return target, UUID(case_id)


@pytest.mark.parametrize("world", ["chaos"], indirect=True)
async def test_no_account_number_or_name_reaches_logs_metrics_or_errors(
    world: World, stopper: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A chaotic run (timeouts, 5xx, breakers, failures, callbacks) with everything logged at
    DEBUG: the captured logs, /metrics and every refusal are scanned for personal data."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="stopper")
    factory = ReportFactory(load_registry(), seed=31)
    docs = [factory.report(datetime.now(UTC)) for _ in range(12)]
    refusals = []
    async with httpx.AsyncClient(base_url=stopper, timeout=30) as client:
        for doc in docs:
            assert (await client.post("/v1/reports", json=doc)).status_code == 202
            broken = json.loads(json.dumps(doc))
            broken["report_id"] += "-broken"
            broken["transfers"][0]["amount"] = "-1"
            broken["transfers"][-1]["receiving_account"]["institution_code"] = "NOPE1"
            refusals.append((await client.post("/v1/reports", json=broken)).text)
        case_ids = [str(case_id_for(d["report_id"])) for d in docs]
        await eventually(lambda: all_settled(world.settings, case_ids), timeout=DEADLINE_S + 40)
        metrics = (await client.get("/metrics")).text
        cases = [(await client.get(f"/v1/cases/{c}")).text for c in case_ids]
    formatter = KeyValueFormatter("%(levelname)s %(name)s: %(message)s")
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "stopper" in logged and len(caplog.records) > 20  # the run did log
    personal = personal_data(docs)
    assert len(personal) > 20
    for where, text in [
        ("logs", logged),
        ("metrics", metrics),
        *[("refusal", r) for r in refusals],
        *[("case", c) for c in cases],
    ]:
        leaked = sorted(p for p in personal if p in text)
        assert not leaked, f"personal data in {where}: {leaked[:3]}"


def personal_data(docs: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for doc in docs:
        found |= {v["name"] for v in doc["victims"] if v.get("name")}
        for transfer in doc["transfers"]:
            for side in ("victim_account", "receiving_account"):
                account = transfer[side]
                found.add(account["account_number"])
                if account.get("name"):
                    found.add(account["name"])
    return found
