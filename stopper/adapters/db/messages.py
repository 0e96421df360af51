"""Messages of many holds (ISO 20022): the payments each hold's stop request names, and which
holds each message Stopper sent carried (`MessageStore`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Select, and_, literal, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from stopper.adapters.db.dialects import Database
from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import (
    AccountRow,
    CaseRow,
    HoldRow,
    Iso20022MessageRow,
    TrailEdgeRow,
    TransferRow,
)
from stopper.adapters.db.storage import Storage
from stopper.app.message_ports import PaymentIn, SentMessage, StopGrounds
from stopper.domain.messages import OnwardKind


class MessageStorage(Storage):
    async def stop_grounds(self, hold_ids: Sequence[UUID]) -> dict[UUID, StopGrounds]:
        """`_grounds`, on a connection of its own."""
        with store_errors():
            async with self._db.read() as connection:
                return await self._grounds(connection, hold_ids)

    async def record_messages(self, messages: Sequence[SentMessage]) -> dict[UUID, StopGrounds]:
        """In one transaction: remember which holds each message carries (a hold twice in one
        message, a hedge of it or its first request and a supplement in the same batch, is one
        row), and read the grounds of them all (`_grounds`)."""
        rows = [
            {
                "message_id": message.message_id,
                "hold_id": hold_id,
                "message_type": message.message_type,
                "institution_code": message.institution_code,
                "idempotency_key": key,
                "sent_at": message.sent_at,
            }
            for message in messages
            for hold_id, key in dict(message.holds).items()
        ]
        with store_errors():
            async with self._db.begin() as connection:
                await self._db.insert_rows(connection, Iso20022MessageRow, rows)
                held = [hold_id for message in messages for hold_id, _ in message.holds]
                return await self._grounds(connection, list(dict.fromkeys(held)))

    @functools.cached_property
    def _grounds_query(self) -> Select[Any]:
        # Built once: building it (five aliases, a union) for every message cost more than
        # running it when messages carry a hold or two.
        return grounds_query(self._db)

    async def _grounds(
        self, connection: AsyncConnection, hold_ids: Sequence[UUID]
    ) -> dict[UUID, StopGrounds]:
        """Each hold's case agency and the payments into its account, on `connection`: for
        first-level holds,
        the victims' transfers (from the report); for the trail's holds, the onward transfers
        that reached the account (as the institution of the account they left reported them).
        Oldest first; one statement. Transfers and trail edges are reached through their
        holds' case (the column they are indexed by: by hold alone, every batch would read them
        all)."""
        if not hold_ids:
            return {}
        found: dict[UUID, tuple[str, list[PaymentIn]]] = {}
        for r in await connection.execute(self._grounds_query, {"ids": list(hold_ids)}):
            _, paid_in = found.setdefault(r.hold, (r.agency_code, []))
            if r.hold_id is not None:
                paid_in.append(
                    PaymentIn(
                        reference=r.reference,
                        amount=r.amount,
                        currency=r.currency,
                        settled_at=r.settled_at,
                        debtor_institution=r.debtor_institution,
                        debtor_account=r.debtor_account,
                        creditor_institution=r.creditor_institution,
                        creditor_account=r.creditor_account,
                    )
                )
        return {
            hold_id: StopGrounds(hold_id, agency, tuple(paid_in))
            for hold_id, (agency, paid_in) in found.items()
        }

    async def holds_of_message(self, message_id: str) -> list[tuple[UUID, str]]:
        """The holds a message Stopper sent carried, with the keys they were sent with (an
        integrator's question about a message id)."""
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(Iso20022MessageRow.hold_id, Iso20022MessageRow.idempotency_key)
                    .where(Iso20022MessageRow.message_id == message_id)
                    .order_by(Iso20022MessageRow.idempotency_key)
                )
                return [(r.hold_id, r.idempotency_key) for r in rows]


def grounds_query(db: Database) -> Select[Any]:
    """`MessageStorage._grounds`' one statement, the holds' ids bound when it runs (`ids`)."""
    asked = aliased(HoldRow)
    reached = aliased(HoldRow)
    receiving = aliased(AccountRow)
    source_hold = aliased(HoldRow)
    source_account = aliased(AccountRow)
    victims = (
        _payments(
            TransferRow.hold_id,
            TransferRow.reference,
            TransferRow.amount,
            TransferRow.currency,
            TransferRow.transferred_at,
            TransferRow.victim_institution_code,
            TransferRow.victim_account_number,
            receiving.institution_code,
            receiving.account_number,
        )
        .join(
            asked,
            and_(asked.case_id == TransferRow.case_id, asked.id == TransferRow.hold_id),
        )
        .join(receiving, receiving.id == TransferRow.receiving_account_id)
        .where(db.among_ids(asked.id))
    )
    onward = (
        _payments(
            TrailEdgeRow.to_hold_id,
            null(),
            TrailEdgeRow.amount,
            source_hold.currency,
            TrailEdgeRow.transferred_at,
            source_hold.institution_code,
            source_account.account_number,
            TrailEdgeRow.institution_code,
            TrailEdgeRow.account_number,
        )
        .join(
            reached,
            and_(reached.case_id == TrailEdgeRow.case_id, reached.id == TrailEdgeRow.to_hold_id),
        )
        .join(source_hold, source_hold.id == TrailEdgeRow.from_hold_id)
        .join(source_account, source_account.id == source_hold.account_id)
        .where(
            db.among_ids(reached.id),
            TrailEdgeRow.kind == literal(OnwardKind.TRANSFER.value),
        )
    )
    payments = union_all(victims, onward).subquery()
    return (
        select(HoldRow.id.label("hold"), CaseRow.agency_code, payments)
        .join(CaseRow, CaseRow.id == HoldRow.case_id)
        .outerjoin(payments, payments.c.hold_id == HoldRow.id)
        .where(db.among_ids(HoldRow.id))
        .order_by(HoldRow.id, payments.c.settled_at)
    )


# A payment into a hold's account, as both branches of the grounds' union give it.
_PAYMENT = (
    "hold_id",
    "reference",
    "amount",
    "currency",
    "settled_at",
    "debtor_institution",
    "debtor_account",
    "creditor_institution",
    "creditor_account",
)


def _payments(*columns: Any) -> Select[Any]:
    """A select of payments: `columns` in `_PAYMENT`'s order, each labelled with its name."""
    return select(*(c.label(name) for c, name in zip(columns, _PAYMENT, strict=True)))
