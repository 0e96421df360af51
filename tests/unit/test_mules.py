"""The mule-account registry with the unit fake: what flags an account, a case's links and its
ring (bounded), a look-up; and the domain's counting."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from stopper.app.intake import parse_report, to_opened_case
from stopper.app.mules import MuleRegistry
from stopper.app.ports import OpenedCase
from stopper.domain.accounts import account_id
from stopper.domain.holds import HoldState
from stopper.domain.mules import CASES_COUNTED, counted, mule_cases_of, names_its_account
from stopper.metrics import ACCOUNT_LOOKUPS
from stopper.registry import load_registry
from tests.factories import fresh_account, naming_doc
from tests.unit.fakes import FakeDispatchStore

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def case_of(doc: dict[str, Any], minutes: int = 0) -> OpenedCase:
    report = parse_report(json.dumps(doc).encode(), load_registry())
    at = T0 + timedelta(minutes=minutes)
    return to_opened_case(report, accepted_at=at, opened_at=at, source="http")


async def recorded(store: FakeDispatchStore, *accounts: tuple[str, str], at: int = 0) -> OpenedCase:
    case = case_of(naming_doc(*accounts), at)
    await store.record_opened_cases([case])
    return case


def test_a_stop_request_counts_the_cases_up_to_its_cap_and_a_lifted_hold_not_at_all() -> None:
    assert (counted(3), counted(10_000)) == (3, CASES_COUNTED)
    assert names_its_account(HoldState.FAILED) and names_its_account(HoldState.NOT_FOUND)
    assert not names_its_account(HoldState.RELEASED)
    assert not names_its_account(HoldState.RELEASING)


def test_the_cases_naming_an_account_are_the_earlier_ones_and_the_batchs() -> None:
    mule, fresh, once = fresh_account(), fresh_account("PI04"), fresh_account("BK03")
    pair = [case_of(naming_doc(mule, once)), case_of(naming_doc(fresh))]
    earlier = {account_id(*mule): 1, account_id(*fresh): CASES_COUNTED}
    found = mule_cases_of([c.case for c in pair], earlier)
    by_account = {
        (h.institution_code, h.account_number): found.get(h.id) for c in pair for h in c.case.holds
    }
    assert by_account == {mule: 2, once: None, fresh: CASES_COUNTED}


async def test_cases_sharing_accounts_are_linked_and_form_a_ring_through_them() -> None:
    store = FakeDispatchStore()
    m1, m2, own, alone = fresh_account(), fresh_account("PI04"), fresh_account(), fresh_account()
    a = await recorded(store, m1, own, at=0)
    b = await recorded(store, m1, m2, at=5)  # shares m1 with a
    c = await recorded(store, m2, at=9)  # shares m2 with b only: a's ring, one step further
    await recorded(store, alone, at=12)
    links = await MuleRegistry(store).case_links(a.case.id)
    assert [(link.case_id, [s.account_masked for s in link.shared]) for link in links.linked] == [
        (b.case.id, ["****" + m1[1][-4:]])
    ]
    assert (links.linked_total, links.ring_size, links.complete) == (1, 3, True)
    assert links.ring_case_ids == (b.case.id, c.case.id)  # nearest first
    of_b = await MuleRegistry(store).case_links(b.case.id)
    assert [link.case_id for link in of_b.linked] == [c.case.id, a.case.id]  # newest first
    assert {s.institution_code for s in of_b.linked[0].shared} == {"PI04"}
    lone = await MuleRegistry(store).case_links((await recorded(store, fresh_account())).case.id)
    assert (lone.linked, lone.ring_size, lone.ring_case_ids, lone.complete) == ((), 1, (), True)


async def test_a_giant_ring_is_searched_only_as_far_as_the_bounds() -> None:
    store = FakeDispatchStore()
    hub = fresh_account()
    cases = [await recorded(store, hub, fresh_account(), at=m) for m in range(12)]
    first = cases[0].case.id
    capped = await MuleRegistry(store, ring_cases=5).case_links(first)
    assert (capped.ring_size, capped.complete) == (5, False)
    assert capped.linked_total == 11  # every case naming its own accounts was read
    starved = await MuleRegistry(store, rows=6).case_links(first)
    assert not starved.complete and starved.ring_size <= 6
    whole = await MuleRegistry(store).case_links(first)
    assert (whole.ring_size, whole.linked_total, whole.complete) == (12, 11, True)


async def test_a_look_up_finds_an_account_a_case_names_and_counts_the_outcome() -> None:
    store = FakeDispatchStore()
    mule, once = fresh_account(), fresh_account("PI04")
    await recorded(store, mule, once)
    await recorded(store, mule, at=3)
    registry = MuleRegistry(store)

    def looked_up(outcome: str) -> float:
        return float(ACCOUNT_LOOKUPS.labels(outcome)._value.get())

    before = {o: looked_up(o) for o in ("flagged", "named", "none")}
    found = await registry.look_up(*mule)
    assert found is not None and (found.cases, found.account_masked) == (2, "****" + mule[1][-4:])
    named_once = await registry.look_up(*once)
    assert named_once is not None and named_once.cases == 1
    assert await registry.look_up(*fresh_account()) is None
    assert {o: looked_up(o) - before[o] for o in before} == {"flagged": 1, "named": 1, "none": 1}
    flagged = await registry.flagged(limit=10)
    assert [a.account_masked for a in flagged.accounts] == ["****" + mule[1][-4:]]
    assert flagged.total == 1
