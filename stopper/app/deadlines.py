"""Deadlines of emergency stops: warnings ahead of the lapse (48 hours in China, by the
jurisdiction profile), the lapse itself, and re-application. The rules are in
`stopper.domain.deadlines`; the numbers in the `DeadlinePolicy`.

Warnings and lapses leave as events on the hold-events topic (through the outbox, with the
change that records them), are counted in metrics and written to the log.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from stopper import metrics
from stopper.app.hold_changes import Reapplied, WarningsSent
from stopper.app.policies import DeadlinePolicy
from stopper.app.ports import Clock, DeadlineStore, HoldRecord, HoldUpdate, OutboxEvent
from stopper.contracts.institutions import StopRequestV1
from stopper.domain.deadlines import deadline_due, may_reapply
from stopper.domain.holds import HoldEvent, HoldState, can
from stopper.registry import Registry

log = logging.getLogger(__name__)

DEADLINES_ACTOR = "stopper:deadlines"


@dataclass(frozen=True, slots=True)
class _Swept:
    warnings: tuple[timedelta, ...]
    lapsed: bool
    silent: bool
    institution_code: str


# Holds swept per transaction: one commit for many warnings and lapses.
_CHUNK = 100


class ReapplyOutcome(enum.StrEnum):
    REAPPLIED = "reapplied"
    NOT_ALLOWED = "not_allowed"  # wrong state, or the limit is reached
    UNKNOWN_HOLD = "unknown_hold"


class DeadlineKeeper:
    def __init__(
        self,
        store: DeadlineStore,
        registry: Registry,
        clock: Clock,
        policy: DeadlinePolicy,
        *,
        events_topic: str,
        stop_requests_topic: str,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._leads = policy.stop_warnings
        self._freeze_leads = policy.freeze_warnings
        self._max_reapplications = policy.max_reapplications
        self._events_topic = events_topic
        self._stop_requests_topic = stop_requests_topic
        self._on_outbox = on_outbox

    async def sweep_once(self) -> int:
        """Warn about and lapse every stop that is due; returns how many holds it touched."""
        now = self._clock.now()
        due = await self._store.holds_near_deadline(now, self._leads, self._freeze_leads, limit=500)
        for start in range(0, len(due), _CHUNK):
            await self._sweep_holds(due[start : start + _CHUNK], self._clock.now())
        counts = [await self._store.count_expiring(now, lead) for lead in self._leads]
        for lead, count in zip(self._leads, counts, strict=True):
            metrics.HOLDS_EXPIRING_SOON.labels(_hours(lead)).set(count)
        metrics.STOPS_LAPSING_UNFROZEN.labels(_hours(self._leads[-1])).set(counts[-1])
        if due and self._on_outbox is not None:
            self._on_outbox()
        return len(due)

    async def reapply(self, hold_id: UUID, *, actor: str, reason: str) -> ReapplyOutcome:
        """Ask again for an expired or expiring stop, with a new idempotency key (a new
        generation); at most the policy's `max_reapplications` times per hold."""
        now = self._clock.now()
        outcome = ReapplyOutcome.UNKNOWN_HOLD

        def decide(record: HoldRecord) -> HoldUpdate | None:
            nonlocal outcome
            hold = record.hold
            limit = self._max_reapplications
            if not can(hold.state, HoldEvent.REAPPLIED) or not may_reapply(
                hold.reapplications, limit
            ):
                outcome = ReapplyOutcome.NOT_ALLOWED
                return None
            transition = hold.apply(
                HoldEvent.REAPPLIED,
                cause=f"re-applied ({hold.reapplications + 1} of {limit}): {reason}",
                actor=actor,
                at=now,
            )
            outcome = ReapplyOutcome.REAPPLIED
            institution = self._registry[hold.institution_code]
            request = StopRequestV1.from_command(hold.stop_request(now))
            return HoldUpdate(
                at=now,
                transitions=[transition],
                change=Reapplied(
                    dispatch_deadline_at=now + timedelta(seconds=institution.retry.deadline_s),
                    reason=reason,
                ),
                events=[
                    OutboxEvent(
                        self._stop_requests_topic, str(hold.id), request.model_dump(mode="json")
                    )
                ],
            )

        await self._store.update_hold(hold_id, decide)
        if outcome is ReapplyOutcome.REAPPLIED and self._on_outbox is not None:
            self._on_outbox()
        return outcome

    async def _sweep_holds(self, hold_ids: list[UUID], now: datetime) -> None:
        swept: dict[UUID, list[_Swept]] = {}
        done = await self._store.update_holds(
            {h: lambda r: self._sweep(r, now, swept.setdefault(r.hold.id, [])) for h in hold_ids}
        )
        for record, _ in done:
            self._observe(record, swept[record.hold.id][-1])

    def _sweep(self, record: HoldRecord, now: datetime, swept: list[_Swept]) -> HoldUpdate | None:
        hold = record.hold
        if hold.state is HoldState.STOPPED:
            kind, expires_at, leads = "stop", record.stop_expires_at, self._leads
            what = "emergency stop lapsed at {} without a formal freeze"
        elif hold.state is HoldState.FROZEN:
            kind, expires_at, leads = "freeze", record.freeze_expires_at, self._freeze_leads
            what = "formal freeze expired at {} without renewal or return"
        else:
            return None
        if expires_at is None:
            return None
        due = deadline_due(
            expires_at=expires_at, warnings_sent=record.warnings_sent, leads=leads, now=now
        )
        if not due.warnings and not due.lapse:
            return None
        events = [
            self._event(record, f"{kind}_expiring", expires_at, now, lead=lead)
            for lead in due.warnings
        ]
        transitions = []
        if due.lapse:
            cause = what.format(expires_at.isoformat())
            if due.silent:
                cause += "; its warnings had not gone out ahead"
            transitions.append(
                hold.apply(HoldEvent.LAPSED, cause=cause, actor=DEADLINES_ACTOR, at=now)
            )
            events.append(self._event(record, f"{kind}_lapsed", expires_at, now))
        swept.append(_Swept(due.warnings, due.lapse, due.silent, hold.institution_code))
        return HoldUpdate(
            at=now,
            transitions=transitions,
            change=WarningsSent(record.warnings_sent + len(due.warnings)),
            events=events,
        )

    def _event(
        self,
        record: HoldRecord,
        kind: str,
        expires_at: datetime,
        now: datetime,
        lead: timedelta | None = None,
    ) -> OutboxEvent:
        hold = record.hold
        payload: dict[str, object] = {
            "event": kind,
            "hold_id": str(hold.id),
            "case_id": str(hold.case_id),
            "institution_code": hold.institution_code,
            "layer": hold.layer,
            "expires_at": expires_at.isoformat(),
            "at": now.isoformat(),
            "hours_left": round(max(0.0, (expires_at - now).total_seconds() / 3600), 2),
        }
        if lead is not None:
            payload["warning"] = _hours(lead)
        return OutboxEvent(self._events_topic, str(hold.id), payload)

    def _observe(self, record: HoldRecord, swept: _Swept) -> None:
        for lead in swept.warnings:
            metrics.EXPIRY_WARNINGS.labels(_hours(lead)).inc()
            log.warning(
                "emergency stop expiring: order the freeze",
                extra={
                    "hold_id": str(record.hold.id),
                    "institution": swept.institution_code,
                    "warning": _hours(lead),
                },
            )
        if swept.lapsed:
            metrics.LAPSES.inc()
            if swept.silent:
                metrics.SILENT_LAPSES.inc()
            log.error(
                "emergency stop lapsed",
                extra={
                    "hold_id": str(record.hold.id),
                    "institution": swept.institution_code,
                    "silent": swept.silent,
                },
            )


def _hours(lead: timedelta) -> str:
    hours = lead.total_seconds() / 3600
    return f"{hours:g}h"
