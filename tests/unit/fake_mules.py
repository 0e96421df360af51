"""The mule-account registry's reads over the unit fake's dicts (`FakeDispatchStore` mixes this
in), keeping the contract `tests/integration/test_store_contract.py` holds the real store to."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from uuid import UUID

from stopper.app.mules import Naming
from stopper.app.ports import HoldRecord, OpenedCase
from stopper.app.views import AccountCaseView, AccountRecordView, FlaggedAccountsView
from stopper.domain.accounts import account_id, mask_account_number
from stopper.domain.mules import counted, is_flagged, names_its_account


def account_of(record: HoldRecord) -> UUID:
    return account_id(record.hold.institution_code, record.hold.account_number)


class FakeMuleReads:
    holds: dict[UUID, HoldRecord]
    cases: dict[UUID, OpenedCase]

    def naming_holds(self) -> list[HoldRecord]:
        """Holds naming their account in a case the fake knows (the real store's join)."""
        return [
            r
            for r in self.holds.values()
            if names_its_account(r.hold.state) and r.hold.case_id in self.cases
        ]

    def cases_by_account(self) -> dict[UUID, list[HoldRecord]]:
        found: dict[UUID, list[HoldRecord]] = {}
        for record in self.holds.values():
            if names_its_account(record.hold.state):
                found.setdefault(account_of(record), []).append(record)
        return found

    def earlier_cases(self, accounts: Sequence[UUID]) -> dict[UUID, int]:
        """What `Database.record_cases` reads before a batch: cases naming each account."""
        by_account = self.cases_by_account()
        return {a: counted(len(by_account[a])) for a in accounts if a in by_account}

    async def mule_cases(self, hold_ids: Sequence[UUID]) -> dict[UUID, int]:
        by_account = self.cases_by_account()
        found = {}
        for hold_id in hold_ids:
            record = self.holds.get(hold_id)
            if record is not None:
                cases = counted(len(by_account.get(account_of(record), [])))
                if is_flagged(cases):
                    found[hold_id] = cases
        return found

    async def accounts_named_in(self, case_ids: Sequence[UUID], limit: int) -> list[Naming]:
        wanted = set(case_ids)
        return [self._naming(r) for r in self.naming_holds() if r.hold.case_id in wanted][:limit]

    async def cases_naming(self, account_ids: Sequence[UUID], limit: int) -> list[Naming]:
        wanted = set(account_ids)
        return [self._naming(r) for r in self.naming_holds() if account_of(r) in wanted][:limit]

    def _naming(self, record: HoldRecord) -> Naming:
        case = self.cases[record.hold.case_id].case
        return Naming(
            case_id=case.id,
            account_id=account_of(record),
            institution_code=record.hold.institution_code,
            account_masked=mask_account_number(record.hold.account_number),
            agency_code=case.agency_code,
            opened_at=case.opened_at,
        )

    async def account_record(
        self, institution_code: str, account_number: str, cases_listed: int
    ) -> AccountRecordView | None:
        account = account_id(institution_code, account_number)
        holds = [r for r in self.naming_holds() if account_of(r) == account]
        return self._record(holds, cases_listed) if holds else None

    async def flagged_accounts(
        self, limit: int, offset: int, cases_listed: int
    ) -> FlaggedAccountsView:
        by_account: dict[UUID, list[HoldRecord]] = {}
        for record in self.naming_holds():
            by_account.setdefault(account_of(record), []).append(record)
        flagged = sorted((a, h) for a, h in by_account.items() if is_flagged(len(h)))
        # Last named first, then by account id (a stable sort keeps the ids' order in a tie).
        flagged.sort(key=lambda f: max(r.requested_at for r in f[1]), reverse=True)
        page = flagged[offset : offset + limit]
        return FlaggedAccountsView(
            accounts=tuple(self._record(h, cases_listed) for _, h in page), total=len(flagged)
        )

    def _record(self, holds: list[HoldRecord], cases_listed: int) -> AccountRecordView:
        amounts: Counter[str] = Counter()
        for r in holds:
            amounts[r.hold.currency] += r.hold.amount_stopped
        # Newest first, then by case id, as the real store ranks them.
        newest = sorted(holds, key=lambda r: r.hold.case_id)
        newest.sort(key=lambda r: r.requested_at, reverse=True)
        first = holds[0].hold
        return AccountRecordView(
            institution_code=first.institution_code,
            account_masked=mask_account_number(first.account_number),
            cases=len(holds),
            first_seen_at=min(r.requested_at for r in holds),
            last_seen_at=max(r.requested_at for r in holds),
            amount_stopped=dict(amounts),
            recent_cases=tuple(
                AccountCaseView(
                    case_id=r.hold.case_id,
                    agency_code=self.cases[r.hold.case_id].case.agency_code,
                    layer=r.hold.layer,
                    state=r.hold.state.value,
                    named_at=r.requested_at,
                )
                for r in newest[:cases_listed]
            ),
        )
