"""Pruning the outbox's published rows and the callbacks' old nonces (`stopper.app.retention`
says what is kept how long). Each delete is bounded: the outbox's by its oldest rows in id order
(its primary key: a step reads at most `limit` of them, however large the table, and keeps any
still unpublished), the nonces' by their time of receipt (an index)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, tuple_

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import CallbackNonceRow, OutboxRow
from stopper.adapters.db.storage import Storage


class RetentionStorage(Storage):
    async def prune_outbox(self, written_before: datetime, limit: int) -> int:
        oldest = select(OutboxRow.id).order_by(OutboxRow.id).limit(limit).scalar_subquery()
        with store_errors():
            async with self._db.begin() as connection:
                result = await connection.execute(
                    delete(OutboxRow).where(
                        OutboxRow.id.in_(oldest),
                        OutboxRow.published_at.is_not(None),
                        OutboxRow.created_at < written_before,
                    )
                )
        return int(result.rowcount or 0)

    async def prune_nonces(self, received_before: datetime, limit: int) -> int:
        old = (
            select(CallbackNonceRow.institution_code, CallbackNonceRow.nonce)
            .where(CallbackNonceRow.received_at < received_before)
            .order_by(CallbackNonceRow.received_at)
            .limit(limit)
        )
        with store_errors():
            async with self._db.begin() as connection:
                result = await connection.execute(
                    delete(CallbackNonceRow).where(
                        tuple_(CallbackNonceRow.institution_code, CallbackNonceRow.nonce).in_(old)
                    )
                )
        return int(result.rowcount or 0)
