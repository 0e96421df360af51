"""The callbacks the simulated institutions owe Stopper: signed as they leave, sent from a
bounded pool of senders, retried as a real sender would (`Simulation` owns one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp

from stopper.contracts.signing import signed_headers

if TYPE_CHECKING:
    from stopper.simulation.institutions import SimulatedInstitution

log = logging.getLogger(__name__)

# Callbacks an institution's side sends at once; the rest wait their turn, unsigned. A real
# sender has a bounded pool too, and a long queue on a client's pool is costly: with hundreds of
# callbacks queued for a Stopper that was down, the httpx pool used then (its time quadratic in
# the queue) took seconds of the event loop and the simulator stopped answering (the crash
# test's /stats read timed out).
CALLBACK_SENDERS = 32
# One callback delivery: each attempt may take 5 s; up to six attempts, 0.2 s apart doubling
# (0.2 to 3.2 s); an answer below 500 (even a refusal) ends it, as a real sender would.
CALLBACK_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
CALLBACK_ATTEMPTS = 6


class CallbackSender:
    """Sends what the institutions owe, in the background, between `start()` and `stop()`."""

    def __init__(self, secret_for: Callable[[str], str], stopper_url: str) -> None:
        self._secret_for = secret_for
        self._stopper_url = stopper_url.rstrip("/")
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None  # between start() and stop()
        self._senders = asyncio.Semaphore(CALLBACK_SENDERS)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CALLBACK_SENDERS),
            # Nothing from the environment (proxies, netrc): Stopper's address is configured.
            trust_env=False,
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def owe(self, sim: SimulatedInstitution, sending: Coroutine[Any, Any, None]) -> None:
        """A callback `sim` owes, sent by `sending` in the background (cancelled by stop())."""
        sim.counts.callbacks_owed += 1
        task = asyncio.create_task(sending)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(
        self,
        sim: SimulatedInstitution,
        body: bytes,
        route: str = "callbacks",
        content_type: str = "application/json",
    ) -> None:
        """Deliver one signed callback to Stopper's `/v1/institutions/{code}/{route}`."""
        assert self._session is not None, "callbacks leave between start() and stop()"
        code = sim.institution.code
        url = f"{self._stopper_url}/v1/institutions/{code}/{route}"
        for attempt in range(CALLBACK_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            try:
                async with self._senders:  # signed when it leaves, not while it waits
                    headers = signed_headers(
                        self._secret_for(sim.institution.callback_secret_ref),
                        int(time.time()),
                        secrets.token_hex(16),
                        body,
                    )
                    headers["content-type"] = content_type
                    async with self._session.post(
                        url, data=body, headers=headers, timeout=CALLBACK_TIMEOUT
                    ) as answer:
                        await answer.read()  # read to the end: the connection goes back to the pool
                        status = answer.status
            except (aiohttp.ClientError, OSError, TimeoutError):
                continue
            if status < 500:
                sim.counts.callbacks_sent += 1
                return
        sim.counts.callbacks_failed += 1
        log.warning("callback undeliverable", extra={"institution": code})
