"""Agencies' webhooks without I/O: which changes tell the agency what, the signature, the
backoff, URL refusals, and the sender's order per case (against a fake store)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from stopper.app.case_events import EVENT_OF_STATE, transition_events
from stopper.app.ports import Message
from stopper.app.webhook_delivery import (
    PostOutcome,
    RetryPolicy,
    WebhookFanOut,
    WebhookSender,
    events_of,
)
from stopper.app.webhooks import (
    Attempt,
    DueDelivery,
    EventToDeliver,
    LoggedAttempt,
    OwnAddress,
    Subscription,
    WebhookDesk,
    own_addresses,
    refusal_of_url,
)
from stopper.contracts.signing import signature_matches
from stopper.contracts.webhooks import CaseEventType
from stopper.domain.holds import TRANSITIONS, Hold, HoldEvent, HoldState
from stopper.errors import WebhookRefused

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


def hold_in(state: HoldState) -> Hold:
    return Hold(
        id=uuid4(),
        case_id=uuid4(),
        institution_code="BK01",
        account_number="6222000011112222",
        currency="CNY",
        amount_asked=10_000,
        state=state,
        amount_stopped=8_000,
        amount_frozen=8_000,
    )


AMOUNTS = {
    HoldEvent.STOP_CONFIRMED: 7_000,
    HoldEvent.FREEZE_CONFIRMED: 6_000,
    HoldEvent.FREEZE_RENEWED: 6_000,
    HoldEvent.RETURN_CONFIRMED: 5_000,
    HoldEvent.MERGED: 1_000,
    HoldEvent.SUPPLEMENT_STOPPED: 1_000,
}


@pytest.mark.parametrize(("state", "event"), sorted(TRANSITIONS))
def test_every_transition_that_changes_state_to_a_told_state_is_told(
    state: HoldState, event: HoldEvent
) -> None:
    hold = hold_in(state)
    t = hold.apply(event, cause="test", actor="test", at=NOW, amount=AMOUNTS.get(event))
    told = transition_events(hold, [t], "R-1")
    if state is not t.to_state and t.to_state in EVENT_OF_STATE:
        assert [e.type for e in told] == [EVENT_OF_STATE[t.to_state]]
        payload = told[0].payload()
        assert payload["hold_id"] == str(hold.id) and payload["case_id"] == str(hold.case_id)
        data = payload["data"]
        assert isinstance(data, dict)
        assert data["account"] == "****2222" and data["from_state"] == state.value
        assert "6222000011112222" not in json.dumps(payload)
    else:
        assert told == []


def test_every_declared_event_has_a_source() -> None:
    derived = set(EVENT_OF_STATE.values()) | {
        CaseEventType.CASE_OPENED,
        CaseEventType.TRAIL_FOLLOWED,
        CaseEventType.STOP_EXPIRING,
    }
    assert derived == set(CaseEventType)


async def test_the_signature_is_hmac_sha256_over_timestamp_nonce_and_body() -> None:
    secret, body = "s3cret", b'{"type":"hold_stopped"}'
    sent: list[tuple[bytes, Mapping[str, str]]] = []

    class Recorder:
        async def post(
            self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
        ) -> PostOutcome:
            sent.append((body, headers))
            return PostOutcome("delivered", 200)

        async def close(self) -> None: ...

    store = FakeStore([due(1, uuid4(), secret=secret, body=body.decode())])
    sender = WebhookSender(store, Recorder(), FixedClock(), RetryPolicy())
    await sender.deliver_due()
    got_body, headers = sent[0]
    timestamp, nonce = headers["X-Stopper-Timestamp"], headers["X-Stopper-Nonce"]
    expected = hmac.new(
        secret.encode(), f"{timestamp}.{nonce}.".encode() + got_body, hashlib.sha256
    ).hexdigest()
    assert headers["X-Stopper-Signature"] == f"sha256={expected}"
    assert signature_matches(
        secret, int(timestamp), nonce, got_body, headers["X-Stopper-Signature"]
    )
    assert int(timestamp) == int(NOW.timestamp()) and len(nonce) >= 16


async def test_during_a_rotation_a_delivery_is_signed_by_both_secrets_the_new_one_first() -> None:
    body = b'{"type":"hold_stopped"}'
    sent: list[Mapping[str, str]] = []

    class Recorder:
        async def post(
            self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
        ) -> PostOutcome:
            sent.append(headers)
            return PostOutcome("delivered", 200)

        async def close(self) -> None: ...

    rotating = replace(due(1, uuid4(), secret="new", body=body.decode()), previous_secret="old")
    sender = WebhookSender(FakeStore([rotating]), Recorder(), FixedClock(), RetryPolicy())
    await sender.deliver_due()
    [headers] = sent
    timestamp, nonce = int(headers["X-Stopper-Timestamp"]), headers["X-Stopper-Nonce"]
    by_new, by_old = headers["X-Stopper-Signature"].split(", ")
    assert signature_matches("new", timestamp, nonce, body, by_new)
    assert signature_matches("old", timestamp, nonce, body, by_old)
    assert not signature_matches("old", timestamp, nonce, body, by_new)


def test_backoff_doubles_to_its_cap_and_gives_up_after_the_retry_period() -> None:
    policy = RetryPolicy(
        first_retry=timedelta(seconds=10),
        max_retry=timedelta(hours=1),
        retry_for=timedelta(days=1),
    )
    delays = [policy.delay_after(n).total_seconds() for n in range(1, 12)]
    assert delays[:4] == [10, 20, 40, 80]
    assert delays[-1] == 3600 and delays == sorted(delays)
    created = NOW
    assert policy.next_attempt(created, 1, NOW) == NOW + timedelta(seconds=10)
    late = created + timedelta(hours=23, minutes=30)
    assert policy.next_attempt(created, 20, late) is None  # an hour more would pass the day
    assert policy.next_attempt(created, 20, created + timedelta(hours=22)) is not None


OWN = own_addresses("0.0.0.0", 8080, "https://stopper.example.org")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://agency.example/hook", "the URL must be http or https"),
        ("file:///etc/passwd", "the URL must be http or https"),
        ("javascript:alert(1)", "the URL must be http or https"),
        ("http:///hook", "the URL names no host"),
        ("https://user:pw@agency.example/hook", "the URL must not carry credentials"),
        ("http://agency.example:99999/hook", "the URL cannot be read"),
        ("http://127.0.0.1:8080/v1/reports", "the URL points at Stopper itself"),
        ("http://localhost:8080/hook", "the URL points at Stopper itself"),
        ("http://[::1]:8080/hook", "the URL points at Stopper itself"),
        ("https://stopper.example.org/v1/reports", "the URL points at Stopper itself"),
        ("https://STOPPER.example.org./hook", "the URL points at Stopper itself"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    assert refusal_of_url(url, OWN) == reason


@pytest.mark.parametrize(
    "url",
    [
        "https://agency.example/hooks/stopper",
        "http://127.0.0.1:9000/hook",  # a receiver on this machine, not Stopper's port
        "http://stopper.example.org:8443/hook",
    ],
)
def test_good_urls_are_taken(url: str) -> None:
    assert refusal_of_url(url, OWN) is None


def test_a_stopper_on_a_named_host_is_still_itself_on_loopback() -> None:
    own = own_addresses("10.0.0.5", 8080, "")
    assert OwnAddress("*", 8080) in own
    assert refusal_of_url("http://10.0.0.5:8080/x", own) == "the URL points at Stopper itself"
    assert refusal_of_url("http://127.0.0.1:8080/x", own) == "the URL points at Stopper itself"


def case_event(case_id: UUID, event_id: UUID) -> dict[str, object]:
    return {
        "event_id": str(event_id),
        "type": "hold_stopped",
        "case_id": str(case_id),
        "report_id": "R-1",
        "hold_id": str(uuid4()),
        "occurred_at": NOW.isoformat(),
        "data": {},
    }


def test_a_record_that_is_not_a_case_event_is_left_out() -> None:
    case_id, event_id = uuid4(), uuid4()
    good = case_event(case_id, event_id)
    batch = [
        Message("t", 0, 0, str(case_id), b"not json", NOW),
        Message("t", 0, 1, str(case_id), json.dumps(good).encode(), NOW),
    ]
    [event] = events_of(batch)
    assert (event.event_id, event.event_type, event.case_id) == (event_id, "hold_stopped", case_id)
    assert json.loads(event.body) == good


def case_event_record(case_id: UUID, offset: int) -> Message:
    event = case_event(case_id, uuid4())
    return Message("t", 0, offset, str(case_id), json.dumps(event).encode(), NOW)


async def test_with_no_subscription_anywhere_the_fan_out_reads_nothing_more() -> None:
    store = FakeStore([])
    batch = [case_event_record(uuid4(), n) for n in range(3)]
    await WebhookFanOut(store, FixedClock()).handle_batch(batch)
    assert store.owed == []


async def test_once_an_agency_subscribes_the_fan_out_records_what_each_event_owes() -> None:
    subscription = Subscription(
        id=SUB,
        agency_code="PSB-X",
        url="http://agency.example/hook",
        events=("hold_stopped",),
        secret="k",
        created_at=NOW,
        created_by="PSB-X",
    )
    store = FakeStore([], subscribed=[subscription])
    batch = [case_event_record(uuid4(), n) for n in range(3)]
    await WebhookFanOut(store, FixedClock()).handle_batch(batch)
    assert [e.case_id for e in store.owed] == [UUID(m.key or "") for m in batch]


# --- the sender, against a fake store that keeps the claim rule --------------------------


def due(
    delivery_id: int, case: UUID, *, secret: str = "k", body: str = "{}", sub: UUID | None = None
) -> DueDelivery:
    return DueDelivery(
        id=delivery_id,
        subscription_id=sub or SUB,
        agency_code="PSB-X",
        url="http://agency.example/hook",
        secret=secret,
        body=body,
        attempts=0,
        created_at=NOW,
    )


SUB = uuid4()


@dataclass
class FakeStore:
    """Pending deliveries; `claim_deliveries` hands out only the oldest pending one of each
    case for each subscription, as the real store does (tests/integration prove that one)."""

    pending: list[DueDelivery]
    next_at: dict[int, datetime] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    subscribed: list[Subscription] = field(default_factory=list)
    owed: list[EventToDeliver] = field(default_factory=list)

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[DueDelivery]:
        heads: dict[tuple[UUID, UUID], DueDelivery] = {}
        for d in sorted(self.pending, key=lambda d: d.id):
            key = (d.subscription_id, self.case_of(d))
            if d.id not in self.done and key not in heads:
                heads[key] = d
        claimed = [d for d in heads.values() if self.next_at.get(d.id, now) <= now][:limit]
        for d in claimed:
            self.next_at[d.id] = lease_until
        return claimed

    def case_of(self, d: DueDelivery) -> UUID:
        return UUID(json.loads(d.body).get("case_id", str(UUID(int=0))))

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        self.attempts += attempts
        for a in attempts:
            if a.status != "pending":
                self.done.add(a.delivery_id)
            else:
                assert a.next_attempt_at is not None
                self.next_at[a.delivery_id] = a.next_attempt_at
                self.pending = [
                    replace(d, attempts=a.attempt) if d.id == a.delivery_id else d
                    for d in self.pending
                ]

    async def add_subscription(self, subscription: Subscription) -> None: ...

    async def subscriptions_of(self, agency_code: str | None) -> list[Subscription]:
        return [s for s in self.subscribed if agency_code in (None, s.agency_code)]

    async def remove_subscription(self, subscription_id: UUID, at: datetime) -> bool:
        return False

    async def rotate_secret(
        self, subscription_id: UUID, secret: str, previous_until: datetime
    ) -> bool:
        return False

    async def end_rotation(self, subscription_id: UUID) -> bool:
        return False

    async def delivery_log(self, subscription_id: UUID, limit: int) -> list[LoggedAttempt]:
        return []

    async def record_deliveries(self, events: Sequence[EventToDeliver], now: datetime) -> int:
        self.owed += events
        return len(events)


class FlakyReceiver:
    """Fails the first attempt of every delivery whose body is in `fail_once`."""

    def __init__(self, fail_once: set[str]) -> None:
        self.fail_once = set(fail_once)
        self.received: list[str] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> PostOutcome:
        text = body.decode()
        if text in self.fail_once:
            self.fail_once.discard(text)
            return PostOutcome("http_error", 503, "answered 503")
        self.received.append(text)
        return PostOutcome("delivered", 200)

    async def close(self) -> None: ...


async def test_a_failed_event_holds_back_its_case_only_and_is_retried_after_its_backoff() -> None:
    a, b = uuid4(), uuid4()

    def body(case: UUID, n: int) -> str:
        return json.dumps({"case_id": str(case), "n": n})

    pending = [due(1, a, body=body(a, 1)), due(2, b, body=body(b, 1)), due(3, a, body=body(a, 2))]
    store = FakeStore(pending)
    receiver = FlakyReceiver({body(a, 1)})
    clock = FixedClock()
    sender = WebhookSender(store, receiver, clock, RetryPolicy(first_retry=timedelta(seconds=10)))

    await sender.deliver_due()
    assert receiver.received == [body(b, 1)]  # case a's first failed; its second waits
    await sender.deliver_due()
    assert receiver.received == [body(b, 1)]  # not before the backoff
    clock.at = NOW + timedelta(seconds=11)
    await sender.deliver_due()
    await sender.deliver_due()
    assert receiver.received == [body(b, 1), body(a, 1), body(a, 2)]
    outcomes = [(x.delivery_id, x.attempt, x.outcome, x.status) for x in store.attempts]
    assert outcomes[0] == (1, 1, "http_error", "pending")
    assert (1, 2, "delivered", "delivered") in outcomes


async def test_a_delivery_is_given_up_after_the_retry_period() -> None:
    case = uuid4()
    store = FakeStore([due(1, case, body=json.dumps({"case_id": str(case)}))])
    clock = FixedClock()

    class Down:
        async def post(
            self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
        ) -> PostOutcome:
            return PostOutcome("unreachable", None, "the connection was refused or failed")

        async def close(self) -> None: ...

    sender = WebhookSender(store, Down(), clock, RetryPolicy(retry_for=timedelta(minutes=5)))
    for _ in range(20):
        await sender.deliver_due()
        clock.at += timedelta(minutes=2)
    statuses = [a.status for a in store.attempts]
    assert statuses[-1] == "gave_up" and statuses.count("gave_up") == 1
    assert all(a.outcome == "unreachable" for a in store.attempts)


async def test_a_bad_url_is_refused_before_anything_is_stored() -> None:
    store = FakeStore([])
    desk = WebhookDesk(store, FixedClock(), OWN)
    with pytest.raises(WebhookRefused, match="points at Stopper itself"):
        await desk.subscribe("PSB-X", "http://127.0.0.1:8080/hook", ["hold_stopped"], "test")
    made = await desk.subscribe("PSB-X", "https://agency.example/h", ["hold_stopped"] * 2, "t")
    assert made.events == ("hold_stopped",) and len(made.secret) >= 40
