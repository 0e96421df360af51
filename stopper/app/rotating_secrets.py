"""Shared secrets that rotate without an outage.

A secret shared with another party (an institution's callback secret; the seam for an
agency's webhook secret, issue #17) is a `RotatingSecret`: `current` signs and verifies;
during a rotation window `previous` still verifies, so messages signed on either side of the
switch are taken while the other party moves to the new secret at its own pace. Outside a
window there is no `previous`, and only the current secret verifies.

Stopper verifies what institutions sign and signs what agencies verify (#17): the signer
uses `signs_with`, the verifier `verifies`, so a rotation works the same whichever side Stopper
is on. README ("Rotating a callback secret") gives the steps.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stopper.contracts.signing import signature_matches


class SecretUsed(enum.StrEnum):
    """Which value of a rotating secret verified a signature."""

    CURRENT = "current"
    PREVIOUS = "previous"


@dataclass(frozen=True, slots=True)
class RotatingSecret:
    current: str
    previous: str | None = None  # set only during a rotation window

    @property
    def signs_with(self) -> str:
        return self.current

    def verifies(
        self, timestamp: int, nonce: str, body: bytes, signature: str
    ) -> SecretUsed | None:
        """Which value the signature was made with, or None: made with neither. Both values
        are always checked, so the time taken does not tell which one matched."""
        current = signature_matches(self.current, timestamp, nonce, body, signature)
        previous = self.previous is not None and signature_matches(
            self.previous, timestamp, nonce, body, signature
        )
        if current:
            return SecretUsed.CURRENT
        return SecretUsed.PREVIOUS if previous else None
