"""What reconciliation (`stopper.app.reconcile`) and re-verification (`stopper.app.reverify`)
share: an institution's batched status answer read against the keys asked, and a divergence
found in it logged (without account numbers) and recorded for the console.

Business rules of the reading: each status is about a key that was asked, once; a status about
another key, or a second one about the same key, is refused (`other_request`) and changes
nothing; a key the answer leaves out is `unanswered`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID

from stopper.app.ports import Divergence
from stopper.domain.messages import StopStatus

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
