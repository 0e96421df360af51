"""Stopper's exception hierarchy.

::

    StopperError                      (stopper.domain.errors)
    ├── DomainError                   a business rule was broken: never retried
    │   ├── IllegalTransition         an event the hold's state does not allow
    │   ├── InvalidAmount             an amount outside what the rule allows
    │   └── InconsistentReport        a report whose parts contradict each other
    ├── ConfigurationError            settings or registry unusable: refuse to start
    └── InfrastructureError           a server we depend on misbehaved
        ├── BusUnavailable            the message bus could not take or give messages (retryable)
        ├── StoreUnavailable          the database could not be reached (retryable)
        │   └── SchemaNotReady        reached, but not at this Stopper's schema (retryable: migrate)
        └── InstitutionError          an institution did not give a usable answer
            ├── InstitutionTimeout    no answer within the attempt's timeout (retryable)
            ├── InstitutionUnavailable  refused connection, 5xx (retryable)
            │   └── BreakerOpen       the institution's breaker is open: not even tried (retryable)
            ├── MalformedAnswer       an answer we cannot read (retryable: ask again, same key)
            └── RequestRefused        a 4xx: our request itself is wrong (not retryable)

`InfrastructureError.retryable` tells callers whether trying again may help.
"""

from __future__ import annotations

from stopper.domain.errors import (
    DomainError,
    IllegalTransition,
    InconsistentReport,
    InvalidAmount,
    StopperError,
)

__all__ = [
    "BreakerOpen",
    "BusUnavailable",
    "ConfigurationError",
    "DomainError",
    "IllegalTransition",
    "InconsistentReport",
    "InfrastructureError",
    "InstitutionError",
    "InstitutionTimeout",
    "InstitutionUnavailable",
    "InvalidAmount",
    "MalformedAnswer",
    "RequestRefused",
    "SchemaNotReady",
    "StopperError",
    "StoreUnavailable",
]


class ConfigurationError(StopperError):
    """Settings or the registry are unusable; Stopper refuses to start."""


class InfrastructureError(StopperError):
    retryable: bool = True


class BusUnavailable(InfrastructureError):
    """The message bus could not take or give messages."""


class StoreUnavailable(InfrastructureError):
    """The database could not be reached."""


class SchemaNotReady(StoreUnavailable):
    """The database answers, but its schema is not the one this Stopper's migrations end at (a
    table or column missing: `stopper migrate` has not run yet). Retryable: once it has, the same
    call succeeds."""


class InstitutionError(InfrastructureError):
    """An institution did not give a usable answer to one attempt."""


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
