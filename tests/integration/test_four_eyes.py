"""Four eyes on money going out, on the real stack (PostgreSQL, the broker, the simulated
institutions over HTTP) with keys required: a return waits for a second person, the same key
and the same person under another key are refused with the reason, an approval pays the victims
at the simulated institution, a rejection closes an order."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from stopper import cli
from stopper.adapters.db.models import ApprovalOrderRow, HoldTransitionRow
from stopper.api.app import create_app
from stopper.app.auth import KeyRole, new_key
from stopper.config import ApiSettings
from stopper.runtime import Runtime, build_runtime
from stopper.serving import serving
from stopper.simulation.mules import MulePlan
from tests.factories import report_doc
from tests.integration.helpers import eventually
from tests.integration.test_fanout import (  # noqa: F401  (the fixtures)
    World,
    stopper,
    world,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def guarded(world: World) -> AsyncIterator[tuple[str, Runtime]]:  # noqa: F811
    settings = world.settings.model_copy(
        update={"api": ApiSettings(port=world.stopper_port, require_keys=True)}
    )
    runtime = build_runtime(settings)
    async with serving(create_app(runtime), port=world.stopper_port) as url:
        yield url, runtime


async def key(runtime: Runtime, role: KeyRole, holder: str | None = None) -> dict[str, str]:
    agency = "PSB-TEST" if role is KeyRole.INTAKE else None
    stored, token = new_key(agency, role, "four eyes test", datetime.now(UTC), holder=holder)
    await runtime.store.add_api_key(stored)
    return {"authorization": f"Bearer {token}"}


async def test_a_return_is_sent_only_once_another_person_approves_it(
    world: World,  # noqa: F811
    guarded: tuple[str, Runtime],
) -> None:
    url, runtime = guarded
    account = ("BK03", "6222000033339001")
    world.simulation.mules.plant(*account, MulePlan(keep_share=1.0))
    doc = report_doc()
    doc["transfers"] = [
        dict(
            doc["transfers"][0],
            amount="30000.00",
            receiving_account={"institution_code": account[0], "account_number": account[1]},
        )
    ]
    intake = await key(runtime, KeyRole.INTAKE)
    alice = await key(runtime, KeyRole.OPERATOR, "alice")
    alice_again = await key(runtime, KeyRole.OPERATOR, "Alice")  # her second key
    bob = await key(runtime, KeyRole.OPERATOR, "bob")
    nobody = await key(runtime, KeyRole.OPERATOR)  # a key naming no holder

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        filed = await client.post("/v1/reports", json=doc, headers=intake)
        assert filed.status_code == 202, filed.text
        case_id = filed.json()["case_id"]

        async def hold_in(state: str) -> dict[str, Any] | None:
            case = (await client.get(f"/v1/cases/{case_id}", headers=alice)).json()
            holds = case.get("holds", [])
            return case if [h["state"] for h in holds] == [state] else None

        case = await eventually(lambda: hold_in("stopped"), timeout=30)
        [hold] = case["holds"]
        frozen = await client.post(
            f"/v1/holds/{hold['hold_id']}/freeze",
            json={"legal_document_ref": "PSB-FRZ-4", "requested_by": "alice"},
            headers=alice,
        )
        assert frozen.status_code == 202 and frozen.json()["approval"] == "none"
        await eventually(lambda: hold_in("frozen"), timeout=15)

        order = {"legal_document_ref": "PSB-RET-4", "requested_by": "alice"}
        returns = f"/v1/cases/{case_id}/returns"
        anonymous = await client.post(returns, json=order, headers=nobody)
        assert anonymous.status_code == 403 and "names no holder" in anonymous.json()["detail"]
        first = await client.post(returns, json=order, headers=alice)
        assert first.status_code == 202, first.text
        pending = first.json()
        assert (pending["approval"], pending["requester"]["person"]) == ("pending", "alice")
        [would] = pending["returns"]
        assert (would["hold_id"], would["amount"]) == (hold["hold_id"], "30000.00")
        assert await hold_in("frozen") is not None  # nothing goes out yet
        second = (await client.post(returns, json=order, headers=alice)).json()

        listed = (
            await client.get("/v1/return-orders", params={"status": "pending"}, headers=bob)
        ).json()["orders"]
        assert {pending["order_id"], second["order_id"]} <= {o["order_id"] for o in listed}

        approve = f"/v1/return-orders/{pending['order_id']}/approve"
        same_key = await client.post(approve, json={"approved_by": "bob"}, headers=alice)
        assert same_key.status_code == 403
        assert "same key" in same_key.json()["detail"]
        same_person = await client.post(approve, json={"approved_by": "bob"}, headers=alice_again)
        assert same_person.status_code == 403
        assert "alice ordered this return" in same_person.json()["detail"]
        assert world.simulation.stats()["totals"]["returns"] == 0

        rejected = await client.post(
            f"/v1/return-orders/{second['order_id']}/reject",
            json={"rejected_by": "bob", "reason": "ordered twice"},
            headers=bob,
        )
        assert rejected.status_code == 200, rejected.text
        assert (rejected.json()["approval"], rejected.json()["reason"]) == (
            "rejected",
            "ordered twice",
        )
        late = await client.post(
            f"/v1/return-orders/{second['order_id']}/approve",
            json={"approved_by": "bob"},
            headers=bob,
        )
        assert late.status_code == 409 and "already rejected" in late.json()["detail"]

        approved = await client.post(approve, json={"approved_by": "bob"}, headers=bob)
        assert approved.status_code == 202, approved.text
        assert approved.json()["decider"]["person"] == "bob"
        assert [r["amount"] for r in approved.json()["returns"]] == ["30000.00"]
        case = await eventually(lambda: hold_in("returned"), timeout=15)
        twice = await client.post(approve, json={"approved_by": "bob"}, headers=bob)
        assert twice.status_code == 409 and "already approved by bob" in twice.json()["detail"]
        assert not (
            await client.get("/v1/return-orders", params={"status": "pending"}, headers=bob)
        ).json()["orders"]

    assert case["holds"][0]["amount_returned"] == "30000.00"
    assert [p["status"] for p in case["payouts"]] == ["paid"]
    totals = world.simulation.stats()["totals"]
    assert (totals["returns"], totals["double_returns"], totals["amount_returned"]) == (
        1,
        0,
        3_000_000,
    )
    async with runtime.engine.connect() as connection:
        [started] = (
            await connection.execute(
                select(HoldTransitionRow.actor, HoldTransitionRow.cause).where(
                    HoldTransitionRow.hold_id == UUID(hold["hold_id"]),
                    HoldTransitionRow.event == "return_started",
                )
            )
        ).all()
        recorded = (
            await connection.execute(
                select(ApprovalOrderRow).where(ApprovalOrderRow.id == UUID(pending["order_id"]))
            )
        ).one()
    bob_key = approved.json()["decider"]["key_id"]
    assert started.actor == f"operator:bob (key:{bob_key})"
    assert f"ordered by operator:alice (key:{pending['requester']['key_id']})" in started.cause
    assert (recorded.requester_person, recorded.decider_person) == ("alice", "bob")
    assert recorded.status == "approved"


async def test_the_cli_orders_lists_approves_and_rejects_returns(
    world: World,  # noqa: F811
    stopper: str,  # noqa: F811
) -> None:
    """Keys not required (development): each operator names themselves (`--by`, sent as
    X-Operator), and the second person's approval sends the money."""
    account = ("BK03", "6222000033339002")
    world.simulation.mules.plant(*account, MulePlan(keep_share=1.0))
    doc = report_doc()
    doc["transfers"] = [
        dict(
            doc["transfers"][0],
            amount="12000.00",
            receiving_account={"institution_code": account[0], "account_number": account[1]},
        )
    ]
    async with httpx.AsyncClient(base_url=stopper, timeout=30) as client:
        case_id = (await client.post("/v1/reports", json=doc)).json()["case_id"]

        async def hold_in(state: str) -> dict[str, Any] | None:
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            holds = case.get("holds", [])
            return case if [h["state"] for h in holds] == [state] else None

        [hold] = (await eventually(lambda: hold_in("stopped"), timeout=30))["holds"]
        await client.post(
            f"/v1/holds/{hold['hold_id']}/freeze",
            json={"legal_document_ref": "PSB-FRZ-5", "requested_by": "officer-7"},
        )
        await eventually(lambda: hold_in("frozen"), timeout=15)

        async def command(*args: str) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = await asyncio.to_thread(cli.main, ["returns", *args, "--url", stopper])
            return code, out.getvalue(), err.getvalue()

        order = ("order", case_id, "--document", "PSB-RET-5", "--by", "officer-7")
        code, shown, _ = await command(*order)
        assert code == 0 and "pending" in shown and "12000.00 CNY" in shown, shown
        code, ordered, _ = await command(*order, "--json")
        rejected_id = json.loads(ordered)["order_id"]
        order_id = shown.split()[2]
        code, pending, _ = await command("pending")
        assert code == 0 and pending.splitlines()[0].split()[:2] == ["ORDER", "APPROVAL"]
        assert order_id in pending and rejected_id in pending

        code, _, refused = await command("approve", order_id, "--by", "officer-7")
        assert code == 1 and "HTTP 403" in refused and "officer-7 ordered this return" in refused
        code, rejected, _ = await command(
            "reject", rejected_id, "--by", "supervisor-2", "--reason", "ordered twice"
        )
        assert code == 0 and "rejected by supervisor-2" in rejected and "ordered twice" in rejected
        code, approved, _ = await command("approve", order_id, "--by", "supervisor-2")
        assert code == 0 and "approved by supervisor-2" in approved, approved
        await eventually(lambda: hold_in("returned"), timeout=15)
        code, _, again = await command("approve", order_id, "--by", "supervisor-3")
        assert code == 1 and "HTTP 409" in again
        code, pending, _ = await command("pending", "--json")
        assert {order_id, rejected_id}.isdisjoint(
            o["order_id"] for o in json.loads(pending)["orders"]
        )
    assert account[1] not in shown + approved
