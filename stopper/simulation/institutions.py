"""Simulated banks and payment institutions, served over HTTP (`stopper simulate`).

Each institution has a behaviour profile: answer latency, rates of timeouts, 5xx and malformed
answers, an outage window, accounts that do not exist, and whether it answers at once or later
through a signed callback. Its accounts are mule accounts (`mules.py`): a stop holds only what
is still there and reports where the rest went.

It honours idempotency keys: a stop is decided once per key, when the request first arrives, and
every repeat is answered from that record. An institution that answers by callback owes exactly
one callback per key, however often it is asked (a double callback is that one callback
delivered twice); it knows its outcome only once the callback is due. Until then a status
inquiry says `pending`; an institution that answers at once knows at once. It counts every
request received and every stop executed, so a test can prove that no funds were stopped twice,
and keeps a ledger of each hold's newest stop. It knows nothing but what the requests tell it;
a request that says its account is a known mule (`known_mule`, or `/MULE/` in a camt.056) is
counted (`mule_flagged` in `/stats`) and its count kept in the ledger (`known_mule_cases`).

A release lifts a hold's stop (and freeze), once per idempotency key, repeats answered from the
stored result; from then on a stop request of that hold (of the generation released or an
earlier one, a request still on its way) is not carried out. The ledger shows a released hold
as `released`, and every release is counted (`GET /stats`: releases, amount_released).

A status inquiry about a stop that no longer stands (released, or lifted on the institution's
own decision) says `lifted`: what a re-verification of a stopped hold finds. For tests and the
benchmark, an institution's ledger can be changed directly: stops put on record as executed
without a request (`seed_stops`: a benchmark's 300,000 stopped holds), and stops it lifts on
its own (`lift`: the ledger shows them `lifted`); both are counted (`seeded_stops`, `lifted`).

A supplement (a stop request with `supplement`: more asked on a stop already asked for) is a
request of its own key, decided the same way: the account's fate (not found, rejected) is the
same, and what more it holds is what the balance allows (`MuleWorld.stop_more`: partly, or
nothing, when the money moved on). The ledger's entry for the hold adds what each supplement of
the generation holds to the stop's `amount_held` and lists them (`supplements`).

Its routes are listed in `server.py`.

Requests and answers carry amounts as decimal strings (`stopper.contracts.amounts`); the
simulation itself counts in minor units, and `server.written` writes its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from stopper.contracts.institutions import (
    CallbackV1,
    FreezeRequestV1,
    ReleaseRequestV1,
    ReturnRequestV1,
    StopRequestV1,
)
from stopper.registry import Institution, Registry
from stopper.simulation.callbacks import CallbackSender
from stopper.simulation.mules import MuleWorld
from stopper.simulation.profiles import Behaviour
from stopper.simulation.records import COUNTED, Counts, StopRecord

log = logging.getLogger(__name__)


class SimulatedInstitution:
    def __init__(
        self, institution: Institution, behaviour: Behaviour, seed: int, mules: MuleWorld
    ) -> None:
        self.institution = institution
        self._mules = mules
        self.behaviour = behaviour
        self.counts = Counts()
        self._rng = random.Random(f"{seed}:{institution.code}")
        self._seed = seed
        self._stops: dict[str, StopRecord] = {}  # by idempotency key
        self._newest_by_hold: dict[UUID, StopRecord] = {}  # the newest generation's
        # Stops executed per hold and generation: two for one generation is a double stop.
        self._executed_by_hold: Counter[tuple[UUID, int]] = Counter()
        # Supplements by hold and generation: their records, by number.
        self._supplements: dict[tuple[UUID, int], dict[int, StopRecord]] = {}
        self._freezes: dict[str, dict[str, Any]] = {}  # by idempotency key
        self._frozen_by_hold: dict[UUID, int] = {}
        self._returns: dict[str, dict[str, Any]] = {}  # by idempotency key
        self._returned_holds: set[UUID] = set()
        self._releases: dict[str, dict[str, Any]] = {}  # by idempotency key
        # Released holds: the newest generation released, and the key it was released with.
        self._released: dict[UUID, tuple[int, str]] = {}
        # Stops lifted on the institution's own decision: the generation lifted, by hold.
        self._lifted: dict[UUID, int] = {}

    def down(self, elapsed_s: float) -> bool:
        outage = self.behaviour.outage
        return outage is not None and outage[0] <= elapsed_s < outage[1]

    def roll(self, rate: float) -> bool:
        return self._rng.random() < rate

    def latency_s(self) -> float:
        b = self.behaviour
        if b.latency_median_ms <= 0:
            return 0.0
        return self._rng.lognormvariate(0, b.latency_sigma) * b.latency_median_ms / 1000

    def callback_delay_s(self) -> float:
        return self.behaviour.callback_delay_ms / 1000 * (0.5 + self._rng.random())

    def stop_record(self, idempotency_key: str) -> StopRecord | None:
        return self._stops.get(idempotency_key)

    def execute(self, request: StopRequestV1, now: float) -> StopRecord:
        """The stop itself, decided at `now` once per idempotency key; repeats get the first
        record. An institution that answers by callback knows the outcome only once its
        callback is due, one callback delay later."""
        known = self._stops.get(request.idempotency_key)
        if known is not None:
            return known
        account = request.account_number
        fate = self._fate(account)
        released = self._released.get(request.hold_id)
        if released is not None and request.generation <= released[0]:
            # The request was on its way when the hold was released: it is not carried out.
            result: dict[str, Any] = {"status": "rejected", "reason": "the hold was released"}
            self.counts.stops_not_carried_out += 1
        elif fate < self.behaviour.missing_account_rate:
            result = {"status": "not_found"}
        elif fate < self.behaviour.missing_account_rate + self.behaviour.reject_rate:
            result = {"status": "rejected", "reason": "account under another authority's order"}
        elif request.supplement is not None:
            result = self._hold_more(request)
        else:
            held, onward = self._mules.stop(
                self.institution.code, account, request.amount, request.layer, datetime.now(UTC)
            )
            result = {"status": "stopped", "amount_held": held, "onward": onward}
            self.counts.stops_executed += 1
            executed = (request.hold_id, request.generation)
            self._executed_by_hold[executed] += 1
            if self._executed_by_hold[executed] > 1:
                self.counts.double_stops += 1
        known_at = now + self.callback_delay_s() if self.behaviour.answers_by_callback else now
        mule = request.known_mule.cases if request.known_mule is not None else None
        if mule is not None:
            self.counts.mule_flagged += 1
        record = StopRecord(
            request.idempotency_key, request.hold_id, request.generation, result, known_at, mule
        )
        self._stops[request.idempotency_key] = record
        if request.supplement is not None:
            self._supplements.setdefault((request.hold_id, request.generation), {})[
                request.supplement.number
            ] = record
        else:
            newest = self._newest_by_hold.get(request.hold_id)
            if newest is None or request.generation > newest.generation:
                self._newest_by_hold[request.hold_id] = record
        self.counts.answers[result["status"]] += 1
        return record

    def _hold_more(self, request: StopRequestV1) -> dict[str, Any]:
        """A supplement carried out: what more the balance allows is held beside the stop."""
        held, onward = self._mules.stop_more(
            self.institution.code,
            request.account_number,
            request.amount,
            request.layer,
            datetime.now(UTC),
        )
        self.counts.supplements_executed += 1
        return {"status": "stopped", "amount_held": held, "onward": onward}

    def status(self, idempotency_key: str, now: float) -> dict[str, Any]:
        """What it can say at `now` of the stop request with this key (a `StopStatusV1`): a
        stop carried out and since released or lifted says `lifted`."""
        record = self._stops.get(idempotency_key)
        if record is None:
            return {"idempotency_key": idempotency_key, "status": "unknown"}
        status = record.status(now)
        if status["status"] == "stopped" and self._no_longer_stands(record):
            return {
                "idempotency_key": idempotency_key,
                "hold_id": status["hold_id"],
                "status": "lifted",
            }
        return status

    def _no_longer_stands(self, record: StopRecord) -> bool:
        released = self._released.get(record.hold_id)
        lifted = self._lifted.get(record.hold_id)
        return (released is not None and record.generation <= released[0]) or (
            lifted is not None and record.generation <= lifted
        )

    def seed_stops(self, stops: list[tuple[UUID, int, int]]) -> None:
        """Put stops on record as executed, without a request: (hold, generation, amount held)
        each, under the key Stopper's request of that generation has. For a benchmark's
        hundreds of thousands of stopped holds: every seeded stop holds the amount it names."""
        for hold_id, generation, amount in stops:
            key = f"stopper-{hold_id}-{generation}"
            outcome = {"status": "stopped", "amount_held": amount, "onward": []}
            record = StopRecord(key, hold_id, generation, outcome, 0.0)
            self._stops[key] = record
            newest = self._newest_by_hold.get(hold_id)
            if newest is None or generation > newest.generation:
                self._newest_by_hold[hold_id] = record
        self.counts.seeded_stops += len(stops)

    def lift(self, idempotency_keys: list[str]) -> int:
        """Lift, on the institution's own decision, the stops these keys made (a stop it has
        not carried out, or one released, is left alone); how many it lifted."""
        lifted = 0
        for key in idempotency_keys:
            record = self._stops.get(key)
            if record is None or record.outcome["status"] != "stopped":
                continue
            if self._no_longer_stands(record):
                continue
            self._lifted[record.hold_id] = max(
                record.generation, self._lifted.get(record.hold_id, -1)
            )
            lifted += 1
        self.counts.lifted += lifted
        return lifted

    def ledger(self, now: float) -> list[dict[str, Any]]:
        """Its record of each hold's newest generation, as far as it knows at `now`: the stop,
        and what its supplements hold added to its `amount_held` (those it knows the outcome
        of), each listed in `supplements`; a released hold: `released`, the amount its stop held
        when released."""
        entries = []
        for record in self._newest_by_hold.values():
            if record.hold_id in self._released:
                continue
            known = record.known(now)
            held = record.outcome.get("amount_held") if known else None
            if known and record.outcome["status"] == "stopped" and self._no_longer_stands(record):
                entries.append(
                    self._entry(record.hold_id, record.generation, record.idempotency_key, "lifted")
                )
                continue
            supplements = []
            by_number = self._supplements.get((record.hold_id, record.generation), {})
            for number, supplement in sorted(by_number.items()):
                done = supplement.known(now)
                more = supplement.outcome.get("amount_held") if done else None
                supplements.append(
                    {
                        "number": number,
                        "idempotency_key": supplement.idempotency_key,
                        "status": supplement.outcome["status"] if done else "pending",
                        "amount_held": more,
                    }
                )
                if held is not None and more is not None:
                    held += more
            status = record.outcome["status"] if known else "pending"
            entry = self._entry(
                record.hold_id, record.generation, record.idempotency_key, status, held
            )
            entry |= {"supplements": supplements, "known_mule_cases": record.known_mule_cases}
            entries.append(entry)
        for hold_id, (generation, key) in self._released.items():
            released = self._releases[key].get("amount_released")
            entries.append(self._entry(hold_id, generation, key, "released", released))
        return entries

    def _entry(
        self,
        hold_id: UUID,
        generation: int,
        key: str,
        status: str,
        amount_held: int | None = None,
    ) -> dict[str, Any]:
        """A ledger entry: the hold's generation, by the key of its stop (or its release)."""
        return {
            "hold_id": str(hold_id),
            "institution_code": self.institution.code,
            "generation": generation,
            "idempotency_key": key,
            "status": status,
            "amount_held": amount_held,
        }

    def held(self, hold_id: UUID) -> int | None:
        """What its newest stop of the hold holds, supplements included (None: no stop, or
        one released or lifted)."""
        record = self._newest_by_hold.get(hold_id)
        if (
            record is None
            or record.outcome["status"] != "stopped"
            or hold_id in self._released
            or self._no_longer_stands(record)
        ):
            return None
        supplements = self._supplements.get((hold_id, record.generation), {}).values()
        return int(record.outcome["amount_held"]) + sum(
            int(s.outcome.get("amount_held") or 0) for s in supplements
        )

    def freeze(self, request: FreezeRequestV1) -> dict[str, Any]:
        """A formal freeze of what the stop holds, once per idempotency key."""
        known = self._freezes.get(request.idempotency_key)
        if known is not None:
            return known
        held = self.held(request.hold_id)
        if held is None:
            result: dict[str, Any] = {"status": "rejected", "reason": "no stop in force here"}
        else:
            result = {"status": "frozen", "amount_frozen": min(held, request.amount)}
            self._frozen_by_hold[request.hold_id] = result["amount_frozen"]
            self.counts.freezes += 1
        self._freezes[request.idempotency_key] = result
        return result

    def pay_back(self, request: ReturnRequestV1) -> dict[str, Any]:
        """Return frozen funds to the victims' accounts, once per idempotency key; a second
        return of the same hold's funds is counted as a double."""
        known = self._returns.get(request.idempotency_key)
        if known is not None:
            return known
        frozen = self._frozen_by_hold.get(request.hold_id)
        if frozen is None:
            result: dict[str, Any] = {"status": "rejected", "reason": "no freeze in force here"}
        elif sum(p.amount for p in request.payouts) != request.amount:
            result = {"status": "rejected", "reason": "payouts do not add up to the amount"}
        else:
            returned = min(frozen, request.amount)
            result = {"status": "returned", "amount_returned": returned}
            self.counts.returns += 1
            self.counts.amount_returned += returned
            if request.hold_id in self._returned_holds:
                self.counts.double_returns += 1
            self._returned_holds.add(request.hold_id)
        self._returns[request.idempotency_key] = result
        return result

    def release(self, request: ReleaseRequestV1) -> dict[str, Any]:
        """Lift the hold's stop (and freeze), once per idempotency key: what it held is free
        again, and a stop request of the hold still to arrive is not carried out."""
        known = self._releases.get(request.idempotency_key)
        if known is not None:
            return known
        held = self.held(request.hold_id) or 0
        frozen = self._frozen_by_hold.pop(request.hold_id, None)
        released = held if frozen is None else frozen
        result = {"status": "released", "amount_released": released}
        if request.hold_id in self._released:
            self.counts.double_releases += 1
        self._released[request.hold_id] = (request.generation, request.idempotency_key)
        self.counts.releases += 1
        self.counts.amount_released += released
        self._releases[request.idempotency_key] = result
        return result

    def _fate(self, account: str) -> float:
        digest = hashlib.sha256(f"{self._seed}:{self.institution.code}:{account}".encode())
        return int.from_bytes(digest.digest()[:8], "big") / 2**64


class Simulation:
    """All simulated institutions, plus the callbacks they owe Stopper."""

    def __init__(
        self,
        registry: Registry,
        behaviours: dict[str, Behaviour],
        *,
        secret_for: Callable[[str], str],
        stopper_url: str,
        seed: int = 7,
    ) -> None:
        any_behaviour = next(iter(behaviours.values()))
        self.mules = MuleWorld(
            list(registry),
            seed=seed,
            move_on_rate=any_behaviour.move_on_rate,
            cash_out_rate=any_behaviour.cash_out_rate,
        )
        self.institutions = {
            code: SimulatedInstitution(registry[code], behaviours[code], seed, self.mules)
            for code in registry
        }
        self.callbacks = CallbackSender(secret_for, stopper_url)
        self._started = time.monotonic()
        self._closing = asyncio.Event()

    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    async def start(self) -> None:
        self._started = time.monotonic()
        await self.callbacks.start()

    def close_requests(self) -> None:
        """Let go of requests held open on purpose (simulated timeouts), before shutting down."""
        self._closing.set()

    async def hang(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def stop(self) -> None:
        await self.callbacks.stop()

    def executed_stops(self) -> Counter[tuple[UUID, int]]:
        """How many times each hold's funds were stopped, per generation of the stop."""
        total: Counter[tuple[UUID, int]] = Counter()
        for sim in self.institutions.values():
            total.update(sim._executed_by_hold)
        return total

    def ledger(self) -> list[dict[str, Any]]:
        """Every institution's record of each hold's newest generation (`GET /ledger`)."""
        now = time.monotonic()
        return [entry for sim in self.institutions.values() for entry in sim.ledger(now)]

    def stats(self) -> dict[str, Any]:
        per: dict[str, dict[str, Any]] = {}
        totals: Counter[str] = Counter()
        for code, sim in self.institutions.items():
            counts = {
                "requests": sim.counts.stop_requests,  # the older name, still read by others
                **{name: getattr(sim.counts, name) for name in COUNTED},
            }
            totals.update(counts)
            per[code] = {**counts, "answers": dict(sim.counts.answers)}
        return {"totals": dict(totals), "institutions": per}

    def execute(self, sim: SimulatedInstitution, request: StopRequestV1) -> StopRecord:
        """A stop request `sim` takes on: decided once per idempotency key. At an institution
        that answers by callback, the first request of a key owes its callback; a repeat owes
        nothing more."""
        known = sim.stop_record(request.idempotency_key)
        if known is not None:
            return known
        record = sim.execute(request, time.monotonic())
        if sim.behaviour.answers_by_callback:
            self._owe_callback(sim, record)
        return record

    def _owe_callback(self, sim: SimulatedInstitution, record: StopRecord) -> None:
        self.callbacks.owe(sim, self._send_callback(sim, record))

    async def _send_callback(self, sim: SimulatedInstitution, record: StopRecord) -> None:
        await asyncio.sleep(max(0.0, record.known_at - time.monotonic()))
        outcome = record.outcome
        body = (
            CallbackV1(
                hold_id=record.hold_id,
                idempotency_key=record.idempotency_key,
                status=outcome["status"],
                amount_held=outcome.get("amount_held"),
                reason=outcome.get("reason"),
                answered_at=datetime.now(UTC),
                onward=outcome.get("onward", []),
            )
            .model_dump_json()
            .encode()
        )
        copies = 2 if sim.roll(sim.behaviour.double_callback_rate) else 1
        for _ in range(copies):
            await self.callbacks.deliver(sim, body)
