"""Does Stopper agree with the institutions? Every hold against its institution's ledger: what
the simulated institution did with the stop request of the hold's current generation
(`GET /ledger` of `stopper simulate`).

    the ledger says   Stopper's hold matches when it is
    stopped           stopped, with amount_stopped == amount_held
    not_found         not_found
    rejected          rejected
    pending           sent or unconfirmed (the institution took the request and owes its
                      answer by callback: both sides wait for it)
    released          released (the institution lifted the hold's stop)
    (nothing)         released, when Stopper released a hold whose stop request never left;
                      else never: the institution never executed it; unless Stopper still has
                      it requested or sent, when it is not settled yet (`UNSETTLED`, not a
                      divergence, but not a match either)

A ledger entry for another institution than the hold's is a divergence too. A stop's
`amount_held` includes what the supplements of its generation hold (the extra a trail merge
asked of an account already asked, each under its own key), as far as the institution knows
their outcome, as Stopper's `amount_stopped` adds them: a supplement's answer in transit is the
same race as a callback's, which the reads before and after settle (`compare`).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from uuid import UUID

# What Stopper's hold may be for each status of the institution's ledger.
MATCHING_STATES: Final[Mapping[str, frozenset[str]]] = {
    "stopped": frozenset({"stopped"}),
    "not_found": frozenset({"not_found"}),
    "rejected": frozenset({"rejected"}),
    "pending": frozenset({"sent", "unconfirmed"}),
    "released": frozenset({"released"}),
}
# A hold the institution has not seen may still be on its way there.
NOT_YET_THERE: Final = frozenset({"requested", "sent"})
# Released without asking the institution (its stop request never left): it has no entry.
RELEASED_UNSENT: Final = "released"
ABSENT: Final = "absent"  # the ledger's "status" of a hold it has no entry for
SAMPLES: Final = 5  # hold ids shown per kind of divergence


class Verdict(enum.StrEnum):
    MATCHES = "matches"
    UNSETTLED = "unsettled"
    DIVERGES = "diverges"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One stop request as the institution recorded it."""

    hold_id: UUID
    institution_code: str
    generation: int
    idempotency_key: str
    status: str  # stopped, not_found, rejected, pending or released
    amount_held: int | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LedgerEntry:
        return cls(
            hold_id=UUID(str(raw["hold_id"])),
            institution_code=raw["institution_code"],
            generation=int(raw["generation"]),
            idempotency_key=raw["idempotency_key"],
            status=raw["status"],
            amount_held=None if raw.get("amount_held") is None else int(raw["amount_held"]),
        )


@dataclass(frozen=True, slots=True)
class StopperHold:
    """A hold as Stopper's `holds` table has it."""

    id: UUID
    institution_code: str
    state: str
    amount_stopped: int
    generation: int = 0  # the hold's re-applications: the generation of its current stop


def verdict(hold: StopperHold, entry: LedgerEntry | None) -> Verdict:
    """Whether `hold` matches `entry`, its institution's record of the hold's current stop
    request (None: the institution has none)."""
    if entry is None:
        if hold.state == RELEASED_UNSENT:
            return Verdict.MATCHES  # released before its stop request left: never there
        return Verdict.UNSETTLED if hold.state in NOT_YET_THERE else Verdict.DIVERGES
    if entry.institution_code != hold.institution_code:
        return Verdict.DIVERGES
    if hold.state not in MATCHING_STATES.get(entry.status, frozenset()):
        return Verdict.DIVERGES
    if entry.status == "stopped" and hold.amount_stopped != entry.amount_held:
        return Verdict.DIVERGES
    return Verdict.MATCHES


def ledger_label(hold: StopperHold, entry: LedgerEntry | None) -> str:
    """The ledger's side of a pair (stopper state, ledger status), for the report."""
    if entry is None:
        return ABSENT
    if entry.institution_code != hold.institution_code:
        return f"{entry.status} at {entry.institution_code}"
    if entry.status == "stopped" and hold.state == "stopped":
        return "stopped, another amount"
    return entry.status


@dataclass(repr=False)
class Comparison:
    """Every hold of Stopper against the ledger, at one moment."""

    matched: int = 0
    # Holds that do not match: (Stopper's state, the ledger's status) of each.
    mismatches: dict[UUID, tuple[str, str]] = field(default_factory=dict)
    failed_but_stopped: list[UUID] = field(default_factory=list)
    # (hold, generation) pairs whose funds the institution stopped more than once.
    executed_twice: list[tuple[UUID, int]] = field(default_factory=list)
    unknown_to_stopper: list[UUID] = field(default_factory=list)  # ledger holds Stopper lacks
    ledger_entries: int = 0

    @property
    def holds(self) -> int:
        return self.matched + len(self.mismatches)

    @property
    def unsettled(self) -> int:
        return sum(1 for state, status in self.mismatches.values() if _unsettled(state, status))

    @property
    def divergent(self) -> int:
        return len(self.mismatches) - self.unsettled

    def __repr__(self) -> str:  # what a failed assertion shows: counts, not every hold
        return (
            f"Comparison(holds={self.holds}, matched={self.matched}, divergent={self.divergent},"
            f" unsettled={self.unsettled}, failed_but_stopped={len(self.failed_but_stopped)})"
        )

    def lines(self) -> list[str]:
        by_pair: dict[tuple[str, str], list[UUID]] = {}
        for hold_id, pair in self.mismatches.items():
            by_pair.setdefault(pair, []).append(hold_id)
        lines = [
            f"ledger entries    {self.ledger_entries}",
            f"holds matching    {self.matched} of {self.holds}",
            f"divergent         {self.divergent}",
            f"unsettled         {self.unsettled} (requested/sent, never at the institution)",
            f"failed, stopped   {len(self.failed_but_stopped)}",
            f"executed twice    {len(self.executed_twice)} (hold, generation)",
            f"unknown holds     {len(self.unknown_to_stopper)} (in the ledger, not in Stopper)",
        ]
        for (state, status), ids in sorted(by_pair.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            sample = ", ".join(str(h) for h in sorted(ids)[:SAMPLES])
            lines.append(f"  stopper {state} / ledger {status}: {len(ids)}  e.g. {sample}")
        return lines


def _unsettled(state: str, status: str) -> bool:
    return status == ABSENT and state in NOT_YET_THERE


@dataclass
class _Ledger:
    """Ledger entries by (hold, generation)."""

    entries: int = 0
    by_stop: dict[tuple[UUID, int], LedgerEntry] = field(default_factory=dict)
    stopped: Counter[tuple[UUID, int]] = field(default_factory=Counter)

    @classmethod
    def of(cls, entries: Iterable[LedgerEntry]) -> _Ledger:
        ledger = cls()
        for recorded in entries:
            ledger.entries += 1
            key = (recorded.hold_id, recorded.generation)
            if recorded.status == "stopped":
                ledger.stopped[key] += 1
            # The stop, if any entry says so, is what the funds are under.
            if key not in ledger.by_stop or recorded.status == "stopped":
                ledger.by_stop[key] = recorded
        return ledger

    def holds(self) -> set[UUID]:
        return {hold_id for hold_id, _ in self.by_stop}


_BEST_FIRST: Final = (Verdict.MATCHES, Verdict.UNSETTLED, Verdict.DIVERGES)


def compare(
    holds: Iterable[StopperHold],
    ledger: Iterable[LedgerEntry],
    ledger_after: Iterable[LedgerEntry] | None = None,
) -> Comparison:
    """Every hold against the ledger's entry for its current generation.

    Stopper and the institutions move on while they are read: `holds` is read after `ledger`
    and, if given, before `ledger_after`. A hold matches if it matches either: a callback in
    transit, a hold born and answered between the reads, is then no divergence; a hold that
    disagrees with both reads disagrees with its institution. A ledger hold Stopper lacks counts
    only from `ledger`, read before Stopper. Two entries of one (hold, generation) that both
    stopped funds are a double stop."""
    first = _Ledger.of(ledger)
    later = first if ledger_after is None else _Ledger.of(ledger_after)
    out = Comparison(ledger_entries=later.entries)
    out.executed_twice = sorted(key for key, n in later.stopped.items() if n > 1)
    known: set[UUID] = set()
    for hold in holds:
        known.add(hold.id)
        key = (hold.id, hold.generation)
        seen = [first.by_stop.get(key), later.by_stop.get(key)]
        verdicts = [verdict(hold, entry) for entry in seen]
        best = min(verdicts, key=_BEST_FIRST.index)
        if best is Verdict.MATCHES:
            out.matched += 1
        else:
            entry = seen[verdicts.index(best)] if best is Verdict.UNSETTLED else seen[1]
            out.mismatches[hold.id] = (hold.state, ledger_label(hold, entry))
        if hold.state == "failed" and any(e is not None and e.status == "stopped" for e in seen):
            out.failed_but_stopped.append(hold.id)
    out.unknown_to_stopper = sorted(first.holds() - known)
    return out
