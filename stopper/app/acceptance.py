"""Report acceptance: a fraud report filed over HTTP is checked, then queued for intake.

Business rules:
- a report that is not UTF-8 JSON is refused as unreadable, one that breaks a rule of the
  contract as invalid; the detail says where, never repeating the input;
- an intake key files reports for its own agency only (the anonymous developer for any; an
  operator key files none, refused before its body is read: `Caller.files_reports`);
- a report_id already used for a case with the same content is a harmless repost: nothing is
  queued, the answer says it is a duplicate;
- a report_id already used for a case with different content is refused; the first report
  stands;
- otherwise the raw report is queued on the reports topic, keyed by its report_id, with the
  moment it was accepted; it is accepted once the bus has it (else a `BusError`, retryable or
  not, and nothing was recorded). Its case id is known at once: it follows from the report_id.
Every outcome is counted (accepted, duplicate, conflict, rejected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from stopper import metrics
from stopper.app.auth import Caller
from stopper.app.intake import ACCEPTED_AT_HEADER, SOURCE_HEADER, parse_report
from stopper.app.ports import Clock, Publisher
from stopper.domain.cases import case_id_for
from stopper.errors import AuthRefusal, AuthRefused, ReportRejected, ReportRejection
from stopper.registry import Registry


class KnownReports(Protocol):
    async def case_fingerprint(self, case_id: UUID) -> str | None:
        """The fingerprint of the report that opened `case_id`; None if no such case."""
        ...


@dataclass(frozen=True, slots=True)
class AcceptedReport:
    report_id: str
    case_id: UUID
    duplicate: bool  # received before with the same content: nothing new was queued


class ReportAcceptance:
    def __init__(
        self,
        known: KnownReports,
        publisher: Publisher,
        clock: Clock,
        registry: Registry,
        reports_topic: str,
    ) -> None:
        self._known = known
        self._publisher = publisher
        self._clock = clock
        self._registry = registry
        self._topic = reports_topic

    async def accept(self, raw: bytes, who: Caller) -> AcceptedReport:
        try:
            report = parse_report(raw, self._registry)
        except ReportRejected:
            metrics.REPORTS_RECEIVED.labels(outcome="rejected").inc()
            raise
        if not who.sees_agency(report.agency.code):
            metrics.REPORTS_RECEIVED.labels(outcome="rejected").inc()
            raise AuthRefused(
                AuthRefusal.OTHER_AGENCY, "this key files reports for its own agency only"
            )
        case_id = case_id_for(report.report_id)
        known = await self._known.case_fingerprint(case_id)
        if known is not None:
            if known != report.fingerprint():
                metrics.REPORTS_RECEIVED.labels(outcome="conflict").inc()
                raise ReportRejected(
                    ReportRejection.REPORT_ID_REUSED,
                    "report_id was already used for a different report",
                )
            metrics.REPORTS_RECEIVED.labels(outcome="duplicate").inc()
            return AcceptedReport(report.report_id, case_id, duplicate=True)
        await self._publisher.publish(
            self._topic,
            report.report_id,
            raw,
            {ACCEPTED_AT_HEADER: self._clock.now().isoformat(), SOURCE_HEADER: "http"},
        )
        metrics.REPORTS_RECEIVED.labels(outcome="accepted").inc()
        return AcceptedReport(report.report_id, case_id, duplicate=False)
