"""Agencies' webhook subscriptions: asked for, listed, removed, and their delivery log.

Business rules:

* An agency manages its own subscriptions only (its intake key), or an operator does for it;
  another agency's subscription is answered as none at all.
* The URL is http or https, names a host, carries no credentials and does not point at
  Stopper itself (its own API's address or public URL): Stopper never calls itself in a loop.
  A URL that is well formed but unreachable is accepted: its deliveries are retried and logged.
* The secret is made here (256 random bits), returned once, and kept to sign deliveries.
* A secret rotates without an outage: a new one is made and returned once, and the one it
  replaces keeps signing too until the agency says it has switched (or the rotation window,
  `WebhookSettings.rotation_window_h`, ends): each delivery meanwhile carries a signature by
  each secret, so the agency's receiver verifies it with whichever secret it holds. A new
  rotation during one replaces the older previous secret.
* A removed subscription gets no new deliveries; its pending ones are not tried again.
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol
from urllib.parse import urlsplit
from uuid import UUID

from stopper.app.ports import Clock
from stopper.errors import WebhookRefused

DeliveryStatus = Literal["pending", "delivered", "gave_up"]


@dataclass(frozen=True, slots=True)
class Subscription:
    id: UUID
    agency_code: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: datetime
    created_by: str
    # During a rotation: the secret being replaced, signing as well until `previous_until`.
    previous_secret: str | None = None
    previous_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rotated:
    """A webhook's new secret (shown once) and until when the one it replaced still signs."""

    subscription_id: UUID
    secret: str
    previous_until: datetime


@dataclass(frozen=True, slots=True)
class EventToDeliver:
    """A case event read from the topic, to fan out to its agency's subscriptions."""

    event_id: UUID
    event_type: str
    case_id: UUID
    body: str  # the exact JSON every subscription is sent (and signed over)


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A delivery whose attempt is due, claimed (leased) for this attempt."""

    id: int
    subscription_id: UUID
    agency_code: str
    url: str
    secret: str
    body: str
    attempts: int  # made before this one
    created_at: datetime
    previous_secret: str | None = None  # a rotation under way: it signs too


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at a delivery, as the log keeps it, and what it leaves the delivery."""

    delivery_id: int
    subscription_id: UUID
    agency_code: str
    attempt: int
    at: datetime
    outcome: str
    status_code: int | None
    detail: str
    duration_ms: float
    status: DeliveryStatus  # the delivery after it
    next_attempt_at: datetime | None  # when pending


@dataclass(frozen=True, slots=True)
class LoggedAttempt:
    event_id: UUID
    event_type: str
    case_id: UUID
    attempt: int
    at: datetime
    outcome: str
    status_code: int | None
    detail: str
    duration_ms: float
    delivery_status: DeliveryStatus


class WebhookStore(Protocol):
    async def add_subscription(self, subscription: Subscription) -> None: ...

    async def subscriptions_of(self, agency_code: str | None) -> list[Subscription]:
        """The agency's subscriptions not removed (every agency's for None), oldest first."""
        ...

    async def remove_subscription(self, subscription_id: UUID, at: datetime) -> bool: ...

    async def rotate_secret(
        self, subscription_id: UUID, secret: str, previous_until: datetime
    ) -> bool:
        """The subscription's secret becomes `secret`; the one it had signs as well until
        `previous_until`. False if there is no such subscription (or it was removed)."""
        ...

    async def end_rotation(self, subscription_id: UUID) -> bool:
        """The previous secret signs no more. False if no rotation was under way."""
        ...

    async def delivery_log(self, subscription_id: UUID, limit: int) -> list[LoggedAttempt]:
        """The subscription's attempts, newest first."""
        ...

    async def record_deliveries(self, events: Sequence[EventToDeliver], now: datetime) -> int:
        """In one transaction, in the order given: a delivery of each event to each
        subscription of its case's agency that asked for its type (an event already recorded
        for a subscription is not recorded again). Returns how many were added."""
        ...

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[DueDelivery]:
        """Pending deliveries due by `now`, only the oldest pending one of each case for each
        subscription (one case's events go in order), leased until `lease_until`."""
        ...

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None: ...


@dataclass(frozen=True, slots=True)
class OwnAddress:
    """Where Stopper itself answers: a host (or `*` for any local one) and a port."""

    host: str
    port: int


_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_local(host: str) -> bool:
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def refusal_of_url(url: str, own: Iterable[OwnAddress]) -> str | None:
    """Why `url` cannot be a webhook, or None if it can."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL cannot be read"
    if parts.scheme not in ("http", "https"):
        return "the URL must be http or https"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "the URL names no host"
    if parts.username is not None or parts.password is not None:
        return "the URL must not carry credentials"
    if parts.fragment:
        return "the URL must not have a fragment"
    port = port or (443 if parts.scheme == "https" else 80)
    for address in own:
        if address.port != port:
            continue
        own_host = address.host.lower()
        if host == own_host or (_is_local(host) and (own_host == "*" or _is_local(own_host))):
            return "the URL points at Stopper itself"
    return None


def own_addresses(api_host: str, api_port: int, public_url: str) -> list[OwnAddress]:
    """Stopper's own addresses, from its API settings: its listening address (any local host
    if it listens on all of them) and its public URL."""
    listening = "*" if _is_local(api_host) or api_host in ("", "0.0.0.0", "::") else api_host
    found = [OwnAddress(listening, api_port)]
    if listening != "*":
        found.append(OwnAddress("*", api_port))  # it answers on loopback as well
    if public_url:
        parts = urlsplit(public_url)
        if parts.hostname:
            default = 443 if parts.scheme == "https" else 80
            found.append(OwnAddress(parts.hostname.lower(), parts.port or default))
    return found


class WebhookDesk:
    """Subscriptions and their logs, for the API."""

    def __init__(
        self,
        store: WebhookStore,
        clock: Clock,
        own: Sequence[OwnAddress],
        rotation_window: timedelta = timedelta(hours=24),
    ) -> None:
        self._store = store
        self._clock = clock
        self._own = tuple(own)
        self._rotation_window = rotation_window

    async def subscribe(
        self, agency_code: str, url: str, events: Sequence[str], created_by: str
    ) -> Subscription:
        reason = refusal_of_url(url, self._own)
        if reason is not None:
            raise WebhookRefused(reason)
        subscription = Subscription(
            id=uuid.uuid4(),
            agency_code=agency_code,
            url=url,
            events=tuple(dict.fromkeys(events)),
            secret=secrets.token_urlsafe(32),
            created_at=self._clock.now(),
            created_by=created_by,
        )
        await self._store.add_subscription(subscription)
        return subscription

    async def subscriptions(self, agency_code: str) -> list[Subscription]:
        return await self._store.subscriptions_of(agency_code)

    async def find(self, agency_code: str, subscription_id: UUID) -> Subscription | None:
        """The agency's subscription of that id (another agency's is none)."""
        for s in await self._store.subscriptions_of(agency_code):
            if s.id == subscription_id:
                return s
        return None

    async def remove(self, agency_code: str, subscription_id: UUID) -> bool:
        if await self.find(agency_code, subscription_id) is None:
            return False
        return await self._store.remove_subscription(subscription_id, self._clock.now())

    async def rotate(self, agency_code: str, subscription_id: UUID) -> Rotated | None:
        """A new secret for the agency's subscription; None if it has none of that id."""
        if await self.find(agency_code, subscription_id) is None:
            return None
        secret = secrets.token_urlsafe(32)
        until = self._clock.now() + self._rotation_window
        if not await self._store.rotate_secret(subscription_id, secret, until):
            return None
        return Rotated(subscription_id, secret, until)

    async def end_rotation(self, agency_code: str, subscription_id: UUID) -> bool | None:
        """The agency has switched: the previous secret signs no more. None if it has no such
        subscription; False if no rotation was under way."""
        if await self.find(agency_code, subscription_id) is None:
            return None
        return await self._store.end_rotation(subscription_id)

    async def log(self, subscription: Subscription, limit: int) -> list[LoggedAttempt]:
        return await self._store.delivery_log(subscription.id, limit)
