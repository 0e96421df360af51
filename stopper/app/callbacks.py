"""Institution callbacks: the later answer to a stop request, signed by the institution.

Business rules:
- the institution must be in the registry (else `unknown_institution`);
- the signature (HMAC-SHA256 over timestamp, nonce and body, with the institution's own
  secret) must match (`bad_signature`), and the timestamp must lie within the window (default
  5 minutes; `stale`); a signed body must be a valid callback (`invalid`);
- a nonce is accepted once per institution: a replay is refused (`replayed`; remembered in the
  same transaction as the answer it brings: one share of a group commit per callback);
- an institution may answer only about a request Stopper sent to it, with the key it sent
  (`not_sent_here`);
- a valid answer moves the hold; the same answer again changes nothing; an answer the hold's
  state does not allow is refused (`conflict`).
Refusals are `CallbackRefused` with one of these reasons (the API maps them to status codes);
every refusal is counted by institution and reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from pydantic import ValidationError

from stopper import metrics
from stopper.app.dispatch import Dispatcher
from stopper.app.ports import CallbackNonce, Clock, HoldRecord
from stopper.app.stop_decisions import AnswerOutcome
from stopper.contracts.institutions import CallbackV1
from stopper.contracts.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_matches,
)
from stopper.domain.holds import idempotency_key_for
from stopper.errors import CallbackRefusal, CallbackRefused
from stopper.registry import Registry


@dataclass(frozen=True, slots=True)
class CallbackResult:
    hold_id: UUID
    outcome: AnswerOutcome


class CallbackHandler:
    def __init__(
        self,
        dispatcher: Dispatcher,
        registry: Registry,
        clock: Clock,
        secret_for: Mapping[str, str],
        window_s: int,
    ) -> None:
        self._dispatcher = dispatcher
        self._registry = registry
        self._clock = clock
        self._secrets = secret_for
        self._window_s = window_s

    async def handle(self, code: str, headers: Mapping[str, str], body: bytes) -> CallbackResult:
        try:
            result = await self._handle(code, headers, body)
        except CallbackRefused as refused:
            metrics.CALLBACKS.labels(self._label(code), refused.reason.value).inc()
            raise
        metrics.CALLBACKS.labels(code, result.outcome.value).inc()
        return result

    def _label(self, code: str) -> str:
        # Metric labels only ever carry registry codes, not whatever a caller put in the URL.
        return code if code in self._registry else "unknown"

    async def _handle(self, code: str, headers: Mapping[str, str], body: bytes) -> CallbackResult:
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
        secret = self._secrets[institution.callback_secret_ref]
        if not signature_matches(secret, timestamp, nonce, body, signature):
            raise CallbackRefused(CallbackRefusal.BAD_SIGNATURE, "signature does not match")
        try:
            callback = CallbackV1.model_validate_json(body)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise CallbackRefused(CallbackRefusal.INVALID, f"{where}: {first['msg']}") from e

        def sent_here(record: HoldRecord) -> bool:
            hold = record.hold
            sent_keys = {idempotency_key_for(hold.id, g) for g in range(hold.reapplications + 1)}
            return (
                hold.institution_code == code
                and record.attempts > 0
                and callback.idempotency_key in sent_keys
            )

        # One transaction, shared with whatever else is being decided: the nonce, the checks on
        # the locked row, and the answer.
        outcome = await self._dispatcher.record_answer(
            callback.hold_id,
            callback.to_domain(),
            actor=f"institution:{code}",
            via="institution callback",
            sent_here=sent_here,
            nonce=CallbackNonce(code, nonce, now),
        )
        if outcome is AnswerOutcome.REPLAYED:
            raise CallbackRefused(CallbackRefusal.REPLAYED, "nonce already used")
        if outcome in (AnswerOutcome.NOT_SENT_HERE, AnswerOutcome.UNKNOWN_HOLD):
            raise CallbackRefused(CallbackRefusal.NOT_SENT_HERE, "no such request was sent to you")
        if outcome is AnswerOutcome.CONFLICT:
            raise CallbackRefused(
                CallbackRefusal.CONFLICT, "the hold's state does not allow this answer"
            )
        return CallbackResult(callback.hold_id, outcome)
