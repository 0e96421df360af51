"""What a simulated institution keeps: its counts (`GET /stats`) and its record of each stop
request (one idempotency key), which answers every repeat and every status inquiry."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any
from uuid import UUID


@dataclass
class Counts:
    stop_requests: int = 0  # received (POSTs to /stops, TxInf of camt.056), whatever became of them
    iso_messages: int = 0  # camt.056 messages received (each carries one or more stop requests)
    status_inquiries: int = 0  # GETs of one stop's status
    status_queries: int = 0  # POSTs to /stops/status
    status_keys_asked: int = 0  # keys those queries asked about
    stops_executed: int = 0
    supplements_executed: int = 0
    double_stops: int = 0
    mule_flagged: int = 0  # stop requests (one per key) that said the account is a known mule
    callbacks_owed: int = 0  # one per key (per camt.056, for ISO 20022), answering by callback
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    freezes: int = 0
    returns: int = 0
    double_returns: int = 0
    amount_returned: int = 0
    release_requests: int = 0  # received, whatever became of them
    releases: int = 0  # holds released (one per key)
    double_releases: int = 0  # a hold released by two keys
    amount_released: int = 0  # what the stops released held
    stops_not_carried_out: int = 0  # stop requests of a hold released before they arrived
    seeded_stops: int = 0  # stops put on record without a request (`seed_stops`)
    lifted: int = 0  # stops lifted on the institution's own decision (`lift`)
    answers: Counter[str] = field(default_factory=Counter)


# What `GET /stats` totals: every count but the answers by kind (given per institution).
COUNTED = tuple(f.name for f in fields(Counts) if f.name != "answers")


@dataclass(frozen=True, slots=True)
class StopRecord:
    """An institution's record of one stop request (one idempotency key): the outcome it decided
    when the request arrived, and from when it knows that outcome (monotonic seconds): at once,
    or, at an institution that answers by callback, when the callback is due."""

    idempotency_key: str
    hold_id: UUID
    generation: int
    outcome: dict[str, Any]  # the answer of an institution that answers at once
    known_at: float
    known_mule_cases: int | None = None  # what the request said (`known_mule`), if anything

    def known(self, now: float) -> bool:
        return now >= self.known_at

    def status(self, now: float) -> dict[str, Any]:
        """The answer to a status inquiry about it (a `StopStatusV1`)."""
        if not self.known(now):
            return {
                "idempotency_key": self.idempotency_key,
                "status": "pending",
                "hold_id": str(self.hold_id),
            }
        return {
            "idempotency_key": self.idempotency_key,
            "hold_id": str(self.hold_id),
            "status": self.outcome["status"],
            "amount_held": self.outcome.get("amount_held"),
            "reason": self.outcome.get("reason"),
            "onward": self.outcome.get("onward", []),
        }


# The HTTP status of a status inquiry's answer, by the status it reports (an outcome: 200).
INQUIRY_HTTP_STATUS = {"pending": 202, "unknown": 404}  # the others: 200
