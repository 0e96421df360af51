"""Institution callbacks: the later answer to a stop request, signed by the institution.

Business rules:
- the institution must be in the registry (else `unknown_institution`);
- the signature (HMAC-SHA256 over timestamp, nonce and body, with the institution's own
  secret; during a rotation window its current or its previous one, `RotatingSecret`) must
  match (`bad_signature`; one verified by the previous secret is counted, so operators see
  when the institution has switched), and the timestamp must lie within the window (default
  5 minutes; `stale`); a signed body must be a valid callback (`invalid`), its amounts
  decimal strings (an integer of minor units, the form of before, is still read and counted
  in `stopper_legacy_amounts_total` during the transition);
- a nonce is accepted once per institution: a replay is refused (`replayed`; remembered in the
  same transaction as the answer it brings: one share of a group commit per callback);
- an institution may answer only about a request Stopper sent to it, with the key it sent
  (`not_sent_here`); a supplement's key (`stopper.domain.supplements`) answers that supplement;
- a valid answer moves the hold; the same answer again changes nothing; an answer the hold's
  state does not allow is refused (`conflict`).
Refusals are `CallbackRefused` with one of these reasons (the API maps them to status codes);
every refusal is counted by institution and reason.

A callback may carry many answers (ISO 20022: a camt.029 with a status per transaction,
`handle_items`): the signature, window and nonce are checked once for the whole body, each
answer is applied on its own (nonce derived from the callback's and the answer's place in it,
so a replay of the body replays every answer), and each outcome is counted. The body's own
reader refuses what it cannot read (`Refused`, counted by its reason); an answer it cannot read
is refused alone. A callback that moved nothing and refused some of its answers (a replay, say)
is refused with the first refusal's reason.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from pydantic import ValidationError

from stopper import metrics
from stopper.app.dispatch import Dispatcher
from stopper.app.ports import CallbackNonce, Clock, HoldRecord
from stopper.app.rotating_secrets import RotatingSecret, SecretUsed
from stopper.app.stop_decisions import AnswerOutcome
from stopper.app.supplement_ports import SupplementRecord
from stopper.contracts.amounts import LegacyForms
from stopper.contracts.institutions import CallbackV1
from stopper.contracts.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)
from stopper.domain.holds import idempotency_key_for
from stopper.domain.messages import InstitutionAnswer
from stopper.domain.supplements import supplement_of_key
from stopper.errors import CallbackRefusal, CallbackRefused, Refused
from stopper.registry import Registry


@dataclass(frozen=True, slots=True)
class CallbackResult:
    hold_id: UUID
    outcome: AnswerOutcome


@dataclass(frozen=True, slots=True)
class CallbackItem:
    """One answer a callback carries, as its reader understood it."""

    idempotency_key: str
    hold_id: UUID | None
    answer: InstitutionAnswer | None  # None: the institution says it is still pending
    refusal: CallbackRefused | None = None  # why this answer cannot be taken (read as nothing)


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What became of one answer of a callback: an `AnswerOutcome` value, `pending`, or the
    reason it was refused (`refused` set)."""

    idempotency_key: str
    hold_id: UUID | None
    outcome: str
    refused: CallbackRefused | None = None


# The outcome of an answer that says the request is still pending there: nothing to apply.
PENDING = "pending"


@dataclass(frozen=True, slots=True)
class _Signed:
    code: str
    nonce: str
    received_at: datetime


class CallbackHandler:
    def __init__(
        self,
        dispatcher: Dispatcher,
        registry: Registry,
        clock: Clock,
        secret_for: Mapping[str, RotatingSecret],
        window_s: int,
    ) -> None:
        self._dispatcher = dispatcher
        self._registry = registry
        self._clock = clock
        self._secrets = secret_for
        self._window_s = window_s

    async def handle(self, code: str, headers: Mapping[str, str], body: bytes) -> CallbackResult:
        """A JSON callback (`CallbackV1`): one answer."""
        try:
            signed = self._verify(code, headers, body)
            forms = LegacyForms()
            try:
                callback = CallbackV1.model_validate_json(body, context=forms.context())
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "body"
                raise CallbackRefused(CallbackRefusal.INVALID, f"{where}: {first['msg']}") from e
            if forms.count:
                metrics.LEGACY_AMOUNTS.labels("callback", code).inc()
            outcome = await self._apply(
                signed,
                CallbackItem(callback.idempotency_key, callback.hold_id, callback.to_domain()),
                signed.nonce,
            )
        except CallbackRefused as refused:
            metrics.CALLBACKS.labels(self._label(code), refused.reason.value).inc()
            raise
        metrics.CALLBACKS.labels(code, outcome).inc()
        return CallbackResult(callback.hold_id, AnswerOutcome(outcome))

    async def handle_items(
        self,
        code: str,
        headers: Mapping[str, str],
        body: bytes,
        read: Callable[[bytes], Sequence[CallbackItem]],
    ) -> list[ItemResult]:
        """A callback carrying many answers, read by `read` (which raises a `Refused` for a
        body it cannot read), each applied on its own; one result per answer, in order."""
        try:
            signed = self._verify(code, headers, body)
            # Read only once signed: an unknown sender's document is never parsed.
            items = read(body)
        except Refused as refused:
            metrics.CALLBACKS.labels(self._label(code), _reason(refused)).inc()
            raise
        results = await asyncio.gather(
            *(self._apply_item(signed, item, index) for index, item in enumerate(items))
        )
        for result in results:
            metrics.CALLBACKS.labels(code, result.outcome).inc()
        refusals = [r.refused for r in results if r.refused is not None]
        if refusals and all(r.outcome == PENDING for r in results if r.refused is None):
            raise refusals[0]  # nothing was taken (a replay, say): refused as a whole
        return list(results)

    def _label(self, code: str) -> str:
        # Metric labels only ever carry registry codes, not whatever a caller put in the URL.
        return code if code in self._registry else "unknown"

    def _verify(self, code: str, headers: Mapping[str, str], body: bytes) -> _Signed:
        """The institution, signature and window of a callback, checked before anything in its
        body is read."""
        institution = self._registry.get(code)
        if institution is None:
            raise CallbackRefused(CallbackRefusal.UNKNOWN_INSTITUTION, "no such institution")
        timestamp_text = headers.get(TIMESTAMP_HEADER.lower(), "")
        nonce = headers.get(NONCE_HEADER.lower(), "")
        signature = headers.get(SIGNATURE_HEADER.lower(), "")
        if not (timestamp_text.isdigit() and 8 <= len(nonce) <= 64 and signature):
            raise CallbackRefused(
                CallbackRefusal.BAD_SIGNATURE, "missing or malformed signature headers"
            )
        timestamp = int(timestamp_text)
        now = self._clock.now()
        if abs(now.timestamp() - timestamp) > self._window_s:
            raise CallbackRefused(CallbackRefusal.STALE, "timestamp outside the accepted window")
        used = self._secrets[institution.callback_secret_ref].verifies(
            timestamp, nonce, body, signature
        )
        if used is None:
            raise CallbackRefused(CallbackRefusal.BAD_SIGNATURE, "signature does not match")
        if used is SecretUsed.PREVIOUS:
            metrics.CALLBACKS_PREVIOUS_SECRET.labels(code).inc()
        return _Signed(code, nonce, now)

    async def _apply_item(self, signed: _Signed, item: CallbackItem, index: int) -> ItemResult:
        # The item's own nonce: one per answer and place, so each is remembered (and a replay of
        # the body refused) in the transaction of its own answer, whichever batch that is.
        nonce = hashlib.sha256(f"{signed.nonce}:{index}".encode()).hexdigest()
        try:
            if item.refusal is not None:
                raise item.refusal
            outcome = await self._apply(signed, item, nonce)
        except CallbackRefused as refused:
            return ItemResult(item.idempotency_key, item.hold_id, refused.reason.value, refused)
        return ItemResult(item.idempotency_key, item.hold_id, outcome)

    async def _apply(self, signed: _Signed, item: CallbackItem, nonce: str) -> str:
        """One answer, applied with its nonce: an `AnswerOutcome` value or `pending`."""
        code = signed.code
        hold_id = item.hold_id
        if hold_id is None:
            raise CallbackRefused(CallbackRefusal.NOT_SENT_HERE, "no such request was sent to you")
        if item.answer is None:
            return PENDING
        supplement = supplement_of_key(item.idempotency_key)
        if supplement is not None:
            return await self._apply_supplement(signed, item, item.answer, supplement, nonce)

        def sent_here(record: HoldRecord) -> bool:
            hold = record.hold
            sent_keys = {idempotency_key_for(hold.id, g) for g in range(hold.reapplications + 1)}
            return (
                hold.institution_code == code
                and record.attempts > 0
                and item.idempotency_key in sent_keys
            )

        # One transaction, shared with whatever else is being decided: the nonce, the checks on
        # the locked row, and the answer.
        outcome = await self._dispatcher.record_answer(
            hold_id,
            item.answer,
            actor=f"institution:{code}",
            via="institution callback",
            sent_here=sent_here,
            nonce=CallbackNonce(code, nonce, signed.received_at),
        )
        return _refused_unless_taken(outcome)

    async def _apply_supplement(
        self,
        signed: _Signed,
        item: CallbackItem,
        answer: InstitutionAnswer,
        supplement: tuple[UUID, int],
        nonce: str,
    ) -> str:
        """An answer to a supplement: its hold named, and sent to this institution."""
        hold_id, number = supplement
        code = signed.code
        if hold_id != item.hold_id:
            raise CallbackRefused(CallbackRefusal.NOT_SENT_HERE, "no such request was sent to you")

        def sent_here(record: HoldRecord, s: SupplementRecord) -> bool:
            return record.hold.institution_code == code and s.attempts > 0

        outcome = await self._dispatcher.supplements.record_answer(
            hold_id,
            number,
            answer,
            actor=f"institution:{code}",
            via="institution callback",
            sent_here=sent_here,
            nonce=CallbackNonce(code, nonce, signed.received_at),
        )
        return _refused_unless_taken(outcome)


def _refused_unless_taken(outcome: AnswerOutcome) -> str:
    """An answer's outcome, or the refusal it is."""
    if outcome is AnswerOutcome.REPLAYED:
        raise CallbackRefused(CallbackRefusal.REPLAYED, "nonce already used")
    if outcome in (AnswerOutcome.NOT_SENT_HERE, AnswerOutcome.UNKNOWN_HOLD):
        raise CallbackRefused(CallbackRefusal.NOT_SENT_HERE, "no such request was sent to you")
    if outcome is AnswerOutcome.CONFLICT:
        raise CallbackRefused(
            CallbackRefusal.CONFLICT, "the hold's state does not allow this answer"
        )
    return outcome.value


def _reason(refused: Refused) -> str:
    """A refusal's counted reason: its `reason` enum where it has one (callbacks', documents'
    own), else its kind."""
    reason = getattr(refused, "reason", None)
    return str(reason) if reason is not None else type(refused).__name__
