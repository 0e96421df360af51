"""Reconciliation: Stopper's view of the holds whose outcome it does not know, checked against
each institution's own record.

Business rules:
- every pass asks each institution, in one request (`POST {endpoint}/stops/status`, up to
  `STATUS_QUERY_MAX_KEYS` keys), for the outcome of each of its holds that is `unconfirmed`
  (accepted longer than its `callback_wait_s` ago) or `failed` after a request was sent;
- an outcome is applied as the institution's answer, with the audit cause ``reconciled``; a
  hold it moved had diverged from the institution: logged, counted, and recorded for the
  console (a late truth for a failed hold is applied too: it is the truth about the funds);
- `pending` changes nothing; `unknown` (the institution never received the request) sends an
  unconfirmed hold's request again with the same key, and leaves a failed hold to a person;
- a status that is malformed, about a key that was not asked or another hold, or that
  contradicts a final state, is refused with a counted reason and changes nothing;
- an institution that cannot be reached is skipped until the next pass; it never fails a hold;
- supplements (the extra a trail merge asked) are asked about the same way, by their own keys:
  an outcome applies to the supplement (`SupplementDesk.apply_status`), never moving its hold.
Every hold asked about is counted in `stopper_reconciled_total{outcome}`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from stopper import metrics
from stopper.app.dispatch import Dispatcher
from stopper.app.ports import Clock, ReconcileItem, ReconcileStore
from stopper.app.status_answers import answer_each, record_divergence, refuse_status, said
from stopper.contracts.institutions import STATUS_QUERY_MAX_KEYS
from stopper.domain.holds import HoldState
from stopper.domain.messages import StatusKind, StopStatus
from stopper.errors import InstitutionError
from stopper.registry import Institution

log = logging.getLogger(__name__)

_APPLIED = "applied"


@dataclass
class ReconcileReport:
    """What one pass found: outcomes per institution, and institutions that could not be asked."""

    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)

    def total(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.outcomes.values():
            total.update(counts)
        return total


class Reconciler:
    def __init__(
        self,
        store: ReconcileStore,
        dispatcher: Dispatcher,
        clock: Clock,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._gateway = dispatcher.gateway
        self._registry = dispatcher.gateway.registry
        self._clock = clock

    async def reconcile(self, institution_code: str | None = None) -> ReconcileReport:
        """One pass over every institution (or the one named)."""
        report = ReconcileReport()
        codes = [institution_code] if institution_code is not None else list(self._registry)
        for code in codes:
            institution = self._registry[code]
            try:
                counts = await self._reconcile_one(institution)
            except InstitutionError as e:
                report.unreachable[code] = str(e)
                log.warning(
                    "reconciliation could not ask", extra={"institution": code, "error": str(e)}
                )
                continue
            if counts:
                report.outcomes[code] = counts
        return report

    async def sweep_once(self) -> int:
        """The periodic job: a pass; returns 0 so that the next waits its interval."""
        report = await self.reconcile()
        total = report.total()
        if total[_APPLIED]:
            log.warning("reconciliation moved holds to their institution's record: %s", total)
        return 0

    async def _reconcile_one(self, institution: Institution) -> Counter[str]:
        now = self._clock.now()
        accepted_before = now - timedelta(seconds=institution.callback_wait_s)
        items = await self._store.holds_to_reconcile(
            institution.code, accepted_before, STATUS_QUERY_MAX_KEYS
        )
        if not items:
            return Counter()
        by_key = {item.idempotency_key: item for item in items}
        statuses = await self._gateway.stop_statuses(institution, list(by_key))

        async def apply(item: ReconcileItem, status: StopStatus) -> str:
            if item.state is HoldState.FAILED and status.kind is StatusKind.UNKNOWN:
                return "unknown"  # never received, and Stopper gave up on it: a person acts
            outcome = await self._dispatcher.apply_status(
                status, item.hold_id, item.idempotency_key, institution, via="reconciled"
            )
            if outcome == _APPLIED:
                await record_divergence(
                    self._store,
                    item.hold_id,
                    institution.code,
                    item.state.value,
                    said(status),
                    self._clock.now(),
                    found_by="reconciliation",
                )
            return outcome

        counts = await answer_each(
            statuses,
            by_key,
            apply,
            lambda reason: refuse_status(institution.code, reason),
        )
        for outcome, n in counts.items():
            metrics.RECONCILED.labels(outcome).inc(n)
        return counts
