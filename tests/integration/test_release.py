"""Release on the real stack: PostgreSQL, the Kafka-protocol broker and the simulated
institutions over HTTP on loopback. A withdrawn case releases its holds at the institutions (as
their own ledger and counts say, not only Stopper), the agency hears `hold_released`, a hold
that cannot be released is refused with the reason, and a release retried after a fault is
carried out once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from stopper.adapters.db.models import HoldRow, HoldTransitionRow
from stopper.registry import Registry
from stopper.runtime import Runtime
from stopper.simulation.profiles import Behaviour, profile
from tests.integration.helpers import eventually, read_topic
from tests.integration.live_stack import LiveStack, live_stack
from tests.integration.test_fanout import post_reports
from tests.integration.test_truth import command

pytestmark = pytest.mark.integration

# What a withdrawal leaves of a hold: released, or over before it (nothing is held there).
AFTER_WITHDRAWAL = {"released", "not_found", "rejected"}


def faultless_realistic(registry: Registry) -> dict[str, Behaviour]:
    """The realistic profile's latencies and callbacks, without its faults (a test adds the
    ones it means)."""
    return {
        code: replace(b, timeout_rate=0.0, error_rate=0.0, malformed_rate=0.0, outage=None)
        for code, b in profile("realistic", registry).items()
    }


@pytest.fixture
async def world(
    tmp_path: Path, migrated_postgres: str, kafka_bootstrap: str
) -> AsyncIterator[LiveStack]:
    async with live_stack(
        tmp_path, migrated_postgres, kafka_bootstrap, behaviours=faultless_realistic
    ) as stack:
        yield stack


async def holds_of(runtime: Runtime, case_ids: list[str]) -> dict[UUID, tuple[str, str, int]]:
    """Every hold of the cases: (state, institution, generation)."""
    async with runtime.engine.connect() as connection:
        rows = await connection.execute(
            select(
                HoldRow.id, HoldRow.state, HoldRow.institution_code, HoldRow.reapplications
            ).where(HoldRow.case_id.in_([UUID(c) for c in case_ids]))
        )
        return {r.id: (r.state, r.institution_code, r.reapplications) for r in rows}


async def ledger(world: LiveStack) -> dict[UUID, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        entries = (await client.get(f"{world.sim_url}/ledger")).json()["holds"]
    return {UUID(e["hold_id"]): e for e in entries}


async def stats(world: LiveStack) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        found: dict[str, Any] = (await client.get(f"{world.sim_url}/stats")).json()
    return found


async def settled(runtime: Runtime, case_ids: list[str]) -> dict[UUID, tuple[str, str, int]]:
    """Once every first-level hold has an answer or is owed one by callback (trail holds may
    still be on their way: a withdrawal must catch those too)."""

    async def probe() -> dict[UUID, tuple[str, str, int]] | None:
        holds = await holds_of(runtime, case_ids)
        cases = {str(c) for c in await _cases_of(runtime, list(holds))}
        if cases != set(case_ids):
            return None
        if any(state in ("requested", "sent") for state, _, _ in holds.values()):
            return None
        return holds

    return await eventually(probe, timeout=60)


async def _cases_of(runtime: Runtime, hold_ids: list[UUID]) -> set[UUID]:
    async with runtime.engine.connect() as connection:
        rows = await connection.execute(
            select(HoldRow.case_id).where(HoldRow.id.in_(hold_ids)).distinct()
        )
        return set(rows.scalars())


async def test_a_withdrawn_case_releases_its_holds_at_the_institutions(world: LiveStack) -> None:
    case_ids = await post_reports(world.url, 6, seed=41)
    await settled(world.runtime, case_ids)
    withdrawn, kept = case_ids[:3], case_ids[3:]
    answers = {}
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as client:
        for case_id in withdrawn:
            answer = await client.post(
                f"/v1/cases/{case_id}/withdraw",
                json={"reason": "the victim's report was withdrawn", "requested_by": "officer-9"},
                headers={"x-operator": "officer-9"},
            )
            assert answer.status_code == 202, answer.text
            answers[case_id] = answer.json()
        unknown = await client.post(
            "/v1/cases/00000000-0000-4000-8000-00000000abcd/withdraw",
            json={"reason": "r", "requested_by": "officer-9"},
        )
        assert unknown.status_code == 404
    ordered = {
        UUID(r["hold_id"])
        for a in answers.values()
        for r in a["releases"]
        if r["outcome"] == "ordered"
    }
    assert ordered, answers

    async def all_released() -> dict[UUID, tuple[str, str, int]] | None:
        holds = await holds_of(world.runtime, withdrawn)
        done = all(state in AFTER_WITHDRAWAL for state, _, _ in holds.values())
        return holds if done else None

    after = await eventually(all_released, timeout=60)
    released = {h for h, (state, _, _) in after.items() if state == "released"}
    assert ordered <= released
    # Both routes: the JSON adapter's, and the ISO 20022 adapter's (which sends releases as
    # JSON: no message of its three lifts a stop).
    registry = world.runtime.registry
    assert {registry[after[h][1]].adapter for h in ordered} == {"http_json", "iso20022"}
    # The institutions' own record: each hold Stopper asked about is released there, once.
    book = await ledger(world)
    for hold_id in ordered:
        state, institution, generation = after[hold_id]
        entry = book[hold_id]
        assert (entry["status"], entry["institution_code"], entry["generation"]) == (
            "released",
            institution,
            generation,
        )
    # A hold released without asking had never reached its institution.
    for hold_id in released - ordered:
        assert hold_id not in book or book[hold_id]["status"] == "released"
    totals = (await stats(world))["totals"]
    assert totals["releases"] == len(ordered)
    assert totals["double_releases"] == 0 and totals["double_stops"] == 0
    # The cases not withdrawn are as they were: nothing released there.
    for hold_id, (state, _, _) in (await holds_of(world.runtime, kept)).items():
        assert state != "released" and state != "releasing"
        assert hold_id not in book or book[hold_id]["status"] != "released"

    # The audit names who and why; the agency hears `hold_released` for each.
    async with world.runtime.engine.connect() as connection:
        rows = await connection.execute(
            select(HoldTransitionRow.actor, HoldTransitionRow.cause, HoldTransitionRow.event)
            .where(HoldTransitionRow.hold_id.in_(list(ordered)))
            .where(HoldTransitionRow.event == "release_ordered")
        )
        audit = rows.all()
    assert len(audit) == len(ordered)
    assert all(a.actor == "operator:officer-9 (anonymous)" for a in audit)
    assert all("report withdrawn: the victim's report was withdrawn" in a.cause for a in audit)
    topic = world.runtime.settings.kafka.case_events_topic
    wanted = {str(c) for c in withdrawn}

    def released_event(key: bytes | None, value: bytes) -> bool:
        event = json.loads(value)
        return event["type"] == "hold_released" and event["case_id"] in wanted

    told = await read_topic(
        world.runtime.settings.kafka.bootstrap or "", topic, len(released), keep=released_event
    )
    assert {json.loads(v)["hold_id"] for _, v, _ in told} == {str(h) for h in released}

    # A second withdrawal orders nothing new: releasing ones already ordered, released ones over.
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as client:
        again = await client.post(
            f"/v1/cases/{withdrawn[0]}/withdraw",
            json={"reason": "again", "requested_by": "officer-9"},
        )
        released_hold = next(iter(released))
        refused = await client.post(
            f"/v1/holds/{released_hold}/release",
            json={"reason": "again", "requested_by": "officer-9"},
        )
    assert again.status_code == 409 and "released already" in again.json()["detail"]
    assert refused.status_code == 409 and "released already" in refused.json()["detail"]
    assert (await stats(world))["totals"]["releases"] == len(ordered)


async def test_a_release_retried_after_a_fault_is_carried_out_once(world: LiveStack) -> None:
    case_ids = await post_reports(world.url, 4, seed=43)
    holds = await settled(world.runtime, case_ids)
    registry = world.runtime.registry
    target = next(
        h
        for h, (state, code, _) in sorted(holds.items())
        if state == "stopped" and registry[code].adapter == "http_json"
    )
    code = holds[target][1]
    sim = world.simulation.institutions[code]
    normal = sim.behaviour
    # The institution releases, then its answer never arrives in time: Stopper must ask again.
    sim.behaviour = replace(normal, timeout_rate=1.0, hang_s=1.0)
    # As an operator does it: `stopper holds release`, against the running API.
    code_, out = await command(
        [
            "holds",
            "release",
            str(target),
            "--reason",
            "account cleared by the bank",
            "--by",
            "officer-4",
            "--url",
            world.url,
            "--json",
        ]
    )
    assert code_ == 0, out
    assert json.loads(out) == {
        "hold_id": str(target),
        "outcome": "ordered",
        "state": "releasing",
        "ground": "account_cleared",
    }

    async def retried() -> bool:
        return sim.counts.release_requests >= 2

    await eventually(retried, timeout=30)
    assert (sim.counts.releases, sim.counts.double_releases) == (1, 0)
    sim.behaviour = normal

    async def released() -> bool:
        return (await holds_of(world.runtime, case_ids))[target][0] == "released"

    await eventually(released, timeout=60)
    assert (sim.counts.releases, sim.counts.double_releases) == (1, 0)
    assert sim.counts.release_requests >= 2
    assert (await ledger(world))[target]["status"] == "released"
    async with httpx.AsyncClient(base_url=world.url) as client:
        metrics = (await client.get("/metrics")).text
    assert f'stopper_release_attempts_total{{institution="{code}",outcome="released"}}' in metrics
    assert f'stopper_release_attempts_total{{institution="{code}",outcome="error"}}' in metrics
    assert 'stopper_releases_total{ground="account_cleared",outcome="ordered"}' in metrics
