"""Intake: a fraud report becomes a case with one `requested` hold per receiving account."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from pydantic import ValidationError

from stopper import metrics
from stopper.app.ports import (
    Clock,
    HoldRecord,
    HoldUpdate,
    IntakeStore,
    Message,
    OpenedCase,
    Publisher,
    VictimRecord,
)
from stopper.contracts.amounts import LegacyForms
from stopper.contracts.reports import FraudReportV1
from stopper.domain.accounts import AccountRef
from stopper.domain.cases import TransferFact, open_case
from stopper.domain.errors import DomainError
from stopper.errors import ReportRejected, ReportRejection
from stopper.registry import Registry

log = logging.getLogger(__name__)

# Headers intake writes on a record it accepted over HTTP.
ACCEPTED_AT_HEADER = "stopper-accepted-at"
SOURCE_HEADER = "stopper-source"
# Headers on a dead-letter record.
DLQ_REASON_HEADER = "stopper-dlq-reason"
DLQ_ORIGIN_HEADER = "stopper-dlq-origin"


def parse_report(raw: bytes, registry: Registry, *, count_legacy: bool = True) -> FraudReportV1:
    """Validate a raw report; `ReportRejected` carries a detail a person can act on: unreadable
    when it is not UTF-8 JSON, invalid when it breaks a rule. A report with an amount in the
    transition's old form (a JSON number) is counted unless `count_legacy` is false (a record
    HTTP intake accepted, and counted, before).

    The detail never repeats the input (account numbers and names stay out of errors)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReportRejected(
            ReportRejection.UNREADABLE,
            f"body: not valid UTF-8 (byte {e.start})",
            [{"loc": [], "msg": "not valid UTF-8", "type": "utf8_invalid"}],
        ) from e
    forms = LegacyForms()
    try:
        report = FraudReportV1.model_validate_json(raw, context=forms.context(registry=registry))
    except ValidationError as e:
        errors: list[dict[str, object]] = [
            {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]} for err in e.errors()
        ]
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"  # type: ignore[attr-defined]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        unreadable = any(err["type"] == "json_invalid" for err in errors)
        reason = ReportRejection.UNREADABLE if unreadable else ReportRejection.INVALID
        raise ReportRejected(reason, f"{where}: {first['msg']}{more}", errors) from e
    if forms.count and count_legacy:
        metrics.LEGACY_AMOUNTS.labels("report", "").inc()
    return report


def to_opened_case(
    report: FraudReportV1, *, accepted_at: datetime, opened_at: datetime, source: str
) -> OpenedCase:
    """Translate the wire report into the domain and open its case."""
    transfers = [
        TransferFact(
            victim_ref=t.victim_id,
            victim_account=AccountRef(
                t.victim_account.institution_code,
                t.victim_account.account_number,
                t.victim_account.name,
            ),
            receiving_account=AccountRef(
                t.receiving_account.institution_code,
                t.receiving_account.account_number,
                t.receiving_account.name,
            ),
            amount=t.amount_minor,
            currency=t.currency,
            transferred_at=t.transferred_at,
            channel=t.channel,
            reference=t.reference,
        )
        for t in report.transfers
    ]
    case, births, _events = open_case(
        report_id=report.report_id,
        agency_code=report.agency.code,
        reported_at=report.reported_at,
        transfers=transfers,
        opened_at=opened_at,
    )
    return OpenedCase(
        case=case,
        births=births,
        stop_requests=case.stop_requests(),
        victims=[VictimRecord(v.victim_id, v.name) for v in report.victims],
        fingerprint=report.fingerprint(),
        accepted_at=accepted_at,
        source=source,
    )


class FirstAttempts(Protocol):
    """The first stop requests of new holds (the dispatcher)."""

    def claim_new(self, record: HoldRecord) -> HoldUpdate | None: ...

    async def start_new(
        self, claimed: Sequence[tuple[HoldRecord, HoldUpdate]], mule_cases: Mapping[UUID, int]
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    reason: str


@dataclass(slots=True)
class IntakeResult:
    created: int = 0
    duplicates: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class IntakeTopics:
    dead_letter: str


class IntakeHandler:
    """Turns a batch of report records into cases.

    Business rules:
    - a report_id seen before with the same content is a harmless repost: nothing changes;
    - a report_id seen before with different content is dead-lettered ("report_id reused"), the
      first report stands;
    - a record that fails validation is dead-lettered with the reason and never retried;
    - all cases of a batch commit in one transaction; dead letters are sent before the batch
      is reported done, so the caller commits offsets only after both;
    - with `dispatch`, each new hold's first attempt is claimed in the same transaction and,
      once committed, carried out from this process (no other trip through the broker, no
      other transaction); if this process dies first, any instance's sweeper makes the attempt
      when the claim's lease runs out.
    """

    def __init__(
        self,
        store: IntakeStore,
        publisher: Publisher,
        clock: Clock,
        registry: Registry,
        topics: IntakeTopics,
        dispatch: FirstAttempts | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._registry = registry
        self._topics = topics
        self._dispatch = dispatch

    async def handle_batch(self, batch: Sequence[Message]) -> IntakeResult:
        result = IntakeResult()
        now = self._clock.now()
        opened: dict[str, tuple[Message, OpenedCase]] = {}
        for message in batch:
            try:
                case = self._open(message, now)
            except ReportRejected as e:
                result.dead_letters.append(DeadLetter(message, e.detail))
                continue
            earlier = opened.get(case.case.report_id)
            if earlier is None:
                opened[case.case.report_id] = (message, case)
            elif earlier[1].fingerprint != case.fingerprint:
                result.dead_letters.append(DeadLetter(message, _REUSED))
            else:
                result.duplicates += 1

        if opened:
            outcome = await self._store.record_opened_cases(
                [case for _, case in opened.values()],
                self._dispatch.claim_new if self._dispatch is not None else None,
            )
            result.created = len(outcome.created)
            if outcome.claimed and self._dispatch is not None:
                await self._dispatch.start_new(outcome.claimed, outcome.mule_cases)
            for message, case in opened.values():
                known = outcome.already_known.get(case.case.id)
                if known is None:
                    continue
                if known == case.fingerprint:
                    result.duplicates += 1
                else:
                    result.dead_letters.append(DeadLetter(message, _REUSED))
            self._observe_created(outcome.created, opened, now)

        for dead in result.dead_letters:
            await self._dead_letter(dead)
        return result

    def _open(self, message: Message, now: datetime) -> OpenedCase:
        from_http = message.headers.get(SOURCE_HEADER) == "http"
        report = parse_report(message.value, self._registry, count_legacy=not from_http)
        if message.key is not None and message.key != report.report_id:
            raise ReportRejected(ReportRejection.INVALID, "record key differs from report_id")
        accepted_at = _accepted_at(message)
        try:
            return to_opened_case(
                report,
                accepted_at=accepted_at,
                opened_at=now,
                source=message.headers.get(SOURCE_HEADER, "kafka"),
            )
        except DomainError as e:
            raise ReportRejected(ReportRejection.INVALID, str(e)) from e

    def _observe_created(
        self,
        created: Sequence[object],
        opened: dict[str, tuple[Message, OpenedCase]],
        now: datetime,
    ) -> None:
        created_ids = set(created)
        for _, case in opened.values():
            if case.case.id not in created_ids:
                continue
            metrics.CASES_OPENED.labels(source=case.source).inc()
            metrics.HOLDS_CREATED.inc(len(case.case.holds))
            metrics.INTAKE_LATENCY.labels(source=case.source).observe(
                max(0.0, (now - case.accepted_at).total_seconds())
            )
            log.info(
                "case opened", extra={"case_id": str(case.case.id), "holds": len(case.case.holds)}
            )

    async def _dead_letter(self, dead: DeadLetter) -> None:
        origin = await publish_dead_letter(
            self._publisher, self._topics.dead_letter, dead.message, dead.reason
        )
        log.warning("report dead-lettered", extra={"reason": dead.reason, "origin": origin})


async def publish_dead_letter(
    publisher: Publisher, topic: str, message: Message, reason: str
) -> str:
    """Copy `message` to the dead-letter `topic` with headers saying why and where it came
    from, and count it; returns the origin (topic, partition, offset) for the caller's log."""
    origin = json.dumps(
        {"topic": message.topic, "partition": message.partition, "offset": message.offset}
    )
    await publisher.publish(
        topic,
        message.key,
        message.value,
        {**message.headers, DLQ_REASON_HEADER: reason, DLQ_ORIGIN_HEADER: origin},
    )
    metrics.DEAD_LETTERS.labels(topic=message.topic).inc()
    return origin


_REUSED = "report_id reused with different content; the first report stands"


def _accepted_at(message: Message) -> datetime:
    raw = message.headers.get(ACCEPTED_AT_HEADER)
    if raw is not None:
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    return message.timestamp
