"""Case events delivered to agencies' webhooks: fanned out from `stopper.case-events`, then
POSTed, signed, until delivered or given up.

Business rules:

* At least once: a record of the topic becomes deliveries (one per subscription that asked
  for its type) in one transaction before its offset is committed; a record read twice adds
  nothing (one delivery per subscription and event id).
* In order per case: only the oldest pending delivery of a case is tried for a subscription;
  the next waits until it is delivered or given up. Other cases are not held up.
* Each attempt is signed as institutions sign callbacks (`stopper.contracts.signing`): a fresh
  timestamp and nonce, HMAC-SHA256 over "<timestamp>.<nonce>." + body.
* Any 2xx delivers. Anything else (another status, a redirect, which is never followed, a
  timeout, a refused connection) is retried after a backoff that doubles from `first_retry`
  up to `max_retry`, until `retry_for` after the event: then the delivery is given up.
* Every attempt is logged (the delivery log) and counted by agency and outcome; neither the
  log nor the metrics name the URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import ValidationError

from stopper import metrics
from stopper.app.ports import Clock, Message
from stopper.app.webhooks import (
    Attempt,
    DeliveryStatus,
    DueDelivery,
    EventToDeliver,
    WebhookStore,
)
from stopper.contracts.signing import SIGNATURE_HEADER, signed_headers
from stopper.contracts.webhooks import CaseEventV1

log = logging.getLogger(__name__)

DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What one POST came to: `delivered`, `http_error`, `redirect`, `timeout`,
    `unreachable` or `error`; the status code if there was one, and a short detail that
    never repeats the URL."""

    outcome: str
    status_code: int | None = None
    detail: str = ""


class WebhookTransport(Protocol):
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> PostOutcome:
        """One POST within `timeout_s`, redirects not followed, never retried here."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout: timedelta = timedelta(seconds=10)
    first_retry: timedelta = timedelta(seconds=10)
    max_retry: timedelta = timedelta(hours=1)
    retry_for: timedelta = timedelta(days=1)

    def delay_after(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: doubling, capped."""
        doubled: timedelta = self.first_retry * (2 ** min(max(attempts - 1, 0), 30))
        return min(doubled, self.max_retry)

    def next_attempt(self, created_at: datetime, attempts: int, now: datetime) -> datetime | None:
        """When to try a delivery again after its `attempts`-th failure; None: give it up."""
        at = now + self.delay_after(attempts)
        return None if at > created_at + self.retry_for else at


def events_of(batch: Sequence[Message]) -> list[EventToDeliver]:
    """The case events of a batch, in its order; a record that is not one is logged and left
    (it can never become a delivery)."""
    events = []
    for message in batch:
        try:
            event = CaseEventV1.model_validate_json(message.value)
        except ValidationError:
            log.error(
                "a record on %s at offset %d is not a case event; not delivered",
                message.topic,
                message.offset,
            )
            continue
        # The body as it was published, so every subscription is sent the same bytes.
        body = json.dumps(json.loads(message.value), separators=(",", ":"))
        events.append(EventToDeliver(event.event_id, event.type.value, event.case_id, body))
    return events


class WebhookFanOut:
    """The consumer of `stopper.case-events` that records the deliveries each event owes."""

    def __init__(self, store: WebhookStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def handle_batch(self, batch: Sequence[Message]) -> None:
        if not await self._store.subscriptions_of(None):
            return  # nobody to tell: one read rather than the batch parsed and its cases read
        events = events_of(batch)
        if events:
            added = await self._store.record_deliveries(events, self._clock.now())
            metrics.WEBHOOK_DELIVERIES_OWED.inc(added)


class WebhookSender:
    """Tries the due deliveries, a batch at a time, and records every attempt."""

    def __init__(
        self,
        store: WebhookStore,
        transport: WebhookTransport,
        clock: Clock,
        policy: RetryPolicy,
        batch: int = 100,
    ) -> None:
        self._store = store
        self._transport = transport
        self._clock = clock
        self._policy = policy
        self._batch = batch

    async def deliver_due(self) -> int:
        now = self._clock.now()
        # Leased for longer than an attempt may take: another instance leaves them alone.
        lease_until = now + self._policy.timeout + timedelta(seconds=5)
        due = await self._store.claim_deliveries(now, lease_until, self._batch)
        if not due:
            return 0
        attempts = await asyncio.gather(*(self._attempt(d) for d in due))
        await self._store.record_attempts(attempts)
        for a in attempts:
            metrics.WEBHOOK_ATTEMPTS.labels(a.agency_code, a.outcome).inc()
            if a.status == "gave_up":
                metrics.WEBHOOK_GAVE_UP.labels(a.agency_code).inc()
                log.warning(
                    "webhook %s of agency %s: delivery %d given up after %d attempts",
                    a.subscription_id,
                    a.agency_code,
                    a.delivery_id,
                    a.attempt,
                )
        return len(due)

    async def _attempt(self, delivery: DueDelivery) -> Attempt:
        body = delivery.body.encode()
        timestamp = int(self._clock.now().timestamp())
        nonce = secrets.token_hex(16)
        headers = signed_headers(delivery.secret, timestamp, nonce, body)
        if delivery.previous_secret is not None:
            # A rotation under way: a signature by each secret, the current one first.
            previous = signed_headers(delivery.previous_secret, timestamp, nonce, body)
            headers[SIGNATURE_HEADER] += ", " + previous[SIGNATURE_HEADER]
        started = time.perf_counter()
        try:
            result = await self._transport.post(
                delivery.url, body, headers, self._policy.timeout.total_seconds()
            )
        except Exception as e:  # a transport bug must not lose the attempt's record
            log.exception("webhook %s: the attempt failed unexpectedly", delivery.subscription_id)
            result = PostOutcome("error", None, type(e).__name__)
        duration_ms = (time.perf_counter() - started) * 1000
        at = self._clock.now()
        attempt = delivery.attempts + 1
        next_at: datetime | None = None
        status: DeliveryStatus
        if result.outcome == DELIVERED:
            status = "delivered"
        else:
            next_at = self._policy.next_attempt(delivery.created_at, attempt, at)
            status = "pending" if next_at is not None else "gave_up"
            log.info(
                "webhook %s of agency %s: attempt %d %s (%s)",
                delivery.subscription_id,
                delivery.agency_code,
                attempt,
                result.outcome,
                result.detail,
            )
        return Attempt(
            delivery_id=delivery.id,
            subscription_id=delivery.subscription_id,
            agency_code=delivery.agency_code,
            attempt=attempt,
            at=at,
            outcome=result.outcome,
            status_code=result.status_code,
            detail=result.detail[:200],
            duration_ms=round(duration_ms, 3),
            status=status,
            next_attempt_at=next_at,
        )
