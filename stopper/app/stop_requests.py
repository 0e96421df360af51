"""The stop-request consumer (holds born after intake: the money trail, re-applied stops,
supplements, relayed from the outbox to `stopper.stop-requests`) and the outbox relay's
publish: what reads and writes the bus around the `Dispatcher`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from uuid import UUID

from pydantic import ValidationError

from stopper.app.dispatch import Dispatcher
from stopper.app.intake import publish_dead_letter
from stopper.app.ports import Message, OutboxMessage, Publisher
from stopper.contracts.institutions import StopRequestV1

log = logging.getLogger(__name__)


class StopRequestConsumer:
    """Reads stop requests (relayed from the outbox) and attempts each, concurrently."""

    def __init__(self, dispatcher: Dispatcher, publisher: Publisher, dead_letter_topic: str):
        self._dispatcher = dispatcher
        self._publisher = publisher
        self._dead_letter_topic = dead_letter_topic

    async def handle_batch(self, batch: Sequence[Message]) -> None:
        hold_ids: list[UUID] = []
        supplements: list[tuple[UUID, int]] = []
        institutions: set[str] = set()
        for message in batch:
            try:
                request = StopRequestV1.model_validate_json(message.value)
                if request.supplement is None:
                    hold_ids.append(request.hold_id)
                else:
                    supplements.append((request.hold_id, request.supplement.number))
                institutions.add(request.institution_code)
            except ValidationError as e:
                reason = f"not a stop request: {e.errors()[0]['msg']}"
                origin = await publish_dead_letter(
                    self._publisher, self._dead_letter_topic, message, reason
                )
                log.warning(
                    "stop request dead-lettered", extra={"reason": reason, "origin": origin}
                )
        await self._dispatcher.wait_for_room(institutions)
        # One hold may appear twice in a batch (redelivery); the claim lets only one proceed.
        # The batch is done once every claim is committed: from then on the attempt is owed by
        # this process, or by the sweeper once its lease lapses.
        claims = await asyncio.gather(*(self._dispatcher.claim(h, first=True) for h in hold_ids))
        for claim in await self._dispatcher.with_mule_flags(claims):
            self._dispatcher.start(claim)
        if supplements:
            await self._dispatcher.supplements.claim_requested(supplements)


async def publish_outbox(publisher: Publisher, messages: Sequence[OutboxMessage]) -> None:
    """Hand outbox rows to the bus; returns once the bus has all of them."""
    await asyncio.gather(
        *(
            publisher.publish(m.topic, m.key, json.dumps(m.payload).encode(), dict(m.headers))
            for m in messages
        )
    )
