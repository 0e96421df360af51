"""Signed institution callbacks, with hand-written fakes."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY as METRICS

from stopper.api.refusals import CALLBACK_STATUS
from stopper.app.callbacks import CallbackHandler
from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.ports import HoldRecord
from stopper.app.rotating_secrets import RotatingSecret
from stopper.app.stop_decisions import AnswerOutcome
from stopper.config import DispatchSettings
from stopper.contracts.signing import signed_headers
from stopper.domain.holds import HoldState
from stopper.domain.messages import AnswerKind, InstitutionAnswer
from stopper.errors import CallbackRefused
from stopper.registry import load_registry
from tests.unit.fakes import FakeDispatchStore, FixedClock, ScriptedAdapter, requested_hold

REGISTRY = load_registry()
SECRETS = {i.callback_secret_ref: f"secret-{i.code}" for i in REGISTRY.values()}
VERIFYING = {ref: RotatingSecret(secret) for ref, secret in SECRETS.items()}
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def sent_hold(
    secrets: Mapping[str, RotatingSecret] = VERIFYING,
) -> tuple[CallbackHandler, FakeDispatchStore, HoldRecord]:
    store = FakeDispatchStore()
    clock = FixedClock(NOW)
    adapter = ScriptedAdapter({"BK01": [InstitutionAnswer(AnswerKind.ACCEPTED)]})
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(adapter, REGISTRY, hedge=True, rng=rng),
        clock,
        DispatchSettings().policy(),
        rng,
    )
    record = requested_hold("BK01", at=NOW)
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    handler = CallbackHandler(dispatcher, REGISTRY, clock, secrets, window_s=300)
    return handler, store, record


def callback(record: HoldRecord, **changes: Any) -> bytes:
    body = {
        "hold_id": str(record.hold.id),
        "idempotency_key": f"stopper-{record.hold.id}-0",
        "status": "stopped",
        "amount_held": "420.00",
        "answered_at": NOW.isoformat(),
    }
    body.update(changes)
    return json.dumps(body).encode()


def signed(
    body: bytes,
    *,
    code: str = "BK01",
    nonce: str = "nonce-0001",
    timestamp: int | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    ref = REGISTRY[code].callback_secret_ref
    ts = int(NOW.timestamp()) if timestamp is None else timestamp
    headers = signed_headers(secret or SECRETS[ref], ts, nonce, body)
    return {k.lower(): v for k, v in headers.items()}


async def test_a_valid_callback_moves_the_hold_and_a_repeat_changes_nothing() -> None:
    handler, store, record = await sent_hold()
    body = callback(record)
    first = await handler.handle("BK01", signed(body), body)
    again = await handler.handle("BK01", signed(body, nonce="nonce-0002"), body)
    assert (first.outcome, again.outcome) == (AnswerOutcome.APPLIED, AnswerOutcome.REPEATED)
    stored = store.holds[record.hold.id]
    assert (stored.hold.state, stored.hold.amount_stopped) == (HoldState.STOPPED, 42_000)
    assert store.transitions[-1].actor == "institution:BK01"


def legacy_callbacks(code: str) -> float:
    counted = METRICS.get_sample_value(
        "stopper_legacy_amounts_total", {"interface": "callback", "institution": code}
    )
    return counted or 0.0


async def test_the_old_integer_of_minor_units_is_still_read_and_counted() -> None:
    # The callbacks' form before amounts became decimal strings (README: Amounts): read with
    # its old meaning during the transition, and counted so operators see who still sends it.
    handler, store, record = await sent_hold()
    before = legacy_callbacks("BK01")
    body = callback(record, amount_held=42_000)
    assert (await handler.handle("BK01", signed(body), body)).outcome is AnswerOutcome.APPLIED
    assert store.holds[record.hold.id].hold.amount_stopped == 42_000
    assert legacy_callbacks("BK01") == before + 1
    new_form = callback(record)  # "420.00": the same answer, so a repeat, and not counted
    again = await handler.handle("BK01", signed(new_form, nonce="nonce-0002"), new_form)
    assert again.outcome is AnswerOutcome.REPEATED and legacy_callbacks("BK01") == before + 1


async def test_an_amount_that_is_no_decimal_string_is_refused_with_the_reason() -> None:
    handler, store, record = await sent_hold()
    for index, amount in enumerate([420.0, "420.001", "-420.00", "4.2e2"]):
        body = callback(record, amount_held=amount)
        error = await refused(handler, "BK01", signed(body, nonce=f"nonce-b{index:03d}"), body)
        assert (CALLBACK_STATUS[error.reason], error.reason) == (422, "invalid"), amount
        assert error.detail.startswith("amount_held: "), error.detail
    assert store.holds[record.hold.id].hold.state is HoldState.UNCONFIRMED


async def refused(
    handler: CallbackHandler, code: str, headers: dict[str, str], body: bytes
) -> CallbackRefused:
    with pytest.raises(CallbackRefused) as raised:
        await handler.handle(code, headers, body)
    return raised.value


async def test_forged_stale_and_replayed_callbacks_are_refused_and_change_nothing() -> None:
    handler, store, record = await sent_hold()
    body = callback(record)
    cases = [
        (signed(body, secret="guessed"), 401, "bad_signature"),
        ({}, 401, "bad_signature"),
        (signed(body, timestamp=int(NOW.timestamp()) - 301), 401, "stale"),
        (signed(body, timestamp=int(NOW.timestamp()) + 301), 401, "stale"),
        (signed(callback(record, amount_held="0.01")), 401, "bad_signature"),  # body swapped
    ]
    for headers, status, reason in cases:
        error = await refused(handler, "BK01", headers, body)
        assert (CALLBACK_STATUS[error.reason], error.reason) == (status, reason)
    assert store.holds[record.hold.id].hold.state is HoldState.UNCONFIRMED

    await handler.handle("BK01", signed(body, nonce="nonce-used"), body)
    replay = await refused(handler, "BK01", signed(body, nonce="nonce-used"), body)
    assert (CALLBACK_STATUS[replay.reason], replay.reason) == (409, "replayed")


async def test_an_institution_may_answer_only_what_was_sent_to_it() -> None:
    handler, store, record = await sent_hold()
    body = callback(record)
    other = await refused(handler, "BK02", signed(body, code="BK02"), body)
    assert (CALLBACK_STATUS[other.reason], other.reason) == (403, "not_sent_here")
    wrong_key = callback(record, idempotency_key="stopper-made-up")
    error = await refused(handler, "BK01", signed(wrong_key, nonce="nonce-0003"), wrong_key)
    assert CALLBACK_STATUS[error.reason] == 403
    unknown = callback(record, hold_id="00000000-0000-0000-0000-000000000001")
    error = await refused(handler, "BK01", signed(unknown, nonce="nonce-0004"), unknown)
    assert CALLBACK_STATUS[error.reason] == 403
    never_sent = requested_hold("BK01", at=NOW)
    store.add(never_sent)
    body = callback(never_sent)
    error = await refused(handler, "BK01", signed(body, nonce="nonce-0005"), body)
    assert CALLBACK_STATUS[error.reason] == 403
    assert store.holds[record.hold.id].hold.state is HoldState.UNCONFIRMED


async def test_unknown_institution_invalid_body_and_conflicting_answer() -> None:
    handler, _, record = await sent_hold()
    body = callback(record)
    assert CALLBACK_STATUS[(await refused(handler, "ZZ99", {}, body)).reason] == 404
    junk = b'{"hold_id": "nope"}'
    assert CALLBACK_STATUS[(await refused(handler, "BK01", signed(junk), junk)).reason] == 422
    await handler.handle("BK01", signed(body, nonce="nonce-0006"), body)
    not_found = callback(record, status="not_found", amount_held=None)
    error = await refused(handler, "BK01", signed(not_found, nonce="nonce-0007"), not_found)
    assert (CALLBACK_STATUS[error.reason], error.reason) == (409, "conflict")
