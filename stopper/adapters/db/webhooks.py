"""Agencies' webhooks: subscriptions, the deliveries case events owe them, every attempt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Integer, Select, bindparam, insert, select, update
from sqlalchemy.orm import aliased

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import (
    CaseRow,
    Timestamp,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)
from stopper.adapters.db.storage import Storage
from stopper.app.webhooks import (
    Attempt,
    DueDelivery,
    EventToDeliver,
    LoggedAttempt,
    Subscription,
)

_Sub = WebhookSubscriptionRow
_Delivery = WebhookDeliveryRow


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row.id,
        agency_code=row.agency_code,
        url=row.url,
        events=tuple(row.events),
        secret=row.secret,
        created_at=row.created_at,
        created_by=row.created_by,
        previous_secret=row.previous_secret,
        previous_until=row.previous_until,
    )


class WebhookStorage(Storage):
    async def add_subscription(self, subscription: Subscription) -> None:
        with store_errors():
            async with self._db.begin() as connection:
                await connection.execute(
                    insert(_Sub).values(
                        id=subscription.id,
                        agency_code=subscription.agency_code,
                        url=subscription.url,
                        events=list(subscription.events),
                        secret=subscription.secret,
                        created_at=subscription.created_at,
                        created_by=subscription.created_by,
                        removed_at=None,
                    )
                )

    async def rotate_secret(
        self, subscription_id: UUID, secret: str, previous_until: datetime
    ) -> bool:
        with store_errors():
            async with self._db.begin() as connection:
                result = await connection.execute(
                    update(_Sub)
                    .where(_Sub.id == subscription_id, _Sub.removed_at.is_(None))
                    .values(
                        previous_secret=_Sub.secret, previous_until=previous_until, secret=secret
                    )
                )
        return bool(result.rowcount)

    async def end_rotation(self, subscription_id: UUID) -> bool:
        with store_errors():
            async with self._db.begin() as connection:
                result = await connection.execute(
                    update(_Sub)
                    .where(_Sub.id == subscription_id, _Sub.previous_secret.is_not(None))
                    .values(previous_secret=None, previous_until=None)
                )
        return bool(result.rowcount)

    async def subscriptions_of(self, agency_code: str | None) -> list[Subscription]:
        query = select(_Sub).where(_Sub.removed_at.is_(None)).order_by(_Sub.created_at, _Sub.id)
        if agency_code is not None:
            query = query.where(_Sub.agency_code == agency_code)
        with store_errors():
            async with self._db.read() as connection:
                rows = (await connection.execute(query)).all()
        return [_subscription(r) for r in rows]

    async def remove_subscription(self, subscription_id: UUID, at: datetime) -> bool:
        with store_errors():
            async with self._db.begin() as connection:
                done = await connection.execute(
                    update(_Sub)
                    .where(_Sub.id == subscription_id, _Sub.removed_at.is_(None))
                    .values(removed_at=at)
                )
        return done.rowcount == 1

    async def delivery_log(self, subscription_id: UUID, limit: int) -> list[LoggedAttempt]:
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(
                        WebhookAttemptRow,
                        _Delivery.event_id,
                        _Delivery.event_type,
                        _Delivery.case_id,
                        _Delivery.status.label("delivery_status"),
                    )
                    .join(_Delivery, _Delivery.id == WebhookAttemptRow.delivery_id)
                    .where(WebhookAttemptRow.subscription_id == subscription_id)
                    .order_by(WebhookAttemptRow.id.desc())
                    .limit(limit)
                )
                return [
                    LoggedAttempt(
                        event_id=r.event_id,
                        event_type=r.event_type,
                        case_id=r.case_id,
                        attempt=r.attempt,
                        at=r.at,
                        outcome=r.outcome,
                        status_code=r.status_code,
                        detail=r.detail,
                        duration_ms=r.duration_ms,
                        delivery_status=r.delivery_status,
                    )
                    for r in rows
                ]

    async def record_deliveries(self, events: Sequence[EventToDeliver], now: datetime) -> int:
        if not events:
            return 0
        with store_errors():
            async with self._db.begin() as connection:
                case_ids = list({e.case_id for e in events})
                agency_of = {
                    r.id: r.agency_code
                    for r in await connection.execute(
                        select(CaseRow.id, CaseRow.agency_code).where(
                            self._db.id_among(CaseRow.id, case_ids)
                        )
                    )
                }
                if not agency_of:
                    return 0
                subscriptions = await connection.execute(
                    select(_Sub.id, _Sub.agency_code, _Sub.events).where(
                        _Sub.agency_code.in_(set(agency_of.values())), _Sub.removed_at.is_(None)
                    )
                )
                by_agency: dict[str, list[tuple[UUID, set[str]]]] = {}
                for s in subscriptions:
                    by_agency.setdefault(s.agency_code, []).append((s.id, set(s.events)))
                # In the topic's order: `id` then orders each case's deliveries.
                rows = [
                    {
                        "subscription_id": subscription_id,
                        "event_id": e.event_id,
                        "event_type": e.event_type,
                        "case_id": e.case_id,
                        "body": e.body,
                        "status": "pending",
                        "attempts": 0,
                        "created_at": now,
                        "next_attempt_at": now,
                        "finished_at": None,
                    }
                    for e in events
                    for subscription_id, wanted in by_agency.get(agency_of.get(e.case_id, ""), [])
                    if e.event_type in wanted
                ]
                if not rows:
                    return 0
                added = await connection.execute(
                    self._db.insert_new(_Delivery).values(rows).returning(_Delivery.id)
                )
                return len(added.all())

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[DueDelivery]:
        with store_errors():
            async with self._db.begin() as connection:
                rows = (
                    await connection.execute(_DUE_DELIVERIES, {"now": now, "limit": limit})
                ).all()
                if rows:
                    await connection.execute(
                        update(_Delivery)
                        .where(_Delivery.id.in_([r.id for r in rows]))
                        .values(next_attempt_at=lease_until)
                    )
        return [
            DueDelivery(
                id=r.id,
                subscription_id=r.subscription_id,
                agency_code=r.agency_code,
                url=r.url,
                secret=r.secret,
                body=r.body,
                attempts=r.attempts,
                created_at=r.created_at,
                previous_secret=(
                    r.previous_secret
                    if r.previous_until is not None and r.previous_until > now
                    else None
                ),
            )
            for r in rows
        ]

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        with store_errors():
            async with self._db.begin() as connection:
                await self._db.insert_rows(
                    connection,
                    WebhookAttemptRow,
                    [
                        {
                            "delivery_id": a.delivery_id,
                            "subscription_id": a.subscription_id,
                            "attempt": a.attempt,
                            "at": a.at,
                            "outcome": a.outcome,
                            "status_code": a.status_code,
                            "detail": a.detail,
                            "duration_ms": a.duration_ms,
                        }
                        for a in attempts
                    ],
                )
                await self._db.update_by_id(
                    connection,
                    _Delivery,
                    [
                        {
                            "row_id": a.delivery_id,
                            "status": a.status,
                            "attempts": a.attempt,
                            "next_attempt_at": a.next_attempt_at or a.at,
                            "finished_at": None if a.status == "pending" else a.at,
                        }
                        for a in attempts
                    ],
                )


def _due_deliveries() -> Select[Any]:
    """`claim_deliveries`' read, built once: the webhook sender runs it five times a second
    per worker, and on an idle database building it (an alias, an `EXISTS`) cost more than
    running it. A delivery waits behind an earlier one of its subscription and case."""
    earlier = aliased(_Delivery)
    waiting_behind = (
        select(earlier.id)
        .where(
            earlier.subscription_id == _Delivery.subscription_id,
            earlier.case_id == _Delivery.case_id,
            earlier.status == "pending",
            earlier.id < _Delivery.id,
        )
        .exists()
    )
    return (
        select(
            _Delivery.id,
            _Delivery.subscription_id,
            _Delivery.body,
            _Delivery.attempts,
            _Delivery.created_at,
            _Sub.agency_code,
            _Sub.url,
            _Sub.secret,
            _Sub.previous_secret,
            _Sub.previous_until,
        )
        .join(_Sub, _Sub.id == _Delivery.subscription_id)
        .where(
            _Delivery.status == "pending",
            _Delivery.next_attempt_at <= bindparam("now", type_=Timestamp),
            _Sub.removed_at.is_(None),
            ~waiting_behind,
        )
        .order_by(_Delivery.id)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(of=_Delivery, skip_locked=True)
    )


_DUE_DELIVERIES = _due_deliveries()
