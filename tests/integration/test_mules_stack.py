"""The mule-account registry on the real stack: PostgreSQL, the Kafka-protocol broker and the
simulated institutions over HTTP on loopback. Two reports naming the same accounts (one filed
over HTTP, one on the reports topic) link their cases and flag the accounts; a third report,
connected only through an account the money trail found, joins their ring; and the stop
requests for the flagged accounts reach the institutions saying so, as JSON and as camt.056."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from stopper.app.auth import KeyRole, new_key
from stopper.domain.cases import case_id_for
from stopper.runtime import Runtime
from stopper.simulation.institutions import Simulation
from stopper.simulation.mules import Destination, MulePlan
from tests.factories import fresh_account, naming_doc
from tests.integration.helpers import eventually
from tests.integration.live_stack import live_stack

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    runtime: Runtime
    simulation: Simulation
    client: httpx.AsyncClient


@pytest.fixture
async def stack(
    tmp_path: Path, migrated_postgres: str, kafka_bootstrap: str
) -> AsyncIterator[Stack]:
    async with (
        live_stack(tmp_path, migrated_postgres, kafka_bootstrap) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30) as client,
    ):
        yield Stack(live.runtime, live.simulation, client)


async def settled_case(client: httpx.AsyncClient, case_id: str, holds: int) -> dict[str, Any]:
    async def settled() -> dict[str, Any] | None:
        answer = await client.get(f"/v1/cases/{case_id}")
        if answer.status_code != 200:
            return None
        case: dict[str, Any] = answer.json()
        done = [h for h in case["holds"] if h["state"] == "stopped"]
        return case if len(done) == holds else None

    return await eventually(settled, timeout=30)


async def test_reports_naming_one_account_link_their_cases_flag_it_and_tell_the_banks(
    stack: Stack,
) -> None:
    client, simulation = stack.client, stack.simulation
    on_json, on_iso = fresh_account("BK07"), fresh_account("BK01")  # http_json, iso20022
    own_a, own_b, traced_from = fresh_account("BK08"), fresh_account("BK09"), fresh_account("BK02")
    # The third victim paid an account whose money moved on, all of it, to one of the second
    # report's accounts: the money trail finds it there.
    simulation.mules.plant(
        *traced_from, MulePlan(keep_share=0.0, destinations=(Destination(1.0, *own_b),))
    )

    first = naming_doc(on_json, on_iso, own_a)
    filed = await client.post("/v1/reports", json=first)
    assert filed.status_code == 202, filed.text
    case_a = filed.json()["case_id"]
    await settled_case(client, case_a, 3)

    second = naming_doc(on_json, on_iso, own_b, agency={"code": "PSB-OTHER", "name": "Other"})
    await stack.runtime.bus.publish(
        stack.runtime.settings.kafka.reports_topic,
        second["report_id"],
        json.dumps(second).encode(),
    )
    case_b = str(case_id_for(second["report_id"]))
    await settled_case(client, case_b, 3)

    third = naming_doc(traced_from)
    filed = await client.post("/v1/reports", json=third)
    assert filed.status_code == 202, filed.text
    case_c = filed.json()["case_id"]
    c = await settled_case(client, case_c, 2)
    assert {h["layer"] for h in c["holds"]} == {1, 2}

    def masked(account: tuple[str, str]) -> dict[str, str]:
        return {"institution_code": account[0], "account": "****" + account[1][-4:]}

    # The first case shares two accounts with the second, and is in a ring with the third.
    a = (await client.get(f"/v1/cases/{case_a}")).json()["linked_cases"]
    assert [(x["case_id"], x["agency_code"]) for x in a["cases"]] == [(case_b, "PSB-OTHER")]
    assert sorted(a["cases"][0]["shared_accounts"], key=str) == sorted(
        [masked(on_json), masked(on_iso)], key=str
    )
    assert (a["total"], a["ring"], a["complete"]) == (
        1,
        {"size": 3, "case_ids": [case_b, case_c]},
        True,
    )
    linked_c = c["linked_cases"]
    assert [(x["case_id"], x["shared_accounts"]) for x in linked_c["cases"]] == [
        (case_b, [masked(own_b)])
    ]
    assert linked_c["ring"]["size"] == 3

    # The flagged accounts, masked; a look-up by body, never by URL.
    flagged = (await client.get("/v1/accounts/flagged", params={"limit": 500})).json()
    ours = {
        (f["institution_code"], f["account"]): f
        for f in flagged["accounts"]
        if f["institution_code"] in ("BK07", "BK01", "BK09")
    }
    for account in (on_json, on_iso, own_b):
        entry = ours[(account[0], masked(account)["account"])]
        assert entry["cases"] == 2 and entry["flagged"] is True
    assert {c["case_id"] for c in ours[("BK09", masked(own_b)["account"])]["recent_cases"]} == {
        case_b,
        case_c,
    }
    found = await client.post(
        "/v1/accounts/lookup",
        json={"institution_code": on_iso[0], "account_number": on_iso[1]},
    )
    assert found.status_code == 200, found.text
    record = found.json()
    assert (record["flagged"], record["cases"], record["account"]) == (
        True,
        2,
        masked(on_iso)["account"],
    )
    assert [x["case_id"] for x in record["recent_cases"]] == [case_b, case_a]
    # The first stop held the account's money; the second found nothing more there.
    assert record["amount_stopped"] == {"CNY": "150.00"}
    once = await client.post(
        "/v1/accounts/lookup",
        json={"institution_code": own_a[0], "account_number": own_a[1]},
    )
    assert once.status_code == 200 and once.json()["flagged"] is False
    victim = first["transfers"][0]["victim_account"]
    code, number = fresh_account()
    for nobody in (victim, {"institution_code": code, "account_number": number}):
        missing = await client.post("/v1/accounts/lookup", json=nobody)
        assert missing.status_code == 404
        assert missing.json()["detail"] == "no case names this account"

    # The institutions were told: the second report's requests (a JSON stop request and a
    # camt.056) and the third case's trail hold, each a known mule in two cases.
    ledger = {e["hold_id"]: e["known_mule_cases"] for e in simulation.ledger()}
    a_case = (await client.get(f"/v1/cases/{case_a}")).json()
    b = (await client.get(f"/v1/cases/{case_b}")).json()

    def hold_of(case: dict[str, Any], account: tuple[str, str]) -> str:
        [hold] = [
            h
            for h in case["holds"]
            if (h["institution_code"], h["account"]) == (account[0], masked(account)["account"])
        ]
        return str(hold["hold_id"])

    assert ledger[hold_of(b, on_json)] == ledger[hold_of(b, on_iso)] == 2
    assert ledger[hold_of(c, own_b)] == 2
    assert ledger[hold_of(a_case, on_json)] is None  # the first case to name it
    assert ledger[hold_of(b, own_b)] is None  # named by the second case alone when it was sent
    assert simulation.stats()["totals"]["mule_flagged"] >= 3

    # Nothing above carried a full account number.
    said = json.dumps([a, c, b, flagged, record])
    for account in (on_json, on_iso, own_a, own_b, traced_from):
        assert account[1] not in said
    metrics = (await client.get("/metrics")).text
    assert "stopper_mule_stop_requests_total" in metrics
    assert not any(account[1] in metrics for account in (on_json, on_iso, own_b))


async def test_an_intake_key_may_not_look_accounts_up(stack: Stack) -> None:
    stored, token = new_key("PSB-TEST", KeyRole.INTAKE, "test", datetime.now(UTC))
    await stack.runtime.store.add_api_key(stored)
    headers = {"Authorization": f"Bearer {token}"}
    account = {"institution_code": "BK01", "account_number": fresh_account()[1]}
    looked_up = await stack.client.post("/v1/accounts/lookup", json=account, headers=headers)
    listed = await stack.client.get("/v1/accounts/flagged", headers=headers)
    assert (looked_up.status_code, listed.status_code) == (403, 403)
    invalid = await stack.client.post(
        "/v1/accounts/lookup", json={"institution_code": "BK01", "account_number": "12 34"}
    )
    assert invalid.status_code == 422 and "12 34" not in invalid.text
