"""A trail merge into an already-stopped hold, on the real stack (PostgreSQL, the broker, the
simulated institutions over HTTP on loopback, Stopper's API taking their callbacks): the
institution is asked for the extra by a supplement, over JSON and over ISO 20022 (a camt.056 of
the supplementary amount), its first attempt times out after the institution carried it out, the
retry carries the same key, and the institution's ledger ends up holding the extra exactly
once, as Stopper says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from stopper.adapters.db.models import HoldRow, HoldSupplementRow, HoldTransitionRow
from stopper.config import (
    Settings,
)
from stopper.registry import Registry
from stopper.runtime import build_runtime
from stopper.simulation.mules import Destination, MulePlan
from stopper.simulation.profiles import Behaviour, profile
from tests.factories import report_doc
from tests.integration.helpers import eventually
from tests.integration.live_stack import LiveStack, live_stack

pytestmark = pytest.mark.integration

# The first account answers by callback a while later, so that the second is stopped before
# the first's answer sends money on into it.
SLOW = ("BK08", "6222000088880001")


def slow_first(registry: Registry) -> dict[str, Behaviour]:
    """No faults but the one the test makes; the first account answers by callback late."""
    behaviours = profile("instant", registry)
    behaviours[SLOW[0]] = replace(
        behaviours[SLOW[0]], answers_by_callback=True, callback_delay_ms=1500.0
    )
    return behaviours


@pytest.fixture
async def world(
    tmp_path: Path, migrated_postgres: str, kafka_bootstrap: str
) -> AsyncIterator[LiveStack]:
    async with live_stack(
        tmp_path, migrated_postgres, kafka_bootstrap, behaviours=slow_first
    ) as stack:
        yield stack


async def rows(settings: Settings, case_id: str) -> dict[str, Any]:
    """The case's holds, the stopped account's supplements and its audit, as stored."""
    runtime = build_runtime(settings)
    try:
        async with runtime.engine.connect() as connection:
            holds = (
                await connection.execute(select(HoldRow).where(HoldRow.case_id == UUID(case_id)))
            ).all()
            ids = [h.id for h in holds]
            supplements = (
                await connection.execute(
                    select(HoldSupplementRow).where(HoldSupplementRow.hold_id.in_(ids))
                )
            ).all()
            audit = (
                await connection.execute(
                    select(HoldTransitionRow)
                    .where(HoldTransitionRow.hold_id.in_(ids))
                    .order_by(HoldTransitionRow.id)
                )
            ).all()
    finally:
        await runtime.engine.dispose()
    return {"holds": holds, "supplements": supplements, "audit": audit}


@pytest.mark.parametrize(
    "merged_into",
    [("PI05", "880000000555"), ("BK03", "6222000033330005")],
    ids=["http_json", "iso20022"],
)
async def test_a_merge_into_a_stopped_hold_holds_the_extra_once_across_a_retry(
    world: LiveStack, merged_into: tuple[str, str]
) -> None:
    mules = world.simulation.mules
    # 20 % of what reached the first account is still there; the rest went on to the second,
    # which keeps everything that reaches it.
    mules.plant(*SLOW, MulePlan(keep_share=0.2, destinations=(Destination(1.0, *merged_into),)))
    mules.plant(*merged_into, MulePlan(keep_share=1.0))
    target = world.simulation.institutions[merged_into[0]]
    doc = report_doc()
    template = doc["transfers"][0]
    doc["victims"] = [{"victim_id": "V1"}]
    doc["transfers"] = [
        dict(
            template,
            amount=amount,
            receiving_account={"institution_code": code, "account_number": account},
        )
        for amount, (code, account) in (("50000.00", SLOW), ("10000.00", merged_into))
    ]
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as client:
        answer = await client.post("/v1/reports", json=doc)
        assert answer.status_code == 202, answer.text
        case_id = answer.json()["case_id"]

        async def stopped(code: str) -> dict[str, Any] | None:
            case: dict[str, Any] = (await client.get(f"/v1/cases/{case_id}")).json()
            found = [h for h in case.get("holds", []) if h["institution_code"] == code]
            return found[0] if found and found[0]["state"] == "stopped" else None

        await eventually(lambda: stopped(merged_into[0]), timeout=20)
        # The fault: the institution carries the supplement out, and its answer never comes
        # in time. Once it has it, it answers again (from its record of the key).
        target.behaviour = replace(target.behaviour, timeout_rate=1.0, hang_s=1.0)

        async def carried_out() -> bool:
            return target.counts.supplements_executed > 0

        await eventually(carried_out, timeout=20)
        target.behaviour = replace(target.behaviour, timeout_rate=0.0)

        async def settled() -> dict[str, Any] | None:
            hold = await stopped(merged_into[0])
            return hold if hold is not None and hold["amount_stopped"] == "50000.00" else None

        merged = await eventually(settled, timeout=30)
        await eventually(lambda: stopped(SLOW[0]), timeout=20)
        stored = await rows(world.settings, case_id)
        by_hold = {e["hold_id"]: e for e in world.simulation.ledger()}

    assert merged["amount_asked"] == "50000.00"
    [hold] = [h for h in stored["holds"] if h.institution_code == merged_into[0]]
    assert (hold.amount_first_request, hold.amount_stopped_by_supplements) == (1_000_000, 4_000_000)
    [supplement] = stored["supplements"]
    assert (supplement.hold_id, supplement.number, supplement.amount) == (hold.id, 1, 4_000_000)
    assert (supplement.state, supplement.amount_held) == ("stopped", 4_000_000)
    assert supplement.attempts >= 2  # the timed-out attempt, and the retry that was answered
    # The institution: the extra held once, under one key, though asked more than once.
    assert target.counts.supplements_executed == 1
    assert target.counts.double_stops == 0
    if target.institution.adapter == "iso20022":  # the first stop, then the supplement twice
        assert target.counts.iso_messages >= 3
    entry = by_hold[str(hold.id)]
    assert (entry["status"], entry["amount_held"]) == ("stopped", 5_000_000)
    assert [(s["idempotency_key"], s["amount_held"]) for s in entry["supplements"]] == [
        (f"stopper-{hold.id}-s1", 4_000_000)
    ]
    # Stopper's audit of the stopped account: the merge, the supplement asked and answered, all
    # in the state the hold stayed in.
    events = [(t.event, t.from_state, t.to_state) for t in stored["audit"] if t.hold_id == hold.id]
    assert events[-3:] == [
        ("merged", "stopped", "stopped"),
        ("supplement_sent", "stopped", "stopped"),
        ("supplement_stopped", "stopped", "stopped"),
    ]
