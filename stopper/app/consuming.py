"""The consume loop every consumer shares: read a batch, handle it, then commit it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from stopper import metrics
from stopper.app.ports import Message, Subscription
from stopper.errors import BusError, BusRefused, BusUnavailable

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[Message]], Awaitable[object]]


async def consume(
    subscription: Subscription,
    handle: BatchHandler,
    *,
    name: str,
    stopping: asyncio.Event,
    retry_delay_s: float = 0.5,
    max_retry_delay_s: float = 15.0,
) -> None:
    """Run until `stopping` is set.

    Rules:
    - offsets are committed only after `handle` returned, i.e. after its database commit;
    - a batch whose handling fails is retried, the same batch, with growing delays, until it
      succeeds or the consumer stops: nothing is skipped, and since handlers are idempotent a
      partly done batch is harmless to redo;
    - a failed offset commit (e.g. the partition moved to another instance) is logged and left:
      the records come again and the handler recognises them;
    - a bus that refuses what it is asked (`BusRefused`: reading a topic we may not read, or a
      dead letter too large for the broker) ends this consumer, loudly: trying the same again
      cannot help, and looping on it would hide it. Nothing of that batch is committed, and
      the process stops being ready (its consumers are not all alive);
    - a batch's offsets are committed while the next batch is fetched (a broker round trip
      less between two batches), one commit at a time, in order.
    """
    committing: asyncio.Task[None] | None = None
    try:
        while not stopping.is_set():
            try:
                batch = await subscription.next_batch()
            except BusUnavailable:
                log.exception("consumer %s cannot read; retrying", name)
                await _sleep_unless_stopping(stopping, retry_delay_s)
                continue
            except BusRefused:
                log.critical(
                    "consumer %s stopped: the bus refuses to give it records", name, exc_info=True
                )
                return
            lag = subscription.lag()
            if lag is not None:
                metrics.CONSUMER_LAG.labels(consumer=name).set(lag)
            if not batch:
                continue
            if not await _handle_until_done(
                handle, batch, name, stopping, retry_delay_s, max_retry_delay_s
            ):
                return
            if committing is not None:
                await committing
            committing = asyncio.create_task(_commit(subscription, batch, name))
    finally:
        if committing is not None:
            await committing
        await subscription.close()


async def _commit(subscription: Subscription, batch: Sequence[Message], name: str) -> None:
    try:
        await subscription.commit(batch)
    except BusError:  # either kind: a commit after a rebalance is refused, and harmless too
        log.warning("consumer %s could not commit; the batch will come again", name)


async def _handle_until_done(
    handle: BatchHandler,
    batch: Sequence[Message],
    name: str,
    stopping: asyncio.Event,
    delay: float,
    max_delay: float,
) -> bool:
    while True:
        try:
            await handle(batch)
            return True
        except BusRefused:
            metrics.CONSUMER_ERRORS.labels(consumer=name).inc()
            log.critical(
                "consumer %s stopped: the bus refuses what a batch of %d needs sent",
                name,
                len(batch),
                exc_info=True,
            )
            return False
        except Exception:
            # Any failure: the batch is not done, so it is not committed; try it again.
            metrics.CONSUMER_ERRORS.labels(consumer=name).inc()
            log.exception("consumer %s failed a batch of %d; retrying", name, len(batch))
        if await _sleep_unless_stopping(stopping, delay):
            return False
        delay = min(delay * 2, max_delay)


async def _sleep_unless_stopping(stopping: asyncio.Event, delay: float) -> bool:
    """Sleep `delay` seconds; True if the consumer was asked to stop meanwhile."""
    try:
        await asyncio.wait_for(stopping.wait(), delay)
    except TimeoutError:
        return False
    return True
