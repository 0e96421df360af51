"""The mule-account registry: which accounts are named in more than one case, an account looked
up, and a case's links to the cases it shares accounts with.

Business rules:
- an account named in two or more cases, by a report or found by the money trail, is a known
  mule (`stopper.domain.mules`); the registry is read from the holds, never kept beside them;
- the flagged list is the most recently named first, a page at a time; every account in it and
  in every answer is masked (`****1234`), and no account number is ever in a URL: a look-up
  names the account in its body;
- a look-up of an account no case names finds nothing, and says nothing more: not whether the
  number is known to Stopper in another role (a victim's own account, a payout's);
- a case's links are bounded, so a giant ring cannot make one request read the world: the
  search reads at most `rows` namings (hold rows) in all and stops growing the ring at
  `ring_cases` cases; when it stops early, its counts are lower bounds (`complete` is false).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from stopper import metrics
from stopper.app.views import (
    AccountRecordView,
    CaseLinksView,
    FlaggedAccountsView,
    LinkedCaseView,
    SharedAccountView,
)
from stopper.domain.mules import (
    CASES_LISTED,
    FLAGGED_CASES_LISTED,
    LINKED_LISTED,
    RING_CASES,
    RING_LISTED,
    ROWS_READ,
    is_flagged,
)


@dataclass(frozen=True, slots=True)
class Naming:
    """One case naming one account (its hold on it), as the registry's search reads it. The
    account id is Stopper's own (`stopper.domain.accounts.account_id`) and never leaves it."""

    case_id: UUID
    account_id: UUID
    institution_code: str
    account_masked: str
    agency_code: str
    opened_at: datetime


class MuleStore(Protocol):
    """What the registry reads; every account leaves the store masked."""

    async def accounts_named_in(self, case_ids: Sequence[UUID], limit: int) -> list[Naming]:
        """The accounts `case_ids` name (one row per case and account), at most `limit` rows."""
        ...

    async def cases_naming(self, account_ids: Sequence[UUID], limit: int) -> list[Naming]:
        """The cases naming `account_ids` (one row per case and account), at most `limit`
        rows, in no particular order."""
        ...

    async def account_record(
        self, institution_code: str, account_number: str, cases_listed: int
    ) -> AccountRecordView | None:
        """The account as its holds say, with its newest `cases_listed` cases; None if no
        case names it."""
        ...

    async def flagged_accounts(
        self, limit: int, offset: int, cases_listed: int
    ) -> FlaggedAccountsView:
        """Known mule accounts, the most recently named first (then by account), `limit` of
        them from `offset`, each with its newest `cases_listed` cases."""
        ...


class MuleRegistry:
    def __init__(
        self, store: MuleStore, *, ring_cases: int = RING_CASES, rows: int = ROWS_READ
    ) -> None:
        self._store = store
        self._ring_cases = ring_cases
        self._rows = rows

    async def flagged(self, limit: int, offset: int = 0) -> FlaggedAccountsView:
        return await self._store.flagged_accounts(limit, offset, FLAGGED_CASES_LISTED)

    async def look_up(self, institution_code: str, account_number: str) -> AccountRecordView | None:
        """The account, if a case names it (flagged or not); counted by outcome."""
        found = await self._store.account_record(institution_code, account_number, CASES_LISTED)
        outcome = "none" if found is None else "flagged" if is_flagged(found.cases) else "named"
        metrics.ACCOUNT_LOOKUPS.labels(outcome).inc()
        return found

    async def case_links(self, case_id: UUID) -> CaseLinksView:
        """The cases sharing an account with `case_id`, and its ring: a breadth-first search
        from case to accounts to cases, each account's cases read once, within the bounds."""
        search = _Search(case_id, self._ring_cases, self._rows)
        frontier = [case_id]
        while frontier and search.complete:
            named = search.take(await self._store.accounts_named_in(frontier, search.budget + 1))
            accounts = search.new_accounts(named)
            if not accounts:
                break
            naming = search.take(await self._store.cases_naming(accounts, search.budget + 1))
            frontier = search.reached(naming)
        return search.view()


class _Search:
    """The bounded search behind `MuleRegistry.case_links`: what it found, and what is left
    of its bounds."""

    def __init__(self, case_id: UUID, ring_cases: int, rows: int) -> None:
        self.case_id = case_id
        self.ring_cases = ring_cases
        self.budget = rows
        self.complete = True
        self.ring: dict[UUID, None] = {case_id: None}  # in the order found: nearest first
        self.accounts: set[UUID] = set()
        self.own: dict[UUID, SharedAccountView] = {}  # the accounts the case itself names
        self.linked: dict[UUID, tuple[Naming, set[SharedAccountView]]] = {}
        self.depth = 0

    def take(self, rows: list[Naming]) -> list[Naming]:
        """Rows read with a limit of one past the budget: one more means there were more."""
        if len(rows) > self.budget:
            self.complete = False
            rows = rows[: self.budget]
        self.budget -= len(rows)
        return rows

    def new_accounts(self, named: list[Naming]) -> list[UUID]:
        """The accounts among `named` whose cases are not read yet."""
        fresh = {n.account_id: n for n in named if n.account_id not in self.accounts}
        self.accounts.update(fresh)
        if self.depth == 0:
            self.own = {
                a: SharedAccountView(n.institution_code, n.account_masked) for a, n in fresh.items()
            }
        return sorted(fresh)

    def reached(self, naming: list[Naming]) -> list[UUID]:
        """Take in the cases naming the accounts just read; the new ones, to search next."""
        found: list[UUID] = []
        for n in naming:
            if self.depth == 0 and n.case_id != self.case_id and n.account_id in self.own:
                linked = self.linked.setdefault(n.case_id, (n, set()))
                linked[1].add(self.own[n.account_id])
            if n.case_id in self.ring:
                continue
            if len(self.ring) >= self.ring_cases:
                self.complete = False
                continue
            self.ring[n.case_id] = None
            found.append(n.case_id)
        self.depth += 1
        return found

    def view(self) -> CaseLinksView:
        newest = sorted(
            self.linked.values(),
            key=lambda link: (link[0].opened_at, link[0].case_id),
            reverse=True,
        )
        return CaseLinksView(
            linked=tuple(
                LinkedCaseView(
                    case_id=n.case_id,
                    agency_code=n.agency_code,
                    opened_at=n.opened_at,
                    shared=tuple(
                        sorted(shared, key=lambda a: (a.institution_code, a.account_masked))
                    ),
                )
                for n, shared in newest[:LINKED_LISTED]
            ),
            linked_total=len(self.linked),
            ring_size=len(self.ring),
            ring_case_ids=tuple(c for c in self.ring if c != self.case_id)[:RING_LISTED],
            complete=self.complete,
        )
