"""The intake use case and the consume loop, with hand-written fakes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from stopper.app.consuming import consume
from stopper.app.hold_changes import AttemptClaimed
from stopper.app.intake import (
    ACCEPTED_AT_HEADER,
    DLQ_REASON_HEADER,
    IntakeHandler,
    IntakeTopics,
)
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.domain.cases import case_id_for
from stopper.domain.holds import HoldEvent, HoldState
from stopper.registry import load_registry
from tests.factories import fresh_account, naming_doc, report_doc
from tests.unit.fakes import FakeIntakeStore, FakePublisher, FakeSubscription, FixedClock, message

TOPICS = IntakeTopics(dead_letter="dlq")


class FakeDispatcher:
    """Claims every new hold (marks it sent) and keeps the ids of the attempts it started."""

    def __init__(self, dispatched: list[UUID] | None) -> None:
        self.dispatched = dispatched
        self.mule_cases: dict[UUID, int] = {}

    def claim_new(self, record: HoldRecord) -> HoldUpdate | None:
        at = FixedClock().now()
        sent = record.hold.apply(HoldEvent.REQUEST_SENT, cause="fake", actor="test", at=at)
        return HoldUpdate(at=at, transitions=[sent], change=AttemptClaimed(1, at, at, at))

    async def start_new(
        self, claimed: Sequence[tuple[HoldRecord, HoldUpdate]], mule_cases: Mapping[UUID, int]
    ) -> None:
        if self.dispatched is not None:
            self.dispatched.extend(record.hold.id for record, _ in claimed)
        self.mule_cases.update(mule_cases)


def handler(
    store: FakeIntakeStore, publisher: FakePublisher, dispatched: list[UUID] | None = None
) -> IntakeHandler:
    return IntakeHandler(
        store, publisher, FixedClock(), load_registry(), TOPICS, FakeDispatcher(dispatched)
    )


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


async def test_a_report_opens_a_case_and_hands_its_holds_to_the_dispatcher() -> None:
    store, publisher, dispatched = FakeIntakeStore(), FakePublisher(), list[UUID]()
    doc = report_doc()
    intake = handler(store, publisher, dispatched)
    result = await intake.handle_batch([message(raw(doc), key=doc["report_id"])])
    case = store.cases[case_id_for(doc["report_id"])]
    assert result.created == 1 and publisher.sent == []
    assert [(h.institution_code, h.amount_asked) for h in case.case.holds] == [
        ("BK01", 2_000_050),
        ("PI04", 82_000),
    ]
    assert dispatched == [h.id for h in case.case.holds]  # claimed with the case, then started
    assert {h.state for h in case.case.holds} == {HoldState.SENT}
    assert {v.victim_ref for v in case.victims} == {"V1", "V2"}


async def test_accepted_at_comes_from_the_intake_header() -> None:
    store, publisher = FakeIntakeStore(), FakePublisher()
    doc = report_doc()
    at = "2026-11-21T10:00:00+00:00"
    await handler(store, publisher).handle_batch(
        [message(raw(doc), headers={ACCEPTED_AT_HEADER: at})]
    )
    assert store.cases[case_id_for(doc["report_id"])].accepted_at.isoformat() == at


async def test_redelivery_and_reposts_change_nothing() -> None:
    store, publisher, dispatched = FakeIntakeStore(), FakePublisher(), list[UUID]()
    doc = report_doc()
    intake = handler(store, publisher, dispatched)
    first = await intake.handle_batch([message(raw(doc), 0), message(raw(doc), 1)])
    again = await intake.handle_batch([message(raw(doc), 0)])
    assert (first.created, first.duplicates) == (1, 1)
    assert (again.created, again.duplicates) == (0, 1)
    assert len(store.cases) == 1 and len(dispatched) == 2 and publisher.sent == []


async def test_bad_records_are_dead_lettered_with_reason_and_the_rest_goes_on() -> None:
    store, publisher = FakeIntakeStore(), FakePublisher()
    good = report_doc()
    reused = dict(
        report_doc(),
        report_id=good["report_id"],
        victims=[{"victim_id": "V1"}],
        transfers=good["transfers"][:1],
    )
    wrong_key = report_doc()
    batch = [
        message(b"{not json", 0),
        message(raw(good), 1),
        message(raw(reused), 2),
        message(raw(wrong_key), 3, key="some-other-id"),
    ]
    result = await handler(store, publisher).handle_batch(batch)
    assert result.created == 1
    reasons = {p.value: p.headers[DLQ_REASON_HEADER] for p in publisher.sent}
    assert all(p.topic == "dlq" for p in publisher.sent)
    assert reasons[b"{not json"].startswith("body: Invalid JSON")
    assert "reused" in reasons[raw(reused)]
    assert reasons[raw(wrong_key)] == "record key differs from report_id"
    assert json.loads(publisher.sent[0].headers["stopper-dlq-origin"]) == {
        "topic": "stopper.reports",
        "partition": 0,
        "offset": 0,
    }


async def test_consumer_commits_only_after_the_batch_is_done_and_retries_failures() -> None:
    store, publisher = FakeIntakeStore(fail_next=2), FakePublisher()
    stopping = asyncio.Event()
    docs = [report_doc(), report_doc()]
    subscription = FakeSubscription(
        [[message(raw(docs[0]), 0)], [message(raw(docs[1]), 1)]], stopping
    )
    await consume(
        subscription,
        handler(store, publisher).handle_batch,
        name="test",
        stopping=stopping,
        retry_delay_s=0.001,
    )
    # The database failed twice on the first batch: it was retried, not skipped or committed early.
    assert subscription.committed == [[0], [1]]
    assert {case_id_for(d["report_id"]) for d in docs} == set(store.cases)
    assert subscription.closed


def _mutations() -> st.SearchStrategy[bytes]:
    """Records a broken or hostile producer could write: raw bytes, arbitrary JSON, and valid
    reports with one field replaced by arbitrary JSON."""
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    values = st.recursive(
        leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner)
    )
    good = report_doc()

    def replace_one(path: tuple[str, ...], value: object) -> bytes:
        doc = json.loads(json.dumps(good))
        target = doc
        for key in path[:-1]:
            target = target[key] if not isinstance(target, list) else target[0]
        if isinstance(target, dict):
            target[path[-1]] = value
        return json.dumps(doc).encode()

    paths = st.sampled_from(
        [
            ("report_id",),
            ("agency",),
            ("reported_at",),
            ("victims",),
            ("transfers",),
            ("transfers", "amount"),
            ("transfers", "receiving_account"),
            ("transfers", "currency"),
            ("transfers", "transferred_at"),
            ("surprise",),
        ]
    )
    return (
        st.binary(max_size=300)
        | values.map(lambda v: json.dumps(v).encode())
        | st.builds(replace_one, paths, values)
    )


@settings(max_examples=300, deadline=None)
@given(records=st.lists(_mutations(), min_size=1, max_size=5))
async def test_any_record_becomes_a_case_or_a_dead_letter_with_a_reason(
    records: list[bytes],
) -> None:
    store, publisher = FakeIntakeStore(), FakePublisher()
    batch = [message(value, offset=i) for i, value in enumerate(records)]
    result = await handler(store, publisher).handle_batch(batch)  # never raises
    dead = [p for p in publisher.sent if p.topic == "dlq"]
    assert all(p.headers[DLQ_REASON_HEADER] for p in dead)
    assert sorted(p.value for p in dead) == sorted(d.message.value for d in result.dead_letters)
    # Every record is accounted for: a case, a dead letter, or a repost of a case.
    assert result.created == len(store.cases)
    assert result.created + result.duplicates + len(dead) == len(records)


async def test_a_report_naming_an_account_of_an_earlier_case_starts_its_hold_as_a_mule() -> None:
    store = FakeIntakeStore()
    dispatcher = FakeDispatcher([])
    intake = IntakeHandler(
        store, FakePublisher(), FixedClock(), load_registry(), TOPICS, dispatcher
    )
    mule, other = fresh_account(), fresh_account("PI04")
    await intake.handle_batch([message(raw(naming_doc(mule, other)))])
    assert dispatcher.mule_cases == {}
    later = naming_doc(mule)
    await intake.handle_batch([message(raw(later))])
    [hold] = store.cases[case_id_for(later["report_id"])].case.holds
    assert dispatcher.mule_cases == {hold.id: 2}
