"""`POST /v1/institutions/{code}/callbacks/iso20022`: a signed camt.029, its answers applied
one by one; forged, replayed, invalid and hostile documents refused with a counted reason, the
service unharmed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from stopper.adapters.institutions.iso20022 import ItemAnswer, build_resolution
from stopper.api.refusals import add_error_handlers
from stopper.api.routers import iso20022
from stopper.app.ports import HoldRecord
from stopper.domain.holds import HoldState, idempotency_key_for
from stopper.domain.messages import AnswerKind, InstitutionAnswer, StatusKind, StopStatus
from stopper.metrics import CALLBACKS, ISO20022_REFUSED
from tests.unit.fakes import FakeDispatchStore
from tests.unit.test_callback_items import sent_holds
from tests.unit.test_callbacks import NOW, signed

PATH = "/v1/institutions/BK01/callbacks/iso20022"


@dataclass
class Api:
    client: httpx.AsyncClient
    store: FakeDispatchStore
    holds: list[HoldRecord]
    app: FastAPI


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    handler, store, holds = await sent_holds(3)
    app = FastAPI()
    add_error_handlers(app)
    app.include_router(iso20022.router(handler))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stopper") as client:
        yield Api(client, store, holds, app)


def answer(record: HoldRecord, kind: AnswerKind, **fields: object) -> ItemAnswer:
    key = idempotency_key_for(record.hold.id)
    outcome = InstitutionAnswer(kind, **fields)  # type: ignore[arg-type]
    status = StopStatus(key, StatusKind.ANSWERED, record.hold.id, outcome)
    return ItemAnswer(key, record.hold.currency, record.hold.amount_asked, status)


def camt029(*answers: ItemAnswer, **reason_codes: str) -> bytes:
    coded = [
        ItemAnswer(
            a.idempotency_key, a.currency, a.amount_asked, a.status, reason_codes.get("code")
        )
        if reason_codes
        else a
        for a in answers
    ]
    return build_resolution(
        message_id="BK01CB0001",
        created_at=NOW,
        sender="BK01",
        receiver="STOPPER",
        answers_message_id=None,
        answers=coded,
    )


async def post(
    api: Api, body: bytes, *, nonce: str = "nonce-0001", secret: str | None = None
) -> httpx.Response:
    headers = {**signed(body, nonce=nonce, secret=secret), "content-type": "application/xml"}
    return await api.client.post(PATH, content=body, headers=headers)


async def test_a_signed_camt029_moves_each_hold_it_answers(api: Api) -> None:
    stopped, gone, waiting = api.holds
    pending = StopStatus(idempotency_key_for(waiting.hold.id), StatusKind.PENDING, waiting.hold.id)
    body = camt029(
        answer(stopped, AnswerKind.STOPPED, amount_held=60_000),
        answer(gone, AnswerKind.NOT_FOUND),
        ItemAnswer(pending.idempotency_key, "CNY", waiting.hold.amount_asked, pending),
    )
    response = await post(api, body)
    assert response.status_code == 200, response.text
    accepted = response.json()
    assert accepted["message_id"] == "BK01CB0001"
    assert [i["outcome"] for i in accepted["items"]] == ["applied", "applied", "pending"]
    assert [i["hold_id"] for i in accepted["items"]] == [str(h.hold.id) for h in api.holds]
    held = api.store.holds[stopped.hold.id].hold
    assert (held.state, held.amount_stopped) == (HoldState.STOPPED, 60_000)
    assert api.store.holds[gone.hold.id].hold.state is HoldState.NOT_FOUND
    assert api.store.holds[waiting.hold.id].hold.state is HoldState.UNCONFIRMED
    replay = await post(api, body)
    assert (replay.status_code, replay.json()["detail"]) == (409, "nonce already used")
    again = await post(api, body, nonce="nonce-0002")
    assert [i["outcome"] for i in again.json()["items"]] == ["repeated", "repeated", "pending"]


async def test_an_unknown_reason_code_is_refused_with_a_counted_reason(api: Api) -> None:
    record = api.holds[0]
    body = camt029(answer(record, AnswerKind.REJECTED, reason="?"), code="ZZ12")
    counted = ISO20022_REFUSED.labels("BK01", "unknown_reason_code")
    refused = CALLBACKS.labels("BK01", "invalid")
    before = (counted._value.get(), refused._value.get())
    response = await post(api, body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("unknown_reason_code")
    assert (counted._value.get(), refused._value.get()) == (before[0] + 1, before[1] + 1)
    assert api.store.holds[record.hold.id].hold.state is HoldState.UNCONFIRMED


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<Document>not closed", "malformed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<Document>&x;</Document>",
            "entities",
        ),
        (b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.029.001.08"/>', "unknown_message"),
        (
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.029.001.09">'
            b"<RsltnOfInvstgtn/></Document>",
            "invalid",
        ),
    ],
)
async def test_a_document_that_is_not_a_valid_camt029_is_refused_400(
    api: Api, body: bytes, reason: str
) -> None:
    counted = ISO20022_REFUSED.labels("BK01", reason)
    before = counted._value.get()
    response = await post(api, body)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]
    assert "passwd" not in response.text
    assert counted._value.get() == before + 1
    assert CALLBACKS.labels("BK01", reason)._value.get() >= 1
    # Unharmed: a valid callback still goes through.
    fine = camt029(answer(api.holds[0], AnswerKind.STOPPED, amount_held=1))
    assert (await post(api, fine, nonce="nonce-after")).status_code == 200


async def test_the_signature_is_checked_before_the_document_is_read(api: Api) -> None:
    hostile = b'<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">]><Document>&a;</Document>'
    counted = ISO20022_REFUSED.labels("BK01", "entities")
    before = counted._value.get()
    forged = await post(api, hostile, secret="guessed")
    assert (forged.status_code, forged.json()["detail"]) == (401, "signature does not match")
    assert counted._value.get() == before
    unknown = await api.client.post(
        "/v1/institutions/ZZ99/callbacks/iso20022", content=hostile, headers=signed(hostile)
    )
    assert unknown.status_code == 404


async def test_an_answer_about_a_request_never_sent_here_is_refused(api: Api) -> None:
    body = camt029(answer(api.holds[0], AnswerKind.STOPPED, amount_held=1))
    response = await api.client.post(
        "/v1/institutions/BK02/callbacks/iso20022",
        content=body,
        headers=signed(body, code="BK02"),
    )
    assert response.status_code == 403


def test_the_route_is_documented_with_an_xml_body(api: Api) -> None:
    operation = api.app.openapi()["paths"]["/v1/institutions/{code}/callbacks/iso20022"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/xml"}
    assert {"200", "400", "401", "403", "404", "409", "413", "422"} <= set(operation["responses"])
