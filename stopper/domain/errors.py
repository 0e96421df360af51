"""The root of Stopper's exception hierarchy and the domain's own errors.

The root lives here because the domain imports nothing from the rest of `stopper`; the
whole tree is drawn in `stopper.errors`.
"""

from __future__ import annotations


class StopperError(Exception):
    """Root of every error Stopper raises on purpose."""


class DomainError(StopperError):
    """A business rule was broken; retrying the same thing will not help."""


class IllegalTransition(DomainError):
    """An event arrived that the hold's current state does not allow."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"event {event!r} is not allowed in state {state!r}")
        self.state = state
        self.event = event


class InvalidAmount(DomainError):
    """An amount outside what the rule allows (negative, or more than was asked)."""


class InconsistentReport(DomainError):
    """A report whose parts contradict each other (e.g. one account in two currencies)."""
