"""Callbacks that carry many answers (`CallbackHandler.handle_items`, as camt.029 callbacks
are): signed once, each answer applied and counted on its own, a replay refused whole."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from uuid import UUID

import pytest

from stopper.api.refusals import CALLBACK_STATUS
from stopper.app.callbacks import PENDING, CallbackHandler, CallbackItem
from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.ports import HoldRecord
from stopper.config import DispatchSettings
from stopper.domain.holds import HoldState, idempotency_key_for
from stopper.domain.messages import AnswerKind, InstitutionAnswer
from stopper.errors import CallbackRefusal, CallbackRefused, InstitutionError, Refused
from stopper.metrics import CALLBACKS
from tests.unit.fakes import FakeDispatchStore, FixedClock, ScriptedAdapter, requested_hold
from tests.unit.test_callbacks import NOW, REGISTRY, VERIFYING, signed


class Unreadable(Refused):
    """A document the reader refuses, with its own reason (as `XmlRefused` has)."""

    reason = "malformed"


def read(body: bytes) -> list[CallbackItem]:
    """A reader of a made-up body: a JSON list of [hold id, status, amount or reason]."""
    if not body.startswith(b"["):
        raise Unreadable("not a list")
    items = []
    for hold_id, status, value in json.loads(body):
        key = idempotency_key_for(UUID(hold_id))
        if status == "unreadable":
            refusal = CallbackRefused(CallbackRefusal.INVALID, "unknown_reason_code:XXXX")
            items.append(CallbackItem(key, UUID(hold_id), None, refusal))
        elif status == "pending":
            items.append(CallbackItem(key, UUID(hold_id), None))
        elif status == "stopped":
            answer = InstitutionAnswer(AnswerKind.STOPPED, amount_held=value)
            items.append(CallbackItem(key, UUID(hold_id), answer))
        else:
            answer = InstitutionAnswer(AnswerKind(status), reason=value)
            items.append(CallbackItem(key, UUID(hold_id), answer))
    return items


async def sent_holds(count: int) -> tuple[CallbackHandler, FakeDispatchStore, list[HoldRecord]]:
    store = FakeDispatchStore()
    clock = FixedClock(NOW)
    accepted: list[InstitutionAnswer | InstitutionError] = [
        InstitutionAnswer(AnswerKind.ACCEPTED)
    ] * count
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(ScriptedAdapter({"BK01": accepted}), REGISTRY, hedge=True, rng=rng),
        clock,
        DispatchSettings().policy(),
        rng,
    )
    records = [requested_hold("BK01", at=NOW) for _ in range(count)]
    for record in records:
        store.add(record)
        await dispatcher.attempt(record.hold.id, first=True)
    return CallbackHandler(dispatcher, REGISTRY, clock, VERIFYING, window_s=300), store, records


def body(*items: Sequence[object]) -> bytes:
    return json.dumps([list(i) for i in items]).encode()


async def test_each_answer_is_applied_and_counted_and_a_replay_is_refused_whole() -> None:
    handler, store, (a, b, c) = await sent_holds(3)
    document = body(
        (str(a.hold.id), "stopped", 42_000),
        (str(b.hold.id), "not_found", "closed account number"),
        (str(c.hold.id), "pending", None),
    )
    applied = CALLBACKS.labels("BK01", "applied")
    before = applied._value.get()
    results = await handler.handle_items("BK01", signed(document), document, read)
    assert [r.outcome for r in results] == ["applied", "applied", PENDING]
    assert applied._value.get() == before + 2
    assert store.holds[a.hold.id].hold.state is HoldState.STOPPED
    assert store.holds[a.hold.id].hold.amount_stopped == 42_000
    assert store.holds[b.hold.id].hold.state is HoldState.NOT_FOUND
    assert store.holds[c.hold.id].hold.state is HoldState.UNCONFIRMED
    assert store.transitions[-1].actor == "institution:BK01"

    again = await handler.handle_items("BK01", signed(document, nonce="nonce-0002"), document, read)
    assert [r.outcome for r in again] == ["repeated", "repeated", PENDING]

    stopped_only = body((str(a.hold.id), "stopped", 42_000))
    await handler.handle_items("BK01", signed(stopped_only, nonce="nonce-used"), stopped_only, read)
    with pytest.raises(CallbackRefused) as replay:
        await handler.handle_items(
            "BK01", signed(stopped_only, nonce="nonce-used"), stopped_only, read
        )
    assert (CALLBACK_STATUS[replay.value.reason], replay.value.reason) == (409, "replayed")


async def test_an_answer_that_cannot_be_read_or_applied_is_refused_alone() -> None:
    handler, store, (a, b) = await sent_holds(2)
    stranger = requested_hold("BK01", at=NOW)  # never sent
    store.add(stranger)
    document = body(
        (str(a.hold.id), "unreadable", None),
        (str(b.hold.id), "stopped", 1_000),
        (str(stranger.hold.id), "stopped", 1_000),
    )
    results = await handler.handle_items("BK01", signed(document), document, read)
    assert [r.outcome for r in results] == ["invalid", "applied", "not_sent_here"]
    assert results[0].refused is not None and "XXXX" in results[0].refused.detail
    assert store.holds[a.hold.id].hold.state is HoldState.UNCONFIRMED
    assert store.holds[stranger.hold.id].hold.state is HoldState.REQUESTED


async def test_a_callback_with_nothing_to_take_is_refused_with_its_first_reason() -> None:
    handler, store, (a,) = await sent_holds(1)
    document = body((str(a.hold.id), "unreadable", None))
    with pytest.raises(CallbackRefused) as refused:
        await handler.handle_items("BK01", signed(document), document, read)
    assert (CALLBACK_STATUS[refused.value.reason], refused.value.reason) == (422, "invalid")
    assert store.holds[a.hold.id].hold.state is HoldState.UNCONFIRMED


async def test_the_signature_is_checked_before_the_body_is_read_and_refusals_are_counted() -> None:
    handler, _, _ = await sent_holds(1)
    unreadable = b"<not a list>"
    calls: list[bytes] = []

    def spying(body: bytes) -> list[CallbackItem]:
        calls.append(body)
        return read(body)

    with pytest.raises(CallbackRefused) as forged:
        await handler.handle_items("BK01", signed(unreadable, secret="guessed"), unreadable, spying)
    assert forged.value.reason is CallbackRefusal.BAD_SIGNATURE and calls == []
    counted = CALLBACKS.labels("BK01", "malformed")
    before = counted._value.get()
    with pytest.raises(Unreadable):
        await handler.handle_items("BK01", signed(unreadable), unreadable, spying)
    assert calls == [unreadable] and counted._value.get() == before + 1
    unknown = CALLBACKS.labels("unknown", "unknown_institution")
    before = unknown._value.get()
    with pytest.raises(CallbackRefused):
        await handler.handle_items("ZZ99", {}, unreadable, spying)
    assert unknown._value.get() == before + 1
