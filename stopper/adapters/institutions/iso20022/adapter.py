"""`Iso20022Adapter`: stop requests as camt.056.001.08, many holds per message, answered by
camt.029.001.09 at once or by signed callback.

    POST {endpoint}/iso20022/camt.056   camt.056 XML (application/xml), Idempotency-Key: the
                                        message id -> 200 camt.029 XML with a status per
                                        transaction | 202 (empty: the answers follow by callback,
                                        POST /v1/institutions/{code}/callbacks/iso20022) | 400
                                        with the schema error
    POST {endpoint}/iso20022/return     a return instruction (camt.056, one TxInf per payout)
                                        -> 200 pacs.004 (one TxInf per payout paid) or camt.029
                                        RJCR (refused)

The port stays one call per hold (`request_stop`); behind it, each institution's concurrent calls
are gathered into one message (`RequestBatcher`: a lone request leaves at once; while messages
are in flight, requests wait at most `batch_window_ms` for others; at most `batch_size` holds
per message and `concurrency` messages at once). Per message:
- a message id of its own (`STP` + UTC time + 18 random hex digits: 35 characters, the most
  `Assgnmt/Id` takes), recorded with the holds it carries before the message leaves, so an
  integrator's question about a message id leads to the holds (`iso20022_messages`);
- each hold one `TxInf`, naming the payments into the account (the report's transfers, or for
  a trail hold the onward transfer that reached it) and the case's agency, read for the whole
  batch in one query, in the transaction that records the message (`MessageStore.
  record_messages`; the messages of a burst, to every institution, share one);
- each caller gets its own hold's answer: ACCR/CNCL stopped with the amount held and the onward
  transfers, RJCR not_found or rejected by its reason, PDCR accepted (the outcome follows by
  callback), or `MalformedAnswer` for an answer Stopper cannot read (an unknown reason code,
  no answer for it at all: counted in `stopper_iso20022_answers_refused_total`, never guessed);
- a failed message fails each of its holds with the same kind of `InstitutionError`: timeout,
  unavailable (5xx, unreachable), refused (4xx: the message itself is wrong), malformed (an
  answer that is not a valid camt.029, or one answering another message), the institution's
  breaker counting the message once;
- the exchange is bounded by the institution's timeout from when the message leaves, as a
  JSON request's is; before that a hold waits for the window, a free message slot (at most one
  exchange of the institution's messages in flight: the gateway lets no more holds in than its
  messages carry) and the record of its message, Stopper's own part, as a JSON request waits
  for the gateway's slot: not the institution's time, and not counted against its breaker
  (a caller's own timeout, a backstop, is not either: the message's is).
A return order is done only once a pacs.004 matches every payout of it (by reference, currency,
account, never more than asked); a camt.029 RJCR refuses it with its reason; anything else is
`MalformedAnswer` (asked again with the same key: the institution pays once per key). What is
not ISO 20022 here, on today's JSON routes (`HttpJsonAdapter`): status inquiries and
reconciliation (camt.087/camt.027 are out of scope), formal freezes (the recall
conversation has no freeze message: a freeze is a legal order, not a recall), and releases
(none of camt.056, camt.029 and pacs.004 lifts a stop: `POST {endpoint}/releases`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC
from uuid import UUID

from stopper import metrics
from stopper.adapters.institutions.batching import RequestBatcher
from stopper.adapters.institutions.http_json import HttpJsonAdapter, Response
from stopper.adapters.institutions.iso20022.documents import Message, parse_document
from stopper.adapters.institutions.iso20022.model import (
    Recall,
    RecallItem,
    Resolution,
    ResolvedItem,
    ReturnInstruction,
)
from stopper.adapters.institutions.iso20022.recall import build_recall
from stopper.adapters.institutions.iso20022.resolution import read_resolution
from stopper.adapters.institutions.iso20022.returns import (
    build_return_instruction,
    read_return_answer,
)
from stopper.app.message_ports import MessageStore, SentMessage, StopGrounds
from stopper.app.ports import Clock
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OrderAnswer,
    OrderFreeze,
    OrderRelease,
    OrderReturn,
    RequestStop,
    StatusKind,
    StopStatus,
)
from stopper.domain.mules import is_flagged
from stopper.errors import (
    InstitutionError,
    InstitutionTimeout,
    MalformedAnswer,
    RequestRefused,
    XmlRefused,
)
from stopper.registry import Institution

# How much longer than the institution's timeout a caller waits for its message's answer,
# once the message left: the transport's timeout fails the message first.
ANSWER_SLACK_S = 0.5
# Messages recorded in one transaction at most, and how long a record may take (the store's
# own statement timeout is the real bound; this one only keeps a caller from waiting forever).
RECORDS_PER_TRANSACTION = 200
STORE_TIMEOUT_S = 30.0
# Who asks, in every message's Assgnr and each transaction's case creator.
SENDER = "STOPPER"
RECALL_OPERATION = "iso20022/camt.056"
RETURN_OPERATION = "iso20022/return"
XML = "application/xml"
ACCEPTED = InstitutionAnswer(AnswerKind.ACCEPTED)
# What of an institution's 400 is kept in the error (its schema message).
_DETAIL_LIMIT = 300
_DIGITS = re.compile(r"\d{5,}")


class Iso20022Adapter:
    def __init__(
        self,
        transport: HttpJsonAdapter,
        store: MessageStore,
        clock: Clock,
        *,
        sender: str = SENDER,
    ) -> None:
        self._http = transport
        self._store = store
        self._clock = clock
        self._sender = sender
        self._batchers: dict[str, RequestBatcher[RequestStop, InstitutionAnswer]] = {}
        # The messages about to leave, to every institution, recorded (and their holds' grounds
        # read) together: one transaction for all the messages of a burst, not one each.
        self._records: RequestBatcher[SentMessage, dict[UUID, StopGrounds]] = RequestBatcher(
            self._record, max_batch=RECORDS_PER_TRANSACTION, window_s=0.0, max_in_flight=2
        )

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()
        await self._records.close()

    # --- the port ---------------------------------------------------------------------------

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        # From when its message leaves (after the window, a free message slot and the
        # message's record: Stopper's own part), the exchange; the transport's own timeout
        # ends it first, this one is a backstop.
        answer_s = institution.timeout_ms / 1000 + ANSWER_SLACK_S
        try:
            return await self._batcher(institution).call(
                request, answer_s, first=is_flagged(request.mule_cases)
            )
        except TimeoutError as e:
            raise _shared(InstitutionTimeout(f"no answer within {answer_s * 1000:.0f} ms")) from e

    async def stop_status(self, institution: Institution, idempotency_key: str) -> StopStatus:
        return await self._http.stop_status(institution, idempotency_key)

    async def stop_statuses(
        self, institution: Institution, idempotency_keys: Sequence[str]
    ) -> list[StopStatus]:
        return await self._http.stop_statuses(institution, idempotency_keys)

    async def request_freeze(self, institution: Institution, request: OrderFreeze) -> OrderAnswer:
        return await self._http.request_freeze(institution, request)

    async def request_release(self, institution: Institution, request: OrderRelease) -> OrderAnswer:
        return await self._http.request_release(institution, request)

    async def request_return(self, institution: Institution, request: OrderReturn) -> OrderAnswer:
        """The return instruction (a camt.056 of one TxInf per payout), done only once a pacs.004
        matches every payout (a camt.029 RJCR refuses it; anything else is unreadable)."""
        message_id = self.new_message_id()
        now = self._clock.now()
        await self._records.call(
            SentMessage(
                message_id,
                Message.CAMT_056.value,
                institution.code,
                now,
                [(request.hold_id, request.idempotency_key)],
            ),
            STORE_TIMEOUT_S,
        )
        instruction = ReturnInstruction(message_id, now, self._sender, institution.code, request)
        metrics.ISO20022_MESSAGES.labels(institution.code, "return").inc()
        response = await self._http.send(
            institution,
            "POST",
            RETURN_OPERATION,
            build_return_instruction(instruction),
            message_id,
            expected_4xx=(400,),
            content_type=XML,
        )
        if response.status_code == 400:
            raise RequestRefused(f"return instruction refused: {_detail(response)}")
        if response.status_code != 200:
            raise MalformedAnswer(f"return instruction answered HTTP {response.status_code}")
        try:
            return read_return_answer(parse_document(response.content), request)
        except XmlRefused as e:
            metrics.ISO20022_REFUSED.labels(institution.code, e.reason.value).inc()
            raise MalformedAnswer(f"unreadable return answer ({e.reason.value}): {e.detail}") from e

    # --- one message per batch ----------------------------------------------------------------

    def _batcher(self, institution: Institution) -> RequestBatcher[RequestStop, InstitutionAnswer]:
        batcher = self._batchers.get(institution.code)
        if batcher is None:

            async def send(
                requests: Sequence[RequestStop], leaving: Callable[[], None]
            ) -> list[InstitutionAnswer | Exception]:
                return await self._recall(institution, requests, leaving)

            batcher = self._batchers[institution.code] = RequestBatcher(
                send,
                max_batch=institution.batch_size,
                window_s=institution.batch_window_ms / 1000,
                max_in_flight=institution.concurrency,
            )
        return batcher

    async def _record(
        self, messages: Sequence[SentMessage], leaving: Callable[[], None]
    ) -> list[dict[UUID, StopGrounds] | Exception]:
        leaving()  # the store's call is what it waits for
        grounds = await self._store.record_messages(messages)
        return [{h: grounds[h] for h, _ in m.holds if h in grounds} for m in messages]

    def new_message_id(self) -> str:
        """Unique per message: the time to the second, then 72 random bits."""
        return f"STP{self._clock.now().astimezone(UTC):%Y%m%d%H%M%S}{secrets.token_hex(9)}"

    async def _recall(
        self,
        institution: Institution,
        requests: Sequence[RequestStop],
        leaving: Callable[[], None],
    ) -> list[InstitutionAnswer | Exception]:
        """One camt.056 for `requests`; each request's answer, or the error it fails with."""
        message_id = self.new_message_id()
        now = self._clock.now()
        grounds = await self._records.call(
            SentMessage(
                message_id,
                Message.CAMT_056.value,
                institution.code,
                now,
                [(r.hold_id, r.idempotency_key) for r in requests],
            ),
            STORE_TIMEOUT_S,
        )
        # A hold missing from the store (it cannot be: it was just claimed) is not asked for.
        known = [r for r in requests if r.hold_id in grounds]
        outcomes: dict[str, InstitutionAnswer | Exception] = {}
        if known:
            recall = Recall(
                message_id=message_id,
                created_at=now,
                sender=self._sender,
                receiver=institution.code,
                items=tuple(_item(r, grounds[r.hold_id]) for r in known),
            )
            metrics.ISO20022_MESSAGES.labels(institution.code, Message.CAMT_056.value).inc()
            metrics.ISO20022_HOLDS_PER_MESSAGE.observe(len(known))
            leaving()
            try:
                outcomes = await self._send(institution, recall)
            except InstitutionError as e:
                # Each caller raises an error of its own (the same kind and words), chained to
                # the message's; the institution's breaker counts the message once.
                return [_copy(e, counted_elsewhere=n > 0) for n in range(len(requests))]
        answered: list[InstitutionAnswer | Exception] = []
        for r in requests:
            outcome = outcomes.get(r.idempotency_key)
            if outcome is None:
                outcome = (
                    _missing(institution)
                    if r.hold_id in grounds
                    else RequestRefused("the hold is not in the store")
                )
            answered.append(outcome)
        return answered

    async def _send(
        self, institution: Institution, recall: Recall
    ) -> dict[str, InstitutionAnswer | Exception]:
        response = await self._http.send(
            institution,
            "POST",
            RECALL_OPERATION,
            build_recall(recall),
            recall.message_id,
            expected_4xx=(400,),
            content_type=XML,
        )
        if response.status_code == 400:
            raise RequestRefused(f"camt.056 refused: {_detail(response)}")
        if response.status_code == 202:
            return {item.request.idempotency_key: ACCEPTED for item in recall.items}
        if response.status_code != 200:
            raise MalformedAnswer(f"camt.056 answered HTTP {response.status_code}")
        try:
            resolution = read_resolution(parse_document(response.content))
        except XmlRefused as e:
            metrics.ISO20022_REFUSED.labels(institution.code, e.reason.value).inc()
            raise MalformedAnswer(f"unreadable camt.029 ({e.reason.value}): {e.detail}") from e
        if resolution.answers_message_id not in (None, recall.message_id):
            metrics.ISO20022_REFUSED.labels(institution.code, "other_message").inc()
            raise MalformedAnswer("the camt.029 answers another message")
        return _answers(institution, recall, resolution)


def _item(request: RequestStop, grounds: StopGrounds) -> RecallItem:
    return RecallItem(request=request, payments=grounds.payments, agency_code=grounds.agency_code)


def _answers(
    institution: Institution, recall: Recall, resolution: Resolution
) -> dict[str, InstitutionAnswer | Exception]:
    """Each request's answer in the camt.029, by idempotency key (a key it does not answer is
    left out: `_missing`)."""
    asked = {item.request.idempotency_key: item.request for item in recall.items}
    answers: dict[str, InstitutionAnswer | Exception] = {}
    for item in resolution.items:
        request = asked.get(item.idempotency_key)
        if request is None or item.idempotency_key in answers:
            continue  # not asked in this message, or answered twice: the first counts
        answers[item.idempotency_key] = _answer(institution, request, item)
    return answers


def _answer(
    institution: Institution, request: RequestStop, item: ResolvedItem
) -> InstitutionAnswer | Exception:
    if item.refusal is not None:
        metrics.ISO20022_REFUSED.labels(institution.code, item.refusal.value).inc()
        return MalformedAnswer(f"unreadable answer ({item.refusal.value}): {item.detail}")
    status = item.status
    if status is None or status.hold_id not in (None, request.hold_id):
        metrics.ISO20022_REFUSED.labels(institution.code, "other_hold").inc()
        return MalformedAnswer("the answer names another hold")
    if status.kind is StatusKind.PENDING:
        return ACCEPTED
    if status.kind is StatusKind.ANSWERED and status.answer is not None:
        return status.answer
    return MalformedAnswer(f"status {status.kind.value} is no answer to a stop request")


def _missing(institution: Institution) -> MalformedAnswer:
    metrics.ISO20022_REFUSED.labels(institution.code, "missing").inc()
    return MalformedAnswer("the camt.029 has no answer for this request")


def _shared(error: InstitutionTimeout) -> InstitutionTimeout:
    """A caller's own timeout: the slowness of the institution's messages is counted against
    its breaker by the messages (their own timeouts), not once per hold waiting on them."""
    error.counted_elsewhere = True
    return error


def _copy(error: InstitutionError, *, counted_elsewhere: bool) -> InstitutionError:
    copy = type(error)(str(error))
    copy.__cause__ = error
    copy.counted_elsewhere = counted_elsewhere
    return copy


def _detail(response: Response) -> str:
    """What an institution's refusal says (a schema error), without anything that could be
    an account number: it may quote the message."""
    text = response.content[:_DETAIL_LIMIT].decode("utf-8", "replace")
    return _DIGITS.sub("…", " ".join(text.split())) or f"HTTP {response.status_code}"
