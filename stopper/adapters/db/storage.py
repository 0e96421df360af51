"""`Storage`: what the storage of each aggregate works on."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from stopper.adapters.db.dialects import Database


class Storage:
    """The database (and its dialect), the topic of the stop requests new holds owe (a hold
    the trail adds is written with its stop request in the outbox), and the topic of the case
    events written with the changes that cause them."""

    def __init__(
        self, db: Database, stop_request_topic: str, case_events_topic: str = "stopper.case-events"
    ) -> None:
        self._db = db
        self._stop_request_topic = stop_request_topic
        self._case_events_topic = case_events_topic

    @property
    def engine(self) -> AsyncEngine:
        return self._db.engine
