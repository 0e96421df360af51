"""`RequestBatcher`: concurrent calls to one institution, sent together as one request.

An institution that takes many holds per message (ISO 20022: one camt.056 with a `TxInf` per
hold) is asked once for the holds due at the same moment instead of once per hold. The port
stays one call per hold (`InstitutionAdapter.request_stop`); the batcher gathers the calls
behind it. Rules:

- latency first: a call to an institution with no request of this batcher in flight leaves at
  once, with the calls made in the same turn of the event loop (a consumer's batch of claims);
- while requests are in flight, calls wait for others to join them, at most `window_s` from the
  oldest waiting call; a batch leaves as soon as it has `max_batch` calls;
- at most `max_in_flight` requests at once: a due batch waits for one to finish and takes the
  calls that came meanwhile, up to `max_batch` (the institution's `concurrency` stays a bound on
  requests, whatever the number of holds); calls made `first` (stop requests for a known mule
  account) wait ahead of the others, so the next batch takes them first;
- each call is bounded by `timeout_s` from when its request leaves: `send` says when
  (`leaving`), after what it does first (Stopper's own part: recording the message), so
  Stopper's queue and store are not counted as the institution's time; `wait_s`, if given,
  bounds the wait until then (`TimeoutError` either way); a call that gives up (timed out or
  cancelled) before its batch is taken is taken out of it;
- `send` returns one outcome per call, in order: a result, or the exception that call raises;
  if `send` itself raises, every call of the batch raises it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


@dataclass(eq=False, slots=True)
class _Call(Generic[_Item, _Result]):
    item: _Item
    first: bool = False
    done: asyncio.Future[_Result] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    left: asyncio.Event = field(default_factory=asyncio.Event)  # its request is under way


class RequestBatcher(Generic[_Item, _Result]):
    def __init__(
        self,
        send: Callable[
            [Sequence[_Item], Callable[[], None]], Awaitable[Sequence[_Result | Exception]]
        ],
        *,
        max_batch: int,
        window_s: float,
        max_in_flight: int,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1 or window_s < 0:
            raise ValueError("max_batch and max_in_flight must be positive, window_s not negative")
        self._send = send
        self._max_batch = max_batch
        self._window_s = window_s
        self._max_in_flight = max_in_flight
        self._waiting: list[_Call[_Item, _Result]] = []
        self._timer: asyncio.Handle | None = None  # when the oldest waiting call is due
        self._expired = False  # the oldest waiting call's window has passed
        self._in_flight = 0
        self._sends: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        """Requests under way."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Calls not sent yet."""
        return len(self._waiting)

    async def call(
        self, item: _Item, timeout_s: float, wait_s: float | None = None, *, first: bool = False
    ) -> _Result:
        """`item`'s outcome, once the request carrying it is answered: `TimeoutError` if that
        request has no answer `timeout_s` after it left, or (with `wait_s`) has not left
        `wait_s` after the call. `first`: ahead of the waiting calls made without it."""
        call: _Call[_Item, _Result] = _Call(item, first)
        if first:
            ahead = next((i for i, c in enumerate(self._waiting) if not c.first), None)
            self._waiting.insert(len(self._waiting) if ahead is None else ahead, call)
        else:
            self._waiting.append(call)
        if self._timer is None and not self._expired:
            loop = asyncio.get_running_loop()
            self._timer = (
                loop.call_soon(self._window_passed)
                if self._in_flight == 0
                else loop.call_later(self._window_s, self._window_passed)
            )
        self._send_due()
        try:
            async with asyncio.timeout(wait_s):
                await call.left.wait()
            async with asyncio.timeout(timeout_s):
                # Shielded: one caller giving up never cancels the request of the others.
                return await asyncio.shield(call.done)
        except BaseException:
            self._withdraw(call)
            raise

    async def close(self) -> None:
        """Wait for the requests under way; calls still waiting are cancelled."""
        for call in self._waiting:
            call.done.cancel()
            call.left.set()
        self._waiting.clear()
        self._reset_window()
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)

    def _window_passed(self) -> None:
        self._timer = None
        self._expired = True
        self._send_due()

    def _send_due(self) -> None:
        while (
            self._waiting
            and self._in_flight < self._max_in_flight
            and (self._expired or len(self._waiting) >= self._max_batch)
        ):
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            self._in_flight += 1
            task = asyncio.create_task(self._request(batch), name="batched request")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
        if not self._waiting:
            self._reset_window()

    def _reset_window(self) -> None:
        self._expired = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _withdraw(self, call: _Call[_Item, _Result]) -> None:
        """A caller gave up: out of its batch if that was not taken yet, its outcome dropped."""
        if not call.done.done():
            call.done.cancel()
        if call in self._waiting:
            self._waiting.remove(call)
            if not self._waiting:
                self._reset_window()

    async def _request(self, batch: list[_Call[_Item, _Result]]) -> None:
        def leaving() -> None:
            for call in batch:
                call.left.set()

        try:
            outcomes = await self._send([call.item for call in batch], leaving)
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except Exception as e:
            for call in batch:
                if not call.done.done():
                    call.done.set_exception(e)
        else:
            for call, outcome in zip(batch, outcomes, strict=True):
                if call.done.done():
                    continue  # its caller gave up
                if isinstance(outcome, Exception):
                    call.done.set_exception(outcome)
                else:
                    call.done.set_result(outcome)
        finally:
            leaving()  # an outcome before the request left (its preparation failed)
            self._in_flight -= 1
            self._send_due()
