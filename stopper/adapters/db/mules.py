"""The mule-account registry's reads (`stopper.app.mules.MuleStore`, and the dispatcher's
`mule_cases`): the cases naming an account, from the holds, through the holds-by-account index
(migration 0019). Nothing here is written: a flag is what the holds say (`stopper.domain.mules`).
Accounts leave masked."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, select, type_coerce

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import AccountRow, CaseRow, HoldRow, Timestamp
from stopper.adapters.db.naming import cases_naming, names_its_account
from stopper.adapters.db.storage import Storage
from stopper.app.mules import Naming
from stopper.app.views import AccountCaseView, AccountRecordView, FlaggedAccountsView
from stopper.domain.accounts import account_id, mask_account_number
from stopper.domain.mules import FLAGGED_AT, is_flagged


class MuleStorage(Storage):
    async def mule_cases(self, hold_ids: Sequence[UUID]) -> dict[UUID, int]:
        if not hold_ids:
            return {}
        with store_errors():
            async with self._db.read() as connection:
                holds = await connection.execute(self._accounts_of, {"ids": list(hold_ids)})
                account_of = {hold_id: account for hold_id, account in holds}
                if not account_of:
                    return {}
                # Each account counted once, however many of the holds name it (a hot one).
                counts = await connection.execute(
                    self._cases_counted, {"ids": sorted(set(account_of.values()))}
                )
                cases = {account: int(n) for account, n in counts}
        return {h: cases[a] for h, a in account_of.items() if is_flagged(cases.get(a, 0))}

    # `mule_cases`' two statements, built once (every claim batch asks, and building the
    # count's correlated subquery cost more than running it on a batch of a few holds).
    @functools.cached_property
    def _accounts_of(self) -> Select[Any]:
        return select(HoldRow.id, HoldRow.account_id).where(self._db.among_ids(HoldRow.id))

    @functools.cached_property
    def _cases_counted(self) -> Select[Any]:
        return select(AccountRow.id, cases_naming(AccountRow.id)).where(
            self._db.among_ids(AccountRow.id)
        )

    async def accounts_named_in(self, case_ids: Sequence[UUID], limit: int) -> list[Naming]:
        return await self._namings(self._db.id_among(HoldRow.case_id, list(case_ids)), limit)

    async def cases_naming(self, account_ids: Sequence[UUID], limit: int) -> list[Naming]:
        return await self._namings(self._db.id_among(HoldRow.account_id, list(account_ids)), limit)

    async def _namings(self, where: Any, limit: int) -> list[Naming]:
        # No ORDER BY: the limit then stops the index scan early, however many cases a hot
        # account is in (sorting would read them all first).
        query = (
            select(
                HoldRow.case_id,
                HoldRow.account_id,
                HoldRow.institution_code,
                AccountRow.account_number,
                CaseRow.agency_code,
                CaseRow.opened_at,
            )
            .join(AccountRow, AccountRow.id == HoldRow.account_id)
            .join(CaseRow, CaseRow.id == HoldRow.case_id)
            .where(where, names_its_account())
            .limit(limit)
        )
        with store_errors():
            async with self._db.read() as connection:
                rows = (await connection.execute(query)).all()
        return [
            Naming(
                case_id=r.case_id,
                account_id=r.account_id,
                institution_code=r.institution_code,
                account_masked=mask_account_number(r.account_number),
                agency_code=r.agency_code,
                opened_at=r.opened_at,
            )
            for r in rows
        ]

    async def account_record(
        self, institution_code: str, account_number: str, cases_listed: int
    ) -> AccountRecordView | None:
        account = account_id(institution_code, account_number)
        with store_errors():
            async with self._db.read() as connection:
                cases, first, last = (
                    await connection.execute(
                        _summary().where(HoldRow.account_id == account, names_its_account())
                    )
                ).one()
                if not cases:
                    return None
                amounts = await _amounts(connection, [account])
                recent = await _recent_cases(connection, [account], cases_listed)
        return AccountRecordView(
            institution_code=institution_code,
            account_masked=mask_account_number(account_number),
            cases=int(cases),
            first_seen_at=first,
            last_seen_at=last,
            amount_stopped=amounts.get(account, {}),
            recent_cases=tuple(recent.get(account, ())),
        )

    async def flagged_accounts(
        self, limit: int, offset: int, cases_listed: int
    ) -> FlaggedAccountsView:
        # Every naming hold grouped by account: the one read here that is as long as the holds
        # (an operator's page, not a path any report or answer takes).
        last_seen = func.max(HoldRow.requested_at)
        page = (
            _summary()
            .add_columns(HoldRow.account_id, func.count().over().label("total"))
            .where(names_its_account())
            .group_by(HoldRow.account_id)
            .having(func.count() >= FLAGGED_AT)
            .order_by(last_seen.desc(), HoldRow.account_id)
            .limit(limit)
            .offset(offset)
        )
        with store_errors():
            async with self._db.read() as connection:
                rows = (await connection.execute(page)).all()
                ids = [r.account_id for r in rows]
                total = int(rows[0].total) if rows else await _flagged_total(connection)
                if not ids:
                    return FlaggedAccountsView(accounts=(), total=total)
                numbers = {
                    r.id: (r.institution_code, r.account_number)
                    for r in await connection.execute(
                        select(
                            AccountRow.id, AccountRow.institution_code, AccountRow.account_number
                        ).where(self._db.id_among(AccountRow.id, ids))
                    )
                }
                amounts = await _amounts(connection, ids)
                recent = await _recent_cases(connection, ids, cases_listed)
        return FlaggedAccountsView(
            accounts=tuple(
                AccountRecordView(
                    institution_code=numbers[r.account_id][0],
                    account_masked=mask_account_number(numbers[r.account_id][1]),
                    cases=int(r.cases),
                    first_seen_at=r.first_seen_at,
                    last_seen_at=r.last_seen_at,
                    amount_stopped=amounts.get(r.account_id, {}),
                    recent_cases=tuple(recent.get(r.account_id, ())),
                )
                for r in rows
            ),
            total=total,
        )


def _summary() -> Select[Any]:
    """Cases naming, first and last named (over the holds the caller selects)."""
    return select(
        func.count().label("cases"),
        type_coerce(func.min(HoldRow.requested_at), Timestamp).label("first_seen_at"),
        type_coerce(func.max(HoldRow.requested_at), Timestamp).label("last_seen_at"),
    )


async def _flagged_total(connection: Any) -> int:
    """Known mule accounts in all (for a page past the last one)."""
    flagged = (
        select(HoldRow.account_id)
        .where(names_its_account())
        .group_by(HoldRow.account_id)
        .having(func.count() >= FLAGGED_AT)
        .subquery()
    )
    return int(await connection.scalar(select(func.count()).select_from(flagged)) or 0)


async def _amounts(connection: Any, accounts: list[UUID]) -> dict[UUID, dict[str, int]]:
    """What the holds naming each account have stopped, by currency."""
    rows = await connection.execute(
        select(HoldRow.account_id, HoldRow.currency, func.sum(HoldRow.amount_stopped))
        .where(HoldRow.account_id.in_(accounts), names_its_account())
        .group_by(HoldRow.account_id, HoldRow.currency)
    )
    amounts: dict[UUID, dict[str, int]] = {}
    for account, currency, stopped in rows:
        amounts.setdefault(account, {})[currency] = int(stopped or 0)
    return amounts


async def _recent_cases(
    connection: Any, accounts: list[UUID], per_account: int
) -> dict[UUID, list[AccountCaseView]]:
    """The newest `per_account` cases naming each account (ranked first, so that only those
    are joined to their case)."""
    newest = (
        func.row_number()
        .over(
            partition_by=HoldRow.account_id,
            order_by=(HoldRow.requested_at.desc(), HoldRow.case_id),
        )
        .label("n")
    )
    ranked = (
        select(
            HoldRow.account_id,
            HoldRow.case_id,
            HoldRow.layer,
            HoldRow.state,
            HoldRow.requested_at,
            newest,
        )
        .where(HoldRow.account_id.in_(accounts), names_its_account())
        .subquery()
    )
    rows = await connection.execute(
        select(ranked, CaseRow.agency_code)
        .join(CaseRow, CaseRow.id == ranked.c.case_id)
        .where(ranked.c.n <= per_account)
        .order_by(ranked.c.account_id, ranked.c.n)
    )
    found: dict[UUID, list[AccountCaseView]] = {}
    for r in rows:
        found.setdefault(r.account_id, []).append(
            AccountCaseView(
                case_id=r.case_id,
                agency_code=r.agency_code,
                layer=r.layer,
                state=r.state,
                named_at=r.requested_at,
            )
        )
    return found
