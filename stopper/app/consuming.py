"""The consume loop every consumer shares: read a batch, handle it, then commit it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from stopper import metrics
from stopper.app.background import REFUSED_RETRY_S, RefusedLoops
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
    refusals: RefusedLoops | None = None,
    refused_retry_s: float = REFUSED_RETRY_S,
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
      dead letter too large for the broker) is asked again only every `refused_retry_s`,
      logged critical each time: at once cannot help, and never again would leave the
      consumer dead after the cause is fixed. Nothing of that batch is skipped or committed,
      and the consumer counts in `refusals` (the process is not ready) until it gets on;
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
                    "consumer %s: the bus refuses to give it records; asking again in %.0fs",
                    name,
                    refused_retry_s,
                    exc_info=True,
                )
                if refusals is not None:
                    refusals.refused(name)
                await _sleep_unless_stopping(stopping, refused_retry_s)
                continue
            lag = subscription.lag()
            if lag is not None:
                metrics.CONSUMER_LAG.labels(consumer=name).set(lag)
            if not batch:
                continue
            if not await _handle_until_done(
                handle,
                batch,
                name,
                stopping,
                (retry_delay_s, max_retry_delay_s, refused_retry_s),
                refusals,
            ):
                return
            if refusals is not None:
                refusals.cleared(name)
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
    delays: tuple[float, float, float],  # first retry, longest retry, after a refusal
    refusals: RefusedLoops | None = None,
) -> bool:
    delay, max_delay, refused_delay = delays
    while True:
        try:
            await handle(batch)
            return True
        except BusRefused:
            # The same batch would be refused again at once: ask again much later.
            metrics.CONSUMER_ERRORS.labels(consumer=name).inc()
            log.critical(
                "consumer %s: the bus refuses what a batch of %d needs sent; again in %.0fs",
                name,
                len(batch),
                refused_delay,
                exc_info=True,
            )
            if refusals is not None:
                refusals.refused(name)
            if await _sleep_unless_stopping(stopping, refused_delay):
                return False
            continue
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
