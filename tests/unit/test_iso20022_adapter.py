"""`Iso20022Adapter` against a hand-written institution that reads every camt.056 with the
codec and answers with a camt.029 it builds: one message per batch, each caller its own hold's
answer, a failed message failing each of its holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from stopper.adapters.institutions.http_json import HttpJsonAdapter, Response
from stopper.adapters.institutions.iso20022 import (
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
from stopper.adapters.institutions.iso20022.adapter import Iso20022Adapter
from stopper.app.message_ports import PaymentIn, SentMessage, StopGrounds
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OrderReturn,
    RequestStop,
    ReturnPayout,
    StatusKind,
    StopStatus,
)
from stopper.errors import (
    InstitutionTimeout,
    InstitutionUnavailable,
    MalformedAnswer,
    RequestRefused,
)
from stopper.metrics import ISO20022_REFUSED
from stopper.registry import Institution, load_registry
from tests.unit.fakes import FixedClock, requested_hold

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
BANK = replace(
    load_registry()["BK01"], adapter="iso20022", batch_size=50, batch_window_ms=5, timeout_ms=500
)


class Grounds:
    """The store's side: every hold has a report's transfer; messages are remembered."""

    def __init__(self) -> None:
        self.messages: list[SentMessage] = []
        self.reads: list[list[UUID]] = []

    async def record_messages(self, messages: Sequence[SentMessage]) -> dict[UUID, StopGrounds]:
        self.messages.extend(messages)
        hold_ids = [h for m in messages for h, _ in m.holds]
        self.reads.append(hold_ids)
        payment = PaymentIn(
            "fake investment platform",
            70_000,
            "CNY",
            NOW - timedelta(minutes=30),
            "BK02",
            "6222000000000001",
            "BK01",
            "6222111122223333",
        )
        return {h: StopGrounds(h, "PSB-TEST", (payment,)) for h in hold_ids}


Answer = Callable[[RequestStop], StopStatus | None]  # None: left out of the camt.029


class Bank(HttpJsonAdapter):
    """Reads each camt.056 and answers each hold as `answer` says, at once (200 camt.029)."""

    def __init__(self, answer: Answer | None = None) -> None:
        super().__init__("http://bank.test")
        self.recalls: list[Recall] = []
        self.keys: list[str | None] = []
        self.answer = answer or stopped
        self.reason_codes: dict[UUID, str] = {}
        self.reply: Callable[[Recall], Response] | None = None
        self.hang = False
        self.released = asyncio.Event()

    async def send(
        self,
        institution: Institution,
        method: str,
        operation: str,
        body: bytes | None,
        idempotency_key: str | None,
        expected_4xx: tuple[int, ...] = (),
        content_type: str = "application/json",
    ) -> Response:
        assert (method, operation, content_type) == (
            "POST",
            "iso20022/camt.056",
            "application/xml",
        )
        assert body is not None
        recall = read_recall(parse_document(body))
        self.recalls.append(recall)
        self.keys.append(idempotency_key)
        if self.hang:
            await self.released.wait()
        if self.reply is not None:
            return self.reply(recall)
        answers = []
        for item in recall.items:
            status = self.answer(item.request)
            if status is not None:
                answers.append(
                    ItemAnswer(
                        item.request.idempotency_key,
                        item.request.currency,
                        item.request.amount,
                        status,
                        self.reason_codes.get(item.request.hold_id),
                    )
                )
        document = build_resolution(
            message_id="BK01ANSWER1",
            created_at=NOW,
            sender="BK01",
            receiver=recall.sender,
            answers_message_id=recall.message_id,
            answers=answers,
        )
        return Response(200, document)


def stopped(request: RequestStop) -> StopStatus:
    answer = InstitutionAnswer(AnswerKind.STOPPED, amount_held=request.amount // 2)
    return StopStatus(request.idempotency_key, StatusKind.ANSWERED, request.hold_id, answer)


def adapter(bank: Bank, grounds: Grounds | None = None) -> Iso20022Adapter:
    return Iso20022Adapter(bank, grounds or Grounds(), FixedClock(NOW))


def requests(count: int) -> list[RequestStop]:
    records = [requested_hold("BK01", amount=10_000 * (n + 1), at=NOW) for n in range(count)]
    return [r.hold.stop_request(r.requested_at) for r in records]


async def test_concurrent_requests_leave_as_one_camt056_and_each_gets_its_own_answer() -> None:
    bank, grounds = Bank(), Grounds()
    iso = adapter(bank, grounds)
    asked = requests(5)
    answers = await asyncio.gather(*(iso.request_stop(BANK, r) for r in asked))
    assert [(a.kind, a.amount_held) for a in answers] == [
        (AnswerKind.STOPPED, r.amount // 2) for r in asked
    ]
    [recall] = bank.recalls
    assert [i.request.idempotency_key for i in recall.items] == [r.idempotency_key for r in asked]
    assert {i.agency_code for i in recall.items} == {"PSB-TEST"}
    assert recall.items[0].payments[0].reference == "fake investment platform"
    assert recall.receiver == "BK01"
    # The message id is the request's key, recorded with its holds before it left.
    [message] = grounds.messages
    assert bank.keys == [recall.message_id] == [message.message_id]
    assert len(message.message_id) <= 35 and message.message_type == "camt.056.001.08"
    assert list(message.holds) == [(r.hold_id, r.idempotency_key) for r in asked]
    assert grounds.reads == [[r.hold_id for r in asked]]


async def test_every_message_has_an_id_of_its_own() -> None:
    bank = Bank()
    iso = adapter(bank)
    for request in requests(3):
        await iso.request_stop(BANK, request)
    assert len({r.message_id for r in bank.recalls}) == 3


async def test_a_batch_holds_no_more_than_the_institution_takes() -> None:
    bank = Bank()
    iso = adapter(bank)
    await asyncio.gather(*(iso.request_stop(replace(BANK, batch_size=2), r) for r in requests(5)))
    assert sorted(len(r.items) for r in bank.recalls) == [1, 2, 2]


async def test_each_status_becomes_its_callers_answer() -> None:
    asked = requests(4)
    not_found, rejected, pending = (r.hold_id for r in asked[1:])

    def answer(request: RequestStop) -> StopStatus:
        key, hold = request.idempotency_key, request.hold_id
        if hold == not_found:
            outcome = InstitutionAnswer(AnswerKind.NOT_FOUND)
        elif hold == rejected:
            outcome = InstitutionAnswer(AnswerKind.REJECTED, reason="customer decision")
        elif hold == pending:
            return StopStatus(key, StatusKind.PENDING, hold)
        else:
            return stopped(request)
        return StopStatus(key, StatusKind.ANSWERED, hold, outcome)

    bank = Bank(answer)
    bank.reason_codes = {not_found: "AC04", rejected: "CUST"}
    iso = adapter(bank)
    answers = await asyncio.gather(*(iso.request_stop(BANK, r) for r in asked))
    assert [a.kind for a in answers] == [
        AnswerKind.STOPPED,
        AnswerKind.NOT_FOUND,
        AnswerKind.REJECTED,
        AnswerKind.ACCEPTED,  # PDCR: the outcome follows by callback
    ]
    assert answers[1].reason is not None and answers[1].reason.startswith("AC04")
    assert answers[2].reason is not None and "customer decision" in answers[2].reason
    assert len(bank.recalls) == 1


async def test_an_unknown_reason_code_or_a_missing_answer_fails_that_caller_alone() -> None:
    asked = requests(3)
    unknown, left_out = asked[1].hold_id, asked[2].hold_id

    def answer(request: RequestStop) -> StopStatus | None:
        if request.hold_id == left_out:
            return None
        if request.hold_id == unknown:
            outcome = InstitutionAnswer(AnswerKind.REJECTED, reason="who knows")
            return StopStatus(request.idempotency_key, StatusKind.ANSWERED, unknown, outcome)
        return stopped(request)

    bank = Bank(answer)
    bank.reason_codes = {unknown: "XX99"}
    counted = ISO20022_REFUSED.labels("BK01", "unknown_reason_code")
    missing = ISO20022_REFUSED.labels("BK01", "missing")
    before = (counted._value.get(), missing._value.get())
    iso = adapter(bank)
    results = await asyncio.gather(
        *(iso.request_stop(BANK, r) for r in asked), return_exceptions=True
    )
    assert isinstance(results[0], InstitutionAnswer) and results[0].kind is AnswerKind.STOPPED
    assert isinstance(results[1], MalformedAnswer) and "unknown_reason_code" in str(results[1])
    assert isinstance(results[2], MalformedAnswer) and "no answer" in str(results[2])
    assert (counted._value.get(), missing._value.get()) == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Response(503, b"down"), InstitutionUnavailable),
        (Response(400, b'{"detail": "TxInf[1]/CxlId: too long 6222111122223333"}'), RequestRefused),
        (Response(200, b"<html>gateway says hello"), MalformedAnswer),
        (Response(200, b""), MalformedAnswer),
    ],
)
async def test_a_failed_message_fails_each_of_its_holds(
    reply: Response, error: type[Exception]
) -> None:
    bank = Bank()
    bank.reply = lambda recall: reply
    iso = adapter(bank)
    if reply.status_code == 503:
        # The transport's own mapping of a 5xx (HttpJsonAdapter.send raises it).
        async def unavailable(*args: object, **kwargs: object) -> Response:
            raise InstitutionUnavailable("answered HTTP 503")

        bank.send = unavailable  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(iso.request_stop(BANK, r) for r in requests(3)), return_exceptions=True
    )
    assert all(isinstance(r, error) for r in results), results
    assert len({id(r) for r in results}) == 3, "each caller raises an error of its own"
    counted = [r for r in results if not getattr(r, "counted_elsewhere", True)]
    assert len(counted) == 1, "the institution's breaker counts the message once"
    if error is RequestRefused:
        assert "6222111122223333" not in str(results[0]) and "TxInf[1]" in str(results[0])


async def test_an_answer_to_another_message_is_not_taken() -> None:
    bank = Bank()

    def other(recall: Recall) -> Response:
        item = recall.items[0]
        return Response(
            200,
            build_resolution(
                message_id="BK01ANSWER2",
                created_at=NOW,
                sender="BK01",
                receiver="STOPPER",
                answers_message_id="STPsomethingelse",
                answers=[
                    ItemAnswer(
                        item.request.idempotency_key,
                        "CNY",
                        item.request.amount,
                        stopped(item.request),
                    )
                ],
            ),
        )

    bank.reply = other
    with pytest.raises(MalformedAnswer, match="another message"):
        await adapter(bank).request_stop(BANK, requests(1)[0])


async def test_accepted_for_later_is_every_callers_answer() -> None:
    bank = Bank()
    bank.reply = lambda recall: Response(202, b"")
    iso = adapter(bank)
    answers = await asyncio.gather(*(iso.request_stop(BANK, r) for r in requests(3)))
    assert {a.kind for a in answers} == {AnswerKind.ACCEPTED}
    assert len(bank.recalls) == 1


async def test_each_caller_is_bounded_by_the_institutions_timeout() -> None:
    bank = Bank()
    bank.hang = True
    iso = adapter(bank)
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(
        *(iso.request_stop(replace(BANK, timeout_ms=50), r) for r in requests(2)),
        return_exceptions=True,
    )
    assert all(isinstance(r, InstitutionTimeout) for r in results)
    assert all(getattr(r, "counted_elsewhere", False) for r in results), "the message's counts"
    assert asyncio.get_running_loop().time() - started < 1.0
    bank.released.set()  # the answer nobody waits for any more is dropped
    await asyncio.wait_for(iso.close(), 1)


async def test_freezes_and_status_inquiries_stay_json() -> None:
    calls: list[str] = []

    class Json(Bank):
        async def stop_status(self, institution: Institution, idempotency_key: str) -> StopStatus:
            calls.append("status")
            return StopStatus(idempotency_key, StatusKind.UNKNOWN)

    iso = adapter(Json())
    status = await iso.stop_status(BANK, "stopper-x-0")
    assert status.kind is StatusKind.UNKNOWN and calls == ["status"]


class ReturningBank(HttpJsonAdapter):
    """Answers each return instruction as `answer` says."""

    def __init__(self, answer: Callable[[ReturnInstruction], Response]) -> None:
        super().__init__("http://bank.test")
        self.answer = answer
        self.instructions: list[ReturnInstruction] = []
        self.keys: list[str | None] = []

    async def send(
        self,
        institution: Institution,
        method: str,
        operation: str,
        body: bytes | None,
        idempotency_key: str | None,
        expected_4xx: tuple[int, ...] = (),
        content_type: str = "application/json",
    ) -> Response:
        assert (operation, content_type) == ("iso20022/return", "application/xml")
        assert body is not None
        instruction = read_return_instruction(parse_document(body))
        self.instructions.append(instruction)
        self.keys.append(idempotency_key)
        return self.answer(instruction)


def return_order(*amounts: int) -> OrderReturn:
    request = requests(1)[0]
    payouts = tuple(
        ReturnPayout(f"V{n}", "BK02", f"622200000000000{n}", amount)
        for n, amount in enumerate(amounts, start=1)
    )
    return OrderReturn(
        hold_id=request.hold_id,
        case_id=request.case_id,
        institution_code="BK01",
        account_number=request.account_number,
        currency="CNY",
        amount=sum(amounts),
        legal_document_ref="Court order 2026/3",
        payouts=payouts,
        idempotency_key=f"stopper-return-{request.hold_id}-1",
        requested_at=NOW,
    )


def paid(*amounts: int) -> Callable[[ReturnInstruction], Response]:
    def answer(instruction: ReturnInstruction) -> Response:
        document = build_payment_return(
            message_id="BK01RTR1",
            created_at=NOW,
            sender="BK01",
            instruction=instruction,
            paid=list(amounts),
        )
        return Response(200, document)

    return answer


async def test_a_return_is_done_once_a_pacs004_matches_every_payout() -> None:
    bank, grounds = ReturningBank(paid(3_000, 2_000)), Grounds()
    iso = Iso20022Adapter(bank, grounds, FixedClock(NOW))
    order = return_order(3_000, 2_000)
    answer = await iso.request_return(BANK, order)
    assert (answer.done, answer.amount) == (True, 5_000)
    [instruction] = bank.instructions
    assert instruction.order.idempotency_key == order.idempotency_key
    assert [p.amount for p in instruction.order.payouts] == [3_000, 2_000]
    [message] = grounds.messages
    assert bank.keys == [message.message_id] and list(message.holds) == [
        (order.hold_id, order.idempotency_key)
    ]


async def test_a_return_refused_by_camt029_is_not_done_and_a_mismatch_is_unreadable() -> None:
    def refuse(instruction: ReturnInstruction) -> Response:
        document = build_return_rejection(
            message_id="BK01RJ1",
            created_at=NOW,
            sender="BK01",
            instruction=instruction,
            code="LEGL",
            reason="no freeze in force here",
        )
        return Response(200, document)

    order = return_order(3_000, 2_000)
    refused = await Iso20022Adapter(
        ReturningBank(refuse), Grounds(), FixedClock(NOW)
    ).request_return(BANK, order)
    assert not refused.done and refused.reason is not None and refused.reason.startswith("LEGL")
    overpaid = Iso20022Adapter(ReturningBank(paid(3_000, 9_999)), Grounds(), FixedClock(NOW))
    with pytest.raises(MalformedAnswer, match="unmatched"):
        await overpaid.request_return(BANK, return_order(3_000, 2_000))
    invalid = Iso20022Adapter(
        ReturningBank(lambda i: Response(400, b'{"detail": "TxInf[1]: invalid"}')),
        Grounds(),
        FixedClock(NOW),
    )
    with pytest.raises(RequestRefused):
        await invalid.request_return(BANK, order)
