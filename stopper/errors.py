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
        └── StoreUnavailable          the database could not be reached (retryable)

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
    "BusUnavailable",
    "ConfigurationError",
    "DomainError",
    "IllegalTransition",
    "InconsistentReport",
    "InfrastructureError",
    "InvalidAmount",
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
