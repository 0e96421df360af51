"""Stopper's exception hierarchy.

::

    StopperError                      (stopper.domain.errors)
    ├── DomainError                   a business rule was broken: never retried
    │   ├── IllegalTransition         an event the hold's state does not allow
    │   ├── InvalidAmount             an amount outside what the rule allows
    │   └── InconsistentReport        a report whose parts contradict each other
    ├── ConfigurationError            settings or registry unusable: refuse to start
    ├── Refused                       Stopper will not act on what it was sent (never retried);
    │   │                             `reason` says why, the API maps reasons to status codes
    │   ├── ReportRejected            a report that can never become a case (ReportRejection)
    │   ├── CallbackRefused           an institution's callback not taken (CallbackRefusal)
    │   ├── AuthRefused               the caller may not do this (AuthRefusal)
    │   ├── BodyTooLarge              a request body over its limit
    │   ├── KeyRefused                an API key Stopper will not issue
    │   ├── WebhookRefused            a webhook subscription Stopper will not make (its URL)
    │   └── XmlRefused                an ISO 20022 document not read: malformed, too large, with
    │                                 a DOCTYPE or entities, an unknown message, against its
    │                                 schema, or not answering what was asked (XmlRefusal)
    ├── OperatorCommandFailed         an operator command got no answer from Stopper's API
    └── InfrastructureError           a server we depend on misbehaved
        ├── BusError                  the message bus failed a call
        │   ├── BusUnavailable        it could not take or give messages now (retryable)
        │   └── BusRefused            it refuses this very call, e.g. a record too large for the
        │                             broker or a topic we may not write (not retryable)
        ├── StoreUnavailable          the database could not be reached (retryable)
        │   └── SchemaNotReady        reached, but not at this Stopper's schema (retryable: migrate)
        └── InstitutionError          an institution did not give a usable answer
            ├── InstitutionTimeout    no answer within the attempt's timeout (retryable)
            ├── InstitutionUnavailable  refused connection, 5xx (retryable)
            │   └── BreakerOpen       the institution's breaker is open: not even tried (retryable)
            ├── MalformedAnswer       an answer we cannot read (retryable: ask again, same key)
            └── RequestRefused        a 4xx: our request itself is wrong (not retryable)

`InfrastructureError.retryable` tells callers whether trying again may help. A refusal's
`reason` is a small enum (callbacks and authentication count refusals by its value); `detail`
says it to a person and never repeats the input (account numbers and names stay out of errors).

The root and the domain branch live in `stopper.domain.errors`, because the domain imports
nothing from the rest of Stopper; everything else is defined here. A call that breaks a
function's own contract (a negative amount handed to the allocator, a naive datetime handed to
the store) is a bug, not an outcome: it stays a builtin `ValueError`, as a pydantic validator's
does inside a wire model.
"""

from __future__ import annotations

from enum import StrEnum

from stopper.domain.errors import (
    DomainError,
    IllegalTransition,
    InconsistentReport,
    InvalidAmount,
    StopperError,
)

__all__ = [
    "AuthRefusal",
    "AuthRefused",
    "BodyTooLarge",
    "BreakerOpen",
    "BusError",
    "BusRefused",
    "BusUnavailable",
    "CallbackRefusal",
    "CallbackRefused",
    "ConfigurationError",
    "DomainError",
    "IllegalTransition",
    "InconsistentReport",
    "InfrastructureError",
    "InstitutionError",
    "InstitutionTimeout",
    "InstitutionUnavailable",
    "InvalidAmount",
    "KeyRefused",
    "MalformedAnswer",
    "OperatorCommandFailed",
    "Refused",
    "ReportRejected",
    "ReportRejection",
    "RequestRefused",
    "SchemaNotReady",
    "StopperError",
    "StoreUnavailable",
    "WebhookRefused",
    "XmlRefusal",
    "XmlRefused",
]


class ConfigurationError(StopperError):
    """Settings or the registry are unusable; Stopper refuses to start."""


class Refused(StopperError):
    """Stopper will not act on what it was sent; the same request again changes nothing."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class WebhookRefused(Refused):
    """A webhook subscription Stopper will not make: `detail` says what is wrong with its URL
    (answered 422)."""


class ReportRejection(StrEnum):
    UNREADABLE = "unreadable"  # not UTF-8 JSON
    INVALID = "invalid"  # breaks a rule of the report contract or the domain
    REPORT_ID_REUSED = "report_id_reused"  # a known report_id with different content


class ReportRejected(Refused):
    """A report that can never become a case: refused to its sender, or dead-lettered with
    `detail` when it came from the bus. `errors` says where, for a sender to fix it."""

    def __init__(
        self,
        reason: ReportRejection,
        detail: str,
        errors: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.errors = errors or []


class CallbackRefusal(StrEnum):
    UNKNOWN_INSTITUTION = "unknown_institution"
    BAD_SIGNATURE = "bad_signature"  # missing, malformed or not matching
    STALE = "stale"  # timestamp outside the accepted window
    INVALID = "invalid"  # signed, but not a valid callback
    REPLAYED = "replayed"  # the nonce was used before
    NOT_SENT_HERE = "not_sent_here"  # no such request was sent to this institution
    CONFLICT = "conflict"  # the hold's state does not allow this answer


class CallbackRefused(Refused):
    def __init__(self, reason: CallbackRefusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class AuthRefusal(StrEnum):
    MISSING = "missing"  # no key where keys are required
    INVALID = "invalid"  # malformed, unknown, wrong or revoked
    NOT_OPERATOR = "not_operator"
    NOT_INTAKE = "not_intake"  # an operator key filing a report
    OTHER_AGENCY = "other_agency"  # a report of another agency than the key's


class AuthRefused(Refused):
    def __init__(self, reason: AuthRefusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class BodyTooLarge(Refused):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


class KeyRefused(Refused):
    """An API key Stopper will not issue as asked (an intake key belongs to an agency)."""


class XmlRefusal(StrEnum):
    MALFORMED = "malformed"  # not well-formed XML, or not UTF-8
    TOO_LARGE = "too_large"  # over the size limit: not even parsed
    ENTITIES = "entities"  # a DOCTYPE, entity declarations or references: never expanded
    UNKNOWN_MESSAGE = "unknown_message"  # a namespace or root that is not a message read here
    INVALID = "invalid"  # breaks its official schema, or is not what Stopper writes or reads
    UNMATCHED = "unmatched"  # valid, but does not answer what was asked (a return's payouts)


class XmlRefused(Refused):
    """An ISO 20022 document Stopper will not read. `detail` names the rule and where it broke
    (a schema path), never the document's values."""

    def __init__(self, reason: XmlRefusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class OperatorCommandFailed(StopperError):
    """The API could not be reached or refused the question; the message says why."""


class InfrastructureError(StopperError):
    retryable: bool = True


class BusError(InfrastructureError):
    """The message bus failed a call; `retryable` says whether the same call may succeed."""


class BusUnavailable(BusError):
    """The message bus could not take or give messages."""


class BusRefused(BusError):
    """The message bus refuses this call itself (aiokafka: an error not flagged `retriable`):
    the same record or request again fails again, so it is never retried in a loop."""

    retryable = False


class StoreUnavailable(InfrastructureError):
    """The database could not be reached."""


class SchemaNotReady(StoreUnavailable):
    """The database answers, but its schema is not the one this Stopper's migrations end at (a
    table or column missing: `stopper migrate` has not run yet). Retryable: once it has, the same
    call succeeds."""


class InstitutionError(InfrastructureError):
    """An institution did not give a usable answer to one attempt."""

    # True for all but one of the holds a failed request carried (an ISO 20022 message of many
    # holds): its breaker counts the failed request once, not once per hold.
    counted_elsewhere: bool = False


class InstitutionTimeout(InstitutionError):
    """No answer within the attempt's timeout; the institution may still have acted."""


class InstitutionUnavailable(InstitutionError):
    """Connection refused, a 5xx, or the breaker is open."""


class BreakerOpen(InstitutionUnavailable):
    """The institution's circuit breaker is open: the call was not made."""


class MalformedAnswer(InstitutionError):
    """The answer could not be read; asking again with the same key is safe."""


class RequestRefused(InstitutionError):
    """The institution says the request itself is wrong (4xx): trying again will not help."""

    retryable = False
