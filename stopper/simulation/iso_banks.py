"""The ISO 20022 side of the simulated institutions: the ones whose registry entry says
`adapter = "iso20022"`.

    POST /institutions/{code}/iso20022/camt.056   a camt.056.001.08 recall (application/xml,
         Idempotency-Key: its message id) -> 200 camt.029.001.09, one answer per TxInf; or 202
         (empty) and the camt.029 follows as a signed callback to
         {stopper}/v1/institutions/{code}/callbacks/iso20022 (the JSON callbacks' HMAC headers,
         computed over the XML body)
    POST /institutions/{code}/iso20022/return     a return instruction (camt.056) -> 200 with a
         pacs.004.001.09, one TxInf per payout, or a camt.029 rejecting it

Every document is read by the codec's `parse_document` (the official schema; hostile XML
refused) and answered 400 with the refusal when it is not a valid message as Stopper writes it
(413 when too large). Each TxInf is a stop request carried out exactly as a JSON one
(`SimulatedInstitution.execute`): the same record per idempotency key, ledger, behaviour profile
(latency, 5xx, timeouts, malformed answers, outages, partial balances, onward transfers), so the
JSON status routes (`GET /stops/{key}`, `POST /stops/status`) and `/ledger` keep answering for
ISO institutions too. An institution that answers by callback owes one camt.029 per message,
carrying the holds that message was the first to ask for, sent once the last of them is known.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from stopper.adapters.institutions.iso20022 import (
    MAX_DOCUMENT_BYTES,
    ItemAnswer,
    Recall,
    ReturnInstruction,
    build_payment_return,
    build_resolution,
    build_return_rejection,
    parse_document,
    read_recall,
    read_return_instruction,
)
from stopper.contracts.institutions import ReturnRequestV1, StopRequestV1, StopStatusV1
from stopper.errors import XmlRefusal, XmlRefused
from stopper.simulation.institutions import SimulatedInstitution, Simulation
from stopper.simulation.records import StopRecord

ADAPTER = "iso20022"
XML = "application/xml"
CALLBACK_ROUTE = "callbacks/iso20022"
# What a simulated institution says when it refuses a return, by the JSON reason it decided.
RETURN_REFUSAL_CODES = {"no freeze in force here": "LEGL"}


def add_iso_routes(app: FastAPI, simulation: Simulation) -> None:
    """Serve the ISO 20022 routes of `simulation`'s iso20022 institutions on `app`."""
    banks = IsoBanks(simulation)
    # Plain Starlette routes, like the JSON stop route: every batch of a benchmark comes here.
    app.add_route("/institutions/{code}/iso20022/camt.056", banks.recall, methods=["POST"])
    app.add_route("/institutions/{code}/iso20022/return", banks.pay_back, methods=["POST"])


class IsoBanks:
    def __init__(self, simulation: Simulation) -> None:
        self._simulation = simulation
        self._return_answers: dict[str, bytes] = {}  # by the return's idempotency key

    def _institution(self, request: Request) -> SimulatedInstitution | Response:
        sim = self._simulation.institutions.get(request.path_params["code"])
        if sim is None or sim.institution.adapter != ADAPTER:
            return JSONResponse({"detail": "no such ISO 20022 institution"}, status_code=404)
        if sim.down(self._simulation.elapsed_s()):
            return JSONResponse({"detail": "service unavailable"}, status_code=503)
        return sim

    async def recall(self, request: Request) -> Response:
        found = self._institution(request)
        if isinstance(found, Response):
            return found
        sim = found
        sim.counts.iso_messages += 1
        try:
            recall = read_recall(parse_document(await _body(request)))
        except XmlRefused as e:
            return _refusal(e)
        sim.counts.stop_requests += len(recall.items)
        code = sim.institution.code
        if not recall.items:
            return JSONResponse({"detail": "a recall of no transaction"}, status_code=400)
        if request.headers.get("idempotency-key") != recall.message_id:
            return JSONResponse({"detail": "Idempotency-Key is not the message id"}, 400)
        if recall.receiver != code or any(i.request.institution_code != code for i in recall.items):
            return JSONResponse({"detail": "a recall for another institution"}, status_code=400)
        b = sim.behaviour
        if sim.roll(b.error_rate):
            await asyncio.sleep(sim.latency_s())
            return JSONResponse({"detail": "internal error"}, status_code=500)
        now = time.monotonic()
        records: list[StopRecord] = []
        first_asked: list[StopRecord] = []
        for item in recall.items:
            known = sim.stop_record(item.request.idempotency_key)
            record = known or sim.execute(StopRequestV1.from_command(item.request), now)
            records.append(record)
            if known is None:
                first_asked.append(record)
        if b.answers_by_callback and first_asked:
            self._simulation.callbacks.owe(sim, self._send_callback(sim, recall, first_asked))
        if sim.roll(b.timeout_rate):
            await self._simulation.hang(b.hang_s)  # the stops happened; the answer is late
        else:
            await asyncio.sleep(sim.latency_s())
        if sim.roll(b.malformed_rate):
            return Response(b"<html>gateway says hello", status_code=200, media_type="text/html")
        if b.answers_by_callback:
            return Response(status_code=202)
        return Response(_resolution(sim, recall, records, time.monotonic()), media_type=XML)

    async def _send_callback(
        self, sim: SimulatedInstitution, recall: Recall, records: list[StopRecord]
    ) -> None:
        known_at = max(r.known_at for r in records)
        await asyncio.sleep(max(0.0, known_at - time.monotonic()))
        # Answered as of the moment the last outcome is known, even if the sleep woke early
        # (uvloop's timers are millisecond-grained and often do): the one camt.029 owed never
        # says pending for a stop the institution has decided.
        body = _resolution(sim, recall, records, max(time.monotonic(), known_at))
        copies = 2 if sim.roll(sim.behaviour.double_callback_rate) else 1
        for _ in range(copies):
            await self._simulation.callbacks.deliver(sim, body, CALLBACK_ROUTE, XML)

    async def pay_back(self, request: Request) -> Response:
        found = self._institution(request)
        if isinstance(found, Response):
            return found
        sim = found
        try:
            instruction = read_return_instruction(parse_document(await _body(request)))
        except XmlRefused as e:
            return _refusal(e)
        if request.headers.get("idempotency-key") != instruction.message_id:
            return JSONResponse({"detail": "Idempotency-Key is not the message id"}, 400)
        order = instruction.order
        if instruction.receiver != sim.institution.code or (
            order.institution_code != sim.institution.code
        ):
            return JSONResponse({"detail": "a return for another institution"}, status_code=400)
        await asyncio.sleep(sim.latency_s())
        known = self._return_answers.get(order.idempotency_key)
        if known is None:
            outcome = sim.pay_back(ReturnRequestV1.from_command(order))
            known = _return_answer(sim, instruction, outcome)
            self._return_answers[order.idempotency_key] = known
        return Response(known, media_type=XML)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        raise XmlRefused(XmlRefusal.TOO_LARGE, f"the document is larger than {MAX_DOCUMENT_BYTES}")
    return await request.body()


def _refusal(refused: XmlRefused) -> Response:
    status = 413 if refused.reason is XmlRefusal.TOO_LARGE else 400
    return JSONResponse({"reason": refused.reason.value, "detail": refused.detail}, status)


def _message_id() -> str:
    return uuid.uuid4().hex  # 32 characters: within Max35Text


def _resolution(
    sim: SimulatedInstitution, recall: Recall, records: Iterable[StopRecord], now: float
) -> bytes:
    asked = {i.request.idempotency_key: i.request for i in recall.items}
    answers = []
    for record in records:
        request = asked[record.idempotency_key]
        status = StopStatusV1.model_validate(record.status(now)).to_status()
        answers.append(ItemAnswer(record.idempotency_key, request.currency, request.amount, status))
    return build_resolution(
        message_id=_message_id(),
        created_at=datetime.now(UTC),
        sender=sim.institution.code,
        receiver=recall.sender,
        answers_message_id=recall.message_id,
        answers=answers,
    )


def _return_answer(
    sim: SimulatedInstitution, instruction: ReturnInstruction, outcome: dict[str, Any]
) -> bytes:
    if outcome["status"] != "returned":
        reason = str(outcome.get("reason") or "")
        return build_return_rejection(
            message_id=_message_id(),
            created_at=datetime.now(UTC),
            sender=sim.institution.code,
            instruction=instruction,
            code=RETURN_REFUSAL_CODES.get(reason, "NARR"),
            reason=reason,
        )
    left = int(outcome["amount_returned"])
    paid = []
    for payout in instruction.order.payouts:  # what was returned, payout by payout, in order
        part = min(left, payout.amount)
        paid.append(part)
        left -= part
    return build_payment_return(
        message_id=_message_id(),
        created_at=datetime.now(UTC),
        sender=sim.institution.code,
        instruction=instruction,
        paid=paid,
    )
