"""ISO 20022 institutions on the real stack (PostgreSQL, the broker, the simulated institutions
over HTTP, Stopper's API taking their XML callbacks): banks answering at once, by signed
camt.029 callback, and with faults; every hold ends as the institution's own ledger says, no
funds are stopped twice, holds due together leave as one camt.056, and every message id leads
to the holds it carried."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.models import HoldRow, Iso20022MessageRow
from stopper.config import (
    DatabaseSettings,
)
from stopper.domain.accounts import AccountRef
from stopper.domain.cases import hold_id_for
from stopper.registry import Registry
from stopper.runtime import build_runtime
from stopper.simulation.institutions import Simulation
from stopper.simulation.mules import MulePlan
from stopper.simulation.profiles import Behaviour, profile
from tests.factories import report_doc
from tests.integration.helpers import DEADLINE_S, eventually, fast_registry
from tests.integration.live_stack import LiveStack, live_stack
from tests.integration.test_fanout import post_reports
from tests.integration.test_truth import divergent, stopper_holds
from tests.servers import create_database, drop_database

pytestmark = pytest.mark.integration

ISO_BANKS = ("BK01", "BK02", "BK03", "BK04", "BK05", "BK06")


def iso_registry(tmp_path: Path, codes: Sequence[str] = ISO_BANKS) -> Path:
    """The fast packaged world with exactly `codes` on iso20022."""
    path = fast_registry(tmp_path)
    text = re.sub(r'\nadapter = "iso20022"', "", path.read_text())
    for code in codes:
        text = text.replace(f'code = "{code}"\n', f'code = "{code}"\nadapter = "iso20022"\n')
    path.write_text(text)
    return path


Scenario = Callable[[Behaviour], Behaviour]
SCENARIOS: dict[str, Scenario] = {
    "at_once": lambda b: replace(
        b, answers_by_callback=False, timeout_rate=0, error_rate=0, malformed_rate=0
    ),
    "by_callback": lambda b: replace(
        b,
        answers_by_callback=True,
        timeout_rate=0,
        error_rate=0,
        malformed_rate=0,
        double_callback_rate=0.2,
    ),
    "faults": lambda b: replace(
        b,
        timeout_rate=0.1,
        error_rate=0.1,
        malformed_rate=0.05,
        double_callback_rate=0.2,
        hang_s=2.0,
    ),
}


@pytest.fixture
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str, kafka_bootstrap: str
) -> AsyncIterator[LiveStack]:
    """Stopper and the simulated world, the ISO banks behaving as the scenario says (the others
    as the realistic profile); a database of its own, so every message and hold counted is this
    test's."""
    scenario = SCENARIOS[getattr(request, "param", "at_once")]
    database_url = await create_database(postgres_url, "iso_stack")
    engine = create_engine(DatabaseSettings(url=database_url))
    await migrate.upgrade(engine)
    await engine.dispose()

    def behaviours(registry: Registry) -> dict[str, Behaviour]:
        return {
            code: scenario(b) if code in ISO_BANKS else b
            for code, b in profile("realistic", registry).items()
        }

    async with live_stack(
        tmp_path,
        database_url,
        kafka_bootstrap,
        behaviours=behaviours,
        registry_path=iso_registry(tmp_path),
    ) as stack:
        yield stack
    await drop_database(database_url)


async def settled_as_the_ledger_says(
    world: LiveStack, case_ids: list[str], timeout: float
) -> dict[str, tuple[str, int]]:
    last: Counter[str] = Counter()

    async def matched() -> dict[str, tuple[str, int]] | None:
        holds = await stopper_holds(world.settings, case_ids)
        wrong = divergent(world.simulation.ledger(), holds)
        last.clear()
        last.update(holds[h][0] for h in wrong)
        return holds if holds and not wrong else None

    try:
        return await eventually(matched, timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"still divergent, by Stopper's state: {dict(last)}") from e


async def messages(world: LiveStack) -> dict[str, list[UUID]]:
    """The camt.056 messages Stopper recorded: message id -> the holds it carried."""
    runtime = build_runtime(world.settings)
    try:
        async with runtime.engine.connect() as connection:
            rows = await connection.execute(
                select(Iso20022MessageRow.message_id, Iso20022MessageRow.hold_id).where(
                    Iso20022MessageRow.idempotency_key.like("stopper-%-%"),
                    ~Iso20022MessageRow.idempotency_key.like("stopper-return-%"),
                )
            )
            found: dict[str, list[UUID]] = {}
            for row in rows:
                found.setdefault(row.message_id, []).append(row.hold_id)
            return found
    finally:
        await runtime.engine.dispose()


async def institutions_of(world: LiveStack, holds: Sequence[str]) -> dict[str, str]:
    runtime = build_runtime(world.settings)
    try:
        async with runtime.engine.connect() as connection:
            rows = await connection.execute(
                select(HoldRow.id, HoldRow.institution_code).where(
                    HoldRow.id.in_([UUID(h) for h in holds])
                )
            )
            return {str(r.id): r.institution_code for r in rows}
    finally:
        await runtime.engine.dispose()


def assert_no_double_stops(simulation: Simulation) -> None:
    assert all(n == 1 for n in simulation.executed_stops().values()), "a hold stopped twice"
    assert simulation.stats()["totals"]["double_stops"] == 0


async def assert_iso_holds_went_as_camt056(
    world: LiveStack, holds: dict[str, tuple[str, int]]
) -> None:
    """Every hold at an ISO bank was carried by a recorded camt.056; no other hold was."""
    institution = await institutions_of(world, list(holds))
    carried = {str(h) for held in (await messages(world)).values() for h in held}
    at_iso = {h for h, code in institution.items() if code in ISO_BANKS}
    assert at_iso, "the reports reached ISO banks"
    assert carried == at_iso
    stats = world.simulation.stats()["institutions"]
    assert sum(stats[code]["iso_messages"] for code in ISO_BANKS) > 0


@pytest.mark.parametrize("world", ["at_once"], indirect=True)
async def test_iso_banks_answering_at_once_end_as_their_ledger_says(world: LiveStack) -> None:
    case_ids = await post_reports(world.url, 25, seed=161)
    holds = await settled_as_the_ledger_says(world, case_ids, timeout=60)
    assert Counter(state for state, _ in holds.values())["stopped"] > len(holds) / 2
    assert_no_double_stops(world.simulation)
    await assert_iso_holds_went_as_camt056(world, holds)
    async with httpx.AsyncClient(base_url=world.url) as client:
        metrics = (await client.get("/metrics")).text
    assert re.search(r'stopper_iso20022_messages_total\{institution="BK0[1-6]"', metrics)


@pytest.mark.parametrize("world", ["by_callback"], indirect=True)
async def test_iso_banks_answering_by_signed_camt029_callbacks(world: LiveStack) -> None:
    case_ids = await post_reports(world.url, 25, seed=162)
    holds = await settled_as_the_ledger_says(world, case_ids, timeout=60)
    assert_no_double_stops(world.simulation)
    await assert_iso_holds_went_as_camt056(world, holds)
    stats = world.simulation.stats()["institutions"]
    assert sum(stats[code]["callbacks_sent"] for code in ISO_BANKS) > 0
    assert sum(stats[code]["callbacks_failed"] for code in ISO_BANKS) == 0
    async with httpx.AsyncClient(base_url=world.url) as client:
        metrics = (await client.get("/metrics")).text
    applied = re.findall(
        r'stopper_callbacks_total\{institution="(BK0[1-6])",outcome="applied"\} ([0-9.]+)', metrics
    )
    assert sum(float(n) for _, n in applied) > 0, "the XML callbacks moved the holds"


@pytest.mark.parametrize("world", ["faults"], indirect=True)
async def test_iso_banks_with_timeouts_5xx_and_garbage_still_end_as_their_ledger_says(
    world: LiveStack,
) -> None:
    case_ids = await post_reports(world.url, 25, seed=163)
    holds = await settled_as_the_ledger_says(world, case_ids, timeout=DEADLINE_S + 40)
    assert_no_double_stops(world.simulation)
    totals = world.simulation.stats()["totals"]
    assert totals["stop_requests"] > len(holds)  # timeouts, 5xx and garbage were asked again
    await assert_iso_holds_went_as_camt056(world, holds)


@pytest.mark.parametrize("world", ["at_once"], indirect=True)
async def test_holds_due_together_leave_as_one_camt056_whose_id_leads_to_them(
    world: LiveStack,
) -> None:
    doc = report_doc()
    template = doc["transfers"][0]
    accounts = [f"62221111{n:08d}" for n in range(1, 6)]
    doc["victims"] = [{"victim_id": "V1"}]
    doc["transfers"] = [
        dict(
            template,
            victim_id="V1",
            amount="1000.00",
            receiving_account={"institution_code": "BK02", "account_number": account},
            transferred_at=datetime.now(UTC).isoformat(),
        )
        for account in accounts
    ]
    async with httpx.AsyncClient(base_url=world.url) as client:
        answer = await client.post("/v1/reports", json=doc)
        assert answer.status_code == 202, answer.text
        case_id = answer.json()["case_id"]
    await settled_as_the_ledger_says(world, [case_id], timeout=30)
    first_level = {hold_id_for(UUID(case_id), AccountRef("BK02", a)) for a in accounts}
    [(message_id, carried)] = [
        (m, held) for m, held in (await messages(world)).items() if set(held) & first_level
    ]
    assert set(carried) == first_level, "the five holds of one report left as one camt.056"
    assert world.simulation.stats()["institutions"]["BK02"]["iso_messages"] == 1
    runtime = build_runtime(world.settings)
    try:
        traced = await runtime.store.holds_of_message(message_id)
    finally:
        await runtime.engine.dispose()
    assert {h for h, _ in traced} == first_level


@pytest.mark.parametrize("world", ["at_once"], indirect=True)
async def test_frozen_funds_at_an_iso_bank_go_back_once_a_pacs004_matches(world: LiveStack) -> None:
    mule = ("BK04", "6222000044440001")
    world.simulation.mules.plant(*mule, MulePlan(keep_share=1.0))
    doc = report_doc()
    doc["victims"] = [{"victim_id": "V1"}]
    doc["transfers"] = [
        dict(
            doc["transfers"][0],
            amount="30000.00",
            receiving_account={"institution_code": mule[0], "account_number": mule[1]},
        )
    ]
    async with httpx.AsyncClient(base_url=world.url) as client:
        answer = await client.post("/v1/reports", json=doc)
        assert answer.status_code == 202, answer.text
        case_id = answer.json()["case_id"]

        async def hold_in(state: str) -> dict[str, Any] | None:
            case: dict[str, Any] = (await client.get(f"/v1/cases/{case_id}")).json()
            holds = case.get("holds", [])
            return case if len(holds) == 1 and holds[0]["state"] == state else None

        case = await eventually(lambda: hold_in("stopped"), timeout=30)
        ordered = await client.post(
            f"/v1/holds/{case['holds'][0]['hold_id']}/freeze",
            json={"legal_document_ref": "PSB-FRZ-16", "requested_by": "officer-7"},
        )
        assert ordered.status_code == 202, ordered.text
        await eventually(lambda: hold_in("frozen"), timeout=15)
        # Four eyes: one officer orders the return, another approves it (no keys here: each
        # names themselves with X-Operator).
        ordered = await client.post(
            f"/v1/cases/{case_id}/returns",
            json={"legal_document_ref": "PSB-RET-16", "requested_by": "officer-7"},
            headers={"x-operator": "officer-7"},
        )
        assert ordered.status_code == 202, ordered.text
        approved = await client.post(
            f"/v1/return-orders/{ordered.json()['order_id']}/approve",
            json={"approved_by": "supervisor-2"},
            headers={"x-operator": "supervisor-2"},
        )
        assert approved.status_code == 202, approved.text
        case = await eventually(lambda: hold_in("returned"), timeout=15)
    assert case["holds"][0]["amount_returned"] == "30000.00"
    assert [p["status"] for p in case["payouts"]] == ["paid"]
    stats = world.simulation.stats()["institutions"]["BK04"]
    assert (stats["returns"], stats["double_returns"]) == (1, 0)
    runtime = build_runtime(world.settings)
    try:
        async with runtime.engine.connect() as connection:
            returns = await connection.scalar(
                select(func.count())
                .select_from(Iso20022MessageRow)
                .where(Iso20022MessageRow.idempotency_key.like("stopper-return-%"))
            )
    finally:
        await runtime.engine.dispose()
    assert returns == 1, "the return instruction went as ISO 20022, under a recorded message id"
