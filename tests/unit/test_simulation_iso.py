"""The simulated ISO 20022 institutions, driven through the simulator's app with a registry of
this test's own: camt.056 answered by a valid camt.029 at once or by a signed camt.029 callback,
each TxInf carried out like a JSON stop (one record per key, partial balances, onward
transfers, faults), invalid and hostile documents answered 400, returns answered by a pacs.004,
and the JSON status routes still answering for ISO institutions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from uuid import uuid4

import httpx
import pytest

from stopper.adapters.institutions.iso20022 import (
    Recall,
    RecallItem,
    ReturnInstruction,
    build_recall,
    build_return_instruction,
    parse_document,
    read_resolution,
    read_return_answer,
)
from stopper.contracts.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_matches,
)
from stopper.domain.holds import idempotency_key_for
from stopper.domain.messages import (
    AnswerKind,
    OnwardKind,
    OrderAnswer,
    OrderReturn,
    RequestStop,
    ReturnPayout,
    StatusKind,
    SupplementOf,
)
from stopper.domain.supplements import supplement_key_for
from stopper.registry import Institution, InstitutionKind, Registry
from stopper.simulation.institutions import Simulation
from stopper.simulation.mules import Destination, MulePlan
from stopper.simulation.profiles import Behaviour
from stopper.simulation.server import create_simulation_app

ISO, ISO_LATER, JSON = "IB01", "IB02", "JB01"
REGISTRY = Registry(
    {
        ISO: Institution(ISO, "ISO at once", InstitutionKind.BANK, adapter="iso20022"),
        ISO_LATER: Institution(ISO_LATER, "ISO by callback", InstitutionKind.BANK, "iso20022"),
        JSON: Institution(JSON, "JSON", InstitutionKind.BANK),
    }
)
AT_ONCE = Behaviour(
    latency_median_ms=0.0, missing_account_rate=0.0, reject_rate=0.0, move_on_rate=0.0
)
BY_CALLBACK = replace(AT_ONCE, answers_by_callback=True, callback_delay_ms=0.0)
SECRET = "iso-secret"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Stopper:
    """Takes every callback (204) and keeps it."""

    received: list[Received] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                request_line, *lines = head.strip().split("\r\n")
                headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines)}
                body = await reader.readexactly(int(headers["content-length"]))
                self.received.append(Received(request_line.split()[1], headers, body))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass
class World:
    simulation: Simulation
    client: httpx.AsyncClient
    stopper: Stopper


@asynccontextmanager
async def simulated(behaviours: dict[str, Behaviour] | None = None) -> AsyncIterator[World]:
    stopper = Stopper()
    server = await asyncio.start_server(stopper.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    chosen = {ISO: AT_ONCE, ISO_LATER: BY_CALLBACK, JSON: AT_ONCE, **(behaviours or {})}
    simulation = Simulation(
        REGISTRY, chosen, secret_for=lambda ref: SECRET, stopper_url=f"http://127.0.0.1:{port}"
    )
    transport = httpx.ASGITransport(app=create_simulation_app(simulation))
    async with server:
        await simulation.start()
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
                yield World(simulation, client, stopper)
        finally:
            await simulation.stop()


def stop(code: str, account: str = "6222111122223333", amount: int = 100_000) -> RequestStop:
    hold_id = uuid4()
    return RequestStop(
        hold_id=hold_id,
        case_id=uuid4(),
        institution_code=code,
        account_number=account,
        currency="CNY",
        amount=amount,
        layer=1,
        idempotency_key=idempotency_key_for(hold_id, 0),
        generation=0,
        requested_at=datetime.now(UTC),
    )


def recall(code: str, *requests: RequestStop) -> Recall:
    items = tuple(RecallItem(r, (), "PSB-TEST") for r in requests)
    return Recall(uuid4().hex, datetime.now(UTC), "STOPPER", code, items)


async def send(
    client: httpx.AsyncClient, sent: Recall, body: bytes | None = None
) -> httpx.Response:
    return await client.post(
        f"/institutions/{sent.receiver}/iso20022/camt.056",
        content=build_recall(sent) if body is None else body,
        headers={"Idempotency-Key": sent.message_id, "content-type": "application/xml"},
    )


async def eventually(holds: Callable[[], bool], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not holds():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


async def test_an_iso_bank_answers_a_batch_at_once_with_a_valid_camt029() -> None:
    async with simulated() as world:
        sent = recall(ISO, stop(ISO, "6222000000000001"), stop(ISO, "6222000000000002", 5_000))
        answer = await send(world.client, sent)

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    read = read_resolution(parse_document(answer.content))  # the official schema accepts it
    assert read.answers_message_id == sent.message_id and read.sender == ISO
    assert [i.idempotency_key for i in read.items] == [
        i.request.idempotency_key for i in sent.items
    ]
    for item, asked in zip(read.items, sent.items, strict=True):
        assert item.status is not None and item.status.answer is not None
        assert item.status.answer.kind is AnswerKind.STOPPED
        assert item.status.answer.amount_held == asked.request.amount


async def test_each_key_is_carried_out_once_however_often_and_in_whatever_batch() -> None:
    async with simulated() as world:
        first, second = stop(ISO, "6222000000000001"), stop(ISO, "6222000000000002")
        answers = [
            await send(world.client, recall(ISO, first)),
            await send(world.client, recall(ISO, first, second)),
            await send(world.client, recall(ISO, second, first)),
        ]
        stats = world.simulation.stats()["institutions"][ISO]

    assert {a.status_code for a in answers} == {200}
    assert stats["stops_executed"] == 2 and stats["double_stops"] == 0
    assert stats["iso_messages"] == 3 and stats["stop_requests"] == 5


async def test_an_iso_bank_counts_the_recalls_that_say_the_account_is_a_known_mule() -> None:
    async with simulated() as world:
        mule = replace(stop(ISO, "6222000000000003"), mule_cases=5)
        plain = stop(ISO, "6222000000000004")
        assert (await send(world.client, recall(ISO, mule, plain))).status_code == 200
        stats = world.simulation.stats()["institutions"][ISO]
        ledger = {e["hold_id"]: e["known_mule_cases"] for e in world.simulation.ledger()}
    assert stats["mule_flagged"] == 1
    assert ledger == {str(mule.hold_id): 5, str(plain.hold_id): None}


async def test_partial_balances_and_onward_transfers_come_back_in_the_camt029() -> None:
    async with simulated() as world:
        request = stop(ISO, "6222000000000009", 100_000)
        plan = MulePlan(0.25, (Destination(0.6, JSON, "6222333344445555"), Destination(0.4)))
        world.simulation.mules.plant(ISO, request.account_number, plan)
        answer = await send(world.client, recall(ISO, request))

    (item,) = read_resolution(parse_document(answer.content)).items
    assert item.status is not None and item.status.answer is not None
    held = item.status.answer
    assert held.kind is AnswerKind.STOPPED and held.amount_held == 25_000
    assert [(t.kind, t.amount, t.institution_code) for t in held.onward] == [
        (OnwardKind.TRANSFER, 45_000, JSON),
        (OnwardKind.CASH_WITHDRAWAL, 30_000, None),
    ]


async def test_missing_accounts_and_refusals_answer_rjcr_with_their_reasons() -> None:
    missing = replace(AT_ONCE, missing_account_rate=1.0)
    refusing = replace(AT_ONCE, reject_rate=1.0)
    async with simulated({ISO: missing}) as world:
        not_found = await send(world.client, recall(ISO, stop(ISO)))
    async with simulated({ISO: refusing}) as world:
        rejected = await send(world.client, recall(ISO, stop(ISO)))

    (a,) = read_resolution(parse_document(not_found.content)).items
    (b,) = read_resolution(parse_document(rejected.content)).items
    assert a.status is not None and a.status.answer is not None
    assert a.status.answer.kind is AnswerKind.NOT_FOUND
    assert b"<Cd>AC01</Cd>" in not_found.content
    assert b.status is not None and b.status.answer is not None
    assert b.status.answer.kind is AnswerKind.REJECTED
    assert b.status.answer.reason == "LEGL legal decision: account under another authority's order"


async def test_a_callback_bank_answers_202_then_one_signed_camt029_per_message() -> None:
    async with simulated() as world:
        first, second = stop(ISO_LATER, "6222000000000001"), stop(ISO_LATER, "6222000000000002")
        sent = recall(ISO_LATER, first, second)
        answers = [await send(world.client, sent) for _ in range(3)]
        await eventually(lambda: len(world.stopper.received) == 1)
        again = await send(world.client, recall(ISO_LATER, second))  # nothing new: no callback
        await asyncio.sleep(0.2)
        counts = world.simulation.institutions[ISO_LATER].counts

    assert {(a.status_code, a.content) for a in answers} == {(202, b"")}
    assert again.status_code == 202
    (callback,) = world.stopper.received
    assert callback.path == f"/v1/institutions/{ISO_LATER}/callbacks/iso20022"
    assert callback.headers["content-type"] == "application/xml"
    assert signature_matches(
        SECRET,
        int(callback.headers[TIMESTAMP_HEADER.lower()]),
        callback.headers[NONCE_HEADER.lower()],
        callback.body,
        callback.headers[SIGNATURE_HEADER.lower()],
    )
    read = read_resolution(parse_document(callback.body))
    assert read.answers_message_id == sent.message_id
    assert [i.idempotency_key for i in read.items] == [
        first.idempotency_key,
        second.idempotency_key,
    ]
    assert all(i.status and i.status.kind is StatusKind.ANSWERED for i in read.items)
    assert (counts.callbacks_owed, counts.callbacks_sent, counts.stops_executed) == (1, 1, 2)


async def test_a_double_callback_delivers_the_same_camt029_twice() -> None:
    async with simulated({ISO_LATER: replace(BY_CALLBACK, double_callback_rate=1.0)}) as world:
        await send(world.client, recall(ISO_LATER, stop(ISO_LATER)))
        await eventually(lambda: len(world.stopper.received) == 2)

    first, second = world.stopper.received
    assert first.body == second.body
    assert first.headers[NONCE_HEADER.lower()] != second.headers[NONCE_HEADER.lower()]


async def test_the_json_status_routes_and_ledger_answer_for_iso_banks() -> None:
    async with simulated() as world:
        request = stop(ISO)
        await send(world.client, recall(ISO, request))
        status = await world.client.get(f"/institutions/{ISO}/stops/{request.idempotency_key}")
        many = await world.client.post(
            f"/institutions/{ISO}/stops/status",
            json={"idempotency_keys": [request.idempotency_key, "stopper-unknown-0"]},
        )
        ledger = (await world.client.get("/ledger")).json()["holds"]

    assert status.status_code == 200 and status.json()["status"] == "stopped"
    assert [s["status"] for s in many.json()["statuses"]] == ["stopped", "unknown"]
    assert [(e["hold_id"], e["status"]) for e in ledger] == [(str(request.hold_id), "stopped")]


async def test_invalid_and_hostile_documents_are_answered_400_with_the_reason() -> None:
    async with simulated() as world:
        sent = recall(ISO, stop(ISO))
        good = build_recall(sent)
        bad_reason = await send(
            world.client, sent, good.replace(b"<Cd>FRAD</Cd>", b"<Cd>FRAUD</Cd>")
        )
        doctype = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        hostile = await send(world.client, sent, doctype + good.split(b"?>", 1)[1])
        wrong = await send(world.client, sent, good.replace(b"camt.056.001.08", b"camt.056.001.07"))
        huge = await send(world.client, sent, b" " * (5 * 1024 * 1024))
        stats = world.simulation.stats()["institutions"][ISO]

    assert bad_reason.status_code == 400
    assert bad_reason.json()["reason"] == "invalid"
    assert "/Document/FIToFIPmtCxlReq/Undrlyg/TxInf/CxlRsnInf/Rsn/Cd" in bad_reason.json()["detail"]
    assert (hostile.status_code, hostile.json()["reason"]) == (400, "entities")
    assert (wrong.status_code, wrong.json()["reason"]) == (400, "unknown_message")
    assert (huge.status_code, huge.json()["reason"]) == (413, "too_large")
    assert stats["stops_executed"] == 0


async def test_a_recall_for_another_bank_or_under_another_key_is_refused() -> None:
    async with simulated() as world:
        elsewhere = recall(ISO, stop(ISO_LATER))
        wrong_key = recall(ISO, stop(ISO))
        answers = [
            await send(world.client, elsewhere),
            await world.client.post(
                f"/institutions/{ISO}/iso20022/camt.056",
                content=build_recall(wrong_key),
                headers={"Idempotency-Key": "another", "content-type": "application/xml"},
            ),
            await send(world.client, recall(JSON, stop(JSON))),  # not an ISO institution
        ]

    assert [a.status_code for a in answers] == [400, 400, 404]


async def test_faults_and_outages_of_the_profile_apply_to_iso_banks() -> None:
    async with simulated({ISO: replace(AT_ONCE, error_rate=1.0)}) as world:
        errored = await send(world.client, recall(ISO, stop(ISO)))
    async with simulated({ISO: replace(AT_ONCE, malformed_rate=1.0)}) as world:
        garbled = await send(world.client, recall(ISO, stop(ISO)))
    async with simulated({ISO: replace(AT_ONCE, outage=(0.0, 60.0))}) as world:
        down = await send(world.client, recall(ISO, stop(ISO)))

    assert errored.status_code == 500
    assert garbled.status_code == 200 and b"gateway" in garbled.content
    assert down.status_code == 503


def return_order(request: RequestStop, *amounts: int) -> ReturnInstruction:
    payouts = tuple(
        ReturnPayout(f"V{i}", JSON, f"622299990000000{i}", a) for i, a in enumerate(amounts, 1)
    )
    order = OrderReturn(
        hold_id=request.hold_id,
        case_id=request.case_id,
        institution_code=request.institution_code,
        account_number=request.account_number,
        currency="CNY",
        amount=sum(amounts),
        legal_document_ref="Court order 2025/17",
        payouts=payouts,
        idempotency_key=f"stopper-return-{request.hold_id}-1",
        requested_at=datetime.now(UTC),
    )
    return ReturnInstruction(uuid4().hex, datetime.now(UTC), "STOPPER", ISO, order)


async def post_return(client: httpx.AsyncClient, sent: ReturnInstruction) -> httpx.Response:
    return await client.post(
        f"/institutions/{ISO}/iso20022/return",
        content=build_return_instruction(sent),
        headers={"Idempotency-Key": sent.message_id, "content-type": "application/xml"},
    )


async def test_a_return_of_frozen_funds_is_answered_with_a_matching_pacs004_once() -> None:
    async with simulated() as world:
        request = stop(ISO, amount=100_000)
        await send(world.client, recall(ISO, request))
        freeze = await world.client.post(
            f"/institutions/{ISO}/freezes",
            json={
                "hold_id": str(request.hold_id),
                "case_id": str(request.case_id),
                "institution_code": ISO,
                "account_number": request.account_number,
                "currency": "CNY",
                "idempotency_key": f"stopper-freeze-{request.hold_id}-doc",
                "requested_at": datetime.now(UTC).isoformat(),
                "amount": 100_000,
                "legal_document_ref": "doc",
            },
            headers={"Idempotency-Key": f"stopper-freeze-{request.hold_id}-doc"},
        )
        sent = return_order(request, 60_000, 40_000)
        first = await post_return(world.client, sent)
        again = await post_return(world.client, replace(sent, message_id=uuid4().hex))
        counts = world.simulation.institutions[ISO].counts

    assert freeze.json()["status"] == "frozen"
    assert first.status_code == 200 and first.content == again.content
    root = parse_document(first.content)
    assert read_return_answer(root, sent.order) == OrderAnswer(True, 100_000)
    assert (counts.returns, counts.double_returns, counts.amount_returned) == (1, 0, 100_000)


async def test_a_return_without_a_freeze_is_refused_by_camt029() -> None:
    async with simulated() as world:
        request = stop(ISO)
        await send(world.client, recall(ISO, request))
        sent = return_order(request, 10_000)
        answer = await post_return(world.client, sent)

    assert answer.status_code == 200
    refused = read_return_answer(parse_document(answer.content), sent.order)
    assert refused == OrderAnswer(False, 0, "LEGL legal decision: no freeze in force here")


async def test_a_supplement_txinf_holds_the_extra_once_and_the_ledger_adds_it() -> None:
    async with simulated() as world:
        account = "6222000077770001"
        world.simulation.mules.plant(ISO, account, MulePlan(keep_share=1.0))
        first = stop(ISO, account, amount=60_000)
        await send(world.client, recall(ISO, first))
        extra = replace(
            stop(ISO, account, amount=15_000),
            hold_id=first.hold_id,
            case_id=first.case_id,
            idempotency_key=supplement_key_for(first.hold_id, 1),
            supplement=SupplementOf(1, first.idempotency_key, uuid4()),
        )
        answer = await send(world.client, recall(ISO, extra))
        repeated = await send(world.client, recall(ISO, extra))  # a retry, in another message
        by_hold = {e["hold_id"]: e for e in world.simulation.ledger()}
        stats = world.simulation.stats()["institutions"][ISO]

    [item] = read_resolution(parse_document(answer.content)).items
    assert item.idempotency_key == extra.idempotency_key and item.hold_id == first.hold_id
    assert item.status is not None and item.status.answer is not None
    assert (item.status.answer.kind, item.status.answer.amount_held) == (AnswerKind.STOPPED, 15_000)
    assert read_resolution(parse_document(repeated.content)).items == (item,)
    assert (stats["stops_executed"], stats["supplements_executed"]) == (1, 1)
    entry = by_hold[str(first.hold_id)]
    assert (entry["status"], entry["amount_held"], entry["generation"]) == ("stopped", 75_000, 0)
    assert [s["idempotency_key"] for s in entry["supplements"]] == [extra.idempotency_key]


async def test_the_callback_never_says_pending_when_the_event_loop_wakes_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvloop's timers are millisecond-grained and often fire before the time asked for; the one
    camt.029 a message is owed must still carry every outcome, never PDCR (Stopper would wait
    for a status inquiry to learn what the bank had long decided)."""
    asleep = asyncio.sleep

    async def early(delay: float, result: object = None) -> object:
        return await asleep(max(0.0, delay - 0.002), result)

    monkeypatch.setattr(asyncio, "sleep", early)
    later = replace(BY_CALLBACK, callback_delay_ms=30.0, latency_sigma=0.0)
    async with simulated({ISO_LATER: later}) as world:
        for _ in range(5):
            await send(world.client, recall(ISO_LATER, stop(ISO_LATER), stop(ISO_LATER)))
        await eventually(lambda: len(world.stopper.received) == 5)

    for callback in world.stopper.received:
        read = read_resolution(parse_document(callback.body))
        assert [i.status and i.status.kind for i in read.items] == [StatusKind.ANSWERED] * 2
