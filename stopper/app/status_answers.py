"""What reconciliation (`stopper.app.reconcile`) and re-verification (`stopper.app.reverify`)
share: an institution's batched status answer read against the keys asked, and a divergence
found in it logged (without account numbers) and recorded for the console.

Business rules of the reading: each status is about a key that was asked, once; a status about
another key, or a second one about the same key, is refused (`other_request`) and changes
nothing; a key the answer leaves out is `unanswered`. What one status does to the request it is
about (`act_on_status`) is the same ladder for a first request and for a supplement; only how
an answer is recorded and a request sent again differ, and the caller passes those in.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID

from stopper import metrics
from stopper.app.ports import Divergence
from stopper.app.stop_decisions import AnswerOutcome
from stopper.domain.messages import InstitutionAnswer, StatusKind, StopStatus

log = logging.getLogger(__name__)

_Asked = TypeVar("_Asked")


class DivergenceStore(Protocol):
    async def record_divergence(self, divergence: Divergence) -> None: ...


async def answer_each(
    statuses: Sequence[StopStatus],
    asked: Mapping[str, _Asked],
    apply: Callable[[_Asked, StopStatus], Awaitable[str]],
    refuse: Callable[[str], str],
) -> Counter[str]:
    """`apply` each status to what its key asked about; how many keys came to each outcome
    (`refuse(reason)` names a refusal's)."""
    counts: Counter[str] = Counter()
    answered: set[str] = set()
    for status in statuses:
        item = asked.get(status.idempotency_key)
        if item is None or status.idempotency_key in answered:
            counts[refuse("other_request")] += 1
            continue
        answered.add(status.idempotency_key)
        counts[await apply(item, status)] += 1
    missing = len(asked) - len(answered)
    if missing:
        counts["unanswered"] += missing
    return counts


def refuse_status(institution_code: str, reason: str) -> str:
    """A status answer refused: counted and logged; `reason` is the outcome to report."""
    metrics.STATUS_REFUSED.labels(institution_code, reason).inc()
    log.warning("status answer refused", extra={"institution": institution_code, "reason": reason})
    return reason


async def act_on_status(
    status: StopStatus,
    hold_id: UUID,
    key: str,
    institution_code: str,
    *,
    record_answer: Callable[[InstitutionAnswer], Awaitable[AnswerOutcome]],
    resend: Callable[[], Awaitable[bool]],
    on_pending: Callable[[], Awaitable[None]] | None = None,
) -> str:
    """Act on what an institution's record says of the request `key` of `hold_id` (a status
    inquiry, or reconciliation): an outcome is applied as its answer (`record_answer`);
    `pending` waits (`on_pending`); `unknown`, the institution never received it, sends an
    accepted request again (`resend`: False when nothing was owed). Returns what happened:
    applied, matched (Stopper already said so), pending, resent, unknown, or the reason the
    status was refused (`other_request`, `other_hold`, `malformed`, `contradicts_final`,
    `lifted`)."""
    if status.idempotency_key != key:
        return refuse_status(institution_code, "other_request")
    if status.hold_id is not None and status.hold_id != hold_id:
        return refuse_status(institution_code, "other_hold")
    if status.kind is StatusKind.ANSWERED:
        if status.answer is None:
            return refuse_status(institution_code, "malformed")
        outcome = await record_answer(status.answer)
        if outcome is AnswerOutcome.CONFLICT:
            return refuse_status(institution_code, "contradicts_final")
        return "matched" if outcome is AnswerOutcome.REPEATED else outcome.value
    if status.kind is StatusKind.PENDING:
        if on_pending is not None:
            await on_pending()
        return "pending"
    if status.kind is StatusKind.LIFTED:
        # Carried out and lifted since: no answer for a request still owed (re-verification
        # reads it of stopped holds, `stopper.app.reverify`).
        return refuse_status(institution_code, "lifted")
    return "resent" if await resend() else "unknown"


def said(status: StopStatus) -> str:
    """What the institution's record says, in a word: its answer, or the status's kind."""
    return status.answer.kind.value if status.answer is not None else status.kind.value


async def record_divergence(
    store: DivergenceStore,
    hold_id: UUID,
    institution_code: str,
    stopper_state: str,
    institution_status: str,
    at: datetime,
    found_by: str,
) -> None:
    log.warning(
        "divergence: Stopper's state differed from the institution's record",
        extra={
            "hold_id": str(hold_id),
            "institution": institution_code,
            "stopper_state": stopper_state,
            "institution_status": institution_status,
            "found_by": found_by,
        },
    )
    await store.record_divergence(
        Divergence(hold_id, institution_code, stopper_state, institution_status, at, found_by)
    )
