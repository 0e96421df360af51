"""Mule accounts of the simulated world: what each keeps, and where the rest went.

When a stop reaches a mule account, part of the money may still be there (it is held) and the
rest has moved on: fanned out to one to three accounts (often at another institution, bank or
payment institution), merged into accounts other mules also feed, or taken out as cash. Deeper
layers move money on less often. Plans are drawn once per account from a seed, so a run can be
repeated; tests can plant an exact chain.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class Destination:
    share: float  # of the money that moved on
    institution_code: str | None = None  # None: cash withdrawal
    account_number: str | None = None


@dataclass(frozen=True, slots=True)
class MulePlan:
    keep_share: float  # of what arrived, still there when the stop comes
    destinations: tuple[Destination, ...] = ()


class MuleWorld:
    def __init__(
        self,
        institution_codes: list[str],
        *,
        seed: int,
        move_on_rate: float,
        cash_out_rate: float,
        pool_size: int = 300,
    ) -> None:
        self._seed = seed
        self._move_on_rate = move_on_rate
        self._cash_out_rate = cash_out_rate
        rng = random.Random(f"{seed}:pool")
        # Accounts many mules feed: this is where the money trail merges.
        self._pool = [
            (
                rng.choice(institution_codes),
                "63" + "".join(rng.choice("0123456789") for _ in range(14)),
            )
            for _ in range(pool_size)
        ]
        self._plans: dict[tuple[str, str], MulePlan] = {}
        self._remaining: dict[tuple[str, str], int] = {}

    def plant(self, institution_code: str, account_number: str, plan: MulePlan) -> None:
        """Fix an account's plan (tests and scripted scenarios)."""
        self._plans[(institution_code, account_number)] = plan

    def stop(
        self,
        institution_code: str,
        account_number: str,
        amount: int,
        layer: int,
        now: datetime,
    ) -> tuple[int, list[dict[str, Any]]]:
        """A stop of `amount` on the account: what it holds, and where the rest went."""
        key = (institution_code, account_number)
        plan = self._plan(key, layer)
        remaining = self._remaining.setdefault(key, round(amount * plan.keep_share))
        held = min(remaining, amount)
        self._remaining[key] = remaining - held
        return held, self._moved_on(key, plan, amount - held, now)

    def stop_more(
        self,
        institution_code: str,
        account_number: str,
        amount: int,
        layer: int,
        now: datetime,
    ) -> tuple[int, list[dict[str, Any]]]:
        """A supplement: `amount` more reached the account by another path, and is asked for on
        top of its stop. The account kept its plan's share of that money, and what the first
        stop left of its own is there too; what the balance allows is held (partly, otherwise),
        the rest moved on the account's way."""
        key = (institution_code, account_number)
        plan = self._plan(key, layer)
        share = round(amount * plan.keep_share)
        left = self._remaining.get(key, 0)  # none before the first stop arrives
        taken = min(left, amount - share)
        if key in self._remaining:
            self._remaining[key] = left - taken
        held = share + taken
        return held, self._moved_on(key, plan, amount - held, now)

    def _plan(self, key: tuple[str, str], layer: int) -> MulePlan:
        plan = self._plans.get(key) or self._draw(key, layer)
        self._plans[key] = plan
        return plan

    def _moved_on(
        self, key: tuple[str, str], plan: MulePlan, moved: int, now: datetime
    ) -> list[dict[str, Any]]:
        """Where `moved` went, by the account's plan (nothing when it has nowhere to go)."""
        if moved <= 0 or not plan.destinations:
            return []
        onward: list[dict[str, Any]] = []
        left = moved
        rng = self._rng(key, "times")
        for index, destination in enumerate(plan.destinations):
            last = index == len(plan.destinations) - 1
            part = left if last else min(left, round(moved * destination.share))
            left -= part
            if part <= 0:
                continue
            when = (now - timedelta(minutes=rng.randint(2, 90))).isoformat()
            if destination.institution_code is None:
                onward.append({"kind": "cash_withdrawal", "amount": part, "transferred_at": when})
            else:
                onward.append(
                    {
                        "kind": "transfer",
                        "institution_code": destination.institution_code,
                        "account_number": destination.account_number,
                        "amount": part,
                        "transferred_at": when,
                    }
                )
        return onward

    def _draw(self, key: tuple[str, str], layer: int) -> MulePlan:
        rng = self._rng(key, "plan")
        if rng.random() >= self._move_on_rate * 0.6 ** (layer - 1):
            return MulePlan(keep_share=1.0)
        keep = rng.choice([0.0, 0.0, rng.uniform(0.05, 0.5)])
        if rng.random() < self._cash_out_rate:
            return MulePlan(keep, (Destination(1.0),))
        count = rng.choice([1, 1, 2, 3])
        weights = [rng.uniform(0.2, 1.0) for _ in range(count)]
        destinations = tuple(
            Destination(w / sum(weights), *rng.choice(self._pool)) for w in weights
        )
        return MulePlan(keep, destinations)

    def _rng(self, key: tuple[str, str], purpose: str) -> random.Random:
        digest = hashlib.sha256(f"{self._seed}:{purpose}:{key[0]}:{key[1]}".encode()).digest()
        return random.Random(digest)
