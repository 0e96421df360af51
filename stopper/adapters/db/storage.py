"""`Storage`: what the storage of each aggregate works on."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from stopper.adapters.db.dialects import Database


class Storage:
    """The database (and its dialect), and the topic of the stop requests new holds owe: a
    hold the trail adds is written with its stop request in the outbox."""

    def __init__(self, db: Database, stop_request_topic: str) -> None:
        self._db = db
        self._stop_request_topic = stop_request_topic

    @property
    def engine(self) -> AsyncEngine:
        return self._db.engine
