"""Who is calling: per-agency API keys, stored hashed.

A key looks like ``stk_<key id>_<secret>``. Stopper keeps only the key id, the SHA-256 of the
secret (a random 256-bit secret needs no slow hash), the agency it belongs to and its role:

- ``intake``: a police intake system. It files reports for its own agency only, sees only
  its own agency's cases, and may withdraw them (their holds are released).
- ``operator``: the anti-fraud centre. It sees every case and acts on holds (freeze, re-apply,
  return, release), lists, institution health and the console; it files no reports.

An operator key names its **holder**, the person it was made for (``stopper keys add --role
operator --holder li.wei``): four eyes on money going out (`stopper.app.approvals`) compare
holders, so one person holding two keys is still one pair of eyes. Where keys are not required
(development, the embedded default, ``stopper demo``), a caller without a key names themselves
with the ``X-Operator`` header (`stopper.api.auth`); without it they are ``anonymous``.

Keys are created, listed and revoked with ``stopper keys``; the secret is shown once, at
creation. Verified keys are remembered for a few seconds, so a revocation takes effect within
`CACHE_S`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stopper.errors import KeyRefused

CACHE_S = 10.0
PREFIX = "stk"


class KeyRole(enum.StrEnum):
    INTAKE = "intake"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class StoredKey:
    key_id: str
    agency_code: str | None  # None: an operator key of the anti-fraud centre
    role: KeyRole
    secret_sha256: str
    label: str
    created_at: datetime
    revoked_at: datetime | None = None
    holder: str | None = None  # the person an operator key belongs to


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller, or the anonymous developer when keys are not required."""

    role: KeyRole
    agency_code: str | None
    key_id: str | None
    # The person behind the call: the key's holder, or (keys not required, no key) the name the
    # caller gave; None for a key made without a holder.
    holder: str | None = None

    @property
    def person(self) -> str | None:
        """The person, as compared: two spellings of one name are one person."""
        return self.holder.strip().casefold() if self.holder else None

    @property
    def is_operator(self) -> bool:
        return self.role is KeyRole.OPERATOR

    def sees_agency(self, agency_code: str) -> bool:
        return self.is_operator or self.agency_code == agency_code

    @property
    def files_reports(self) -> bool:
        """Intake keys file reports (for `sees_agency`), and the anonymous developer; an
        operator key files none."""
        return not (self.is_operator and self.key_id is not None)

    def actor(self, person: str) -> str:
        """How the audit trail names an action this caller took for `person` (an agency's
        intake key acts only on its own cases: a withdrawal of its report)."""
        who = f"key:{self.key_id}" if self.key_id else "anonymous"
        if not self.is_operator:
            return f"agency:{self.agency_code}:{person} ({who})"
        return f"operator:{person} ({who})"


ANONYMOUS = Caller(KeyRole.OPERATOR, None, None, "anonymous")


def anonymous(name: str | None) -> Caller:
    """The developer calling without a key where keys are not required, by the name given."""
    return Caller(KeyRole.OPERATOR, None, None, name) if name else ANONYMOUS


class KeyStore(Protocol):
    async def add_api_key(self, key: StoredKey) -> None: ...

    async def get_api_key(self, key_id: str) -> StoredKey | None: ...

    async def list_api_keys(self) -> list[StoredKey]: ...

    async def revoke_api_key(self, key_id: str, at: datetime) -> bool: ...


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(
    agency_code: str | None,
    role: KeyRole,
    label: str,
    now: datetime,
    holder: str | None = None,
) -> tuple[StoredKey, str]:
    """A new key: what to store, and the token to hand over (once)."""
    if role is KeyRole.INTAKE and not agency_code:
        raise KeyRefused("an intake key belongs to an agency")
    holder = (holder or "").strip() or None
    if holder is not None and (len(holder) > 64 or not holder.isprintable()):
        raise KeyRefused("a key's holder is a person's name or login, at most 64 characters")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    stored = StoredKey(key_id, agency_code, role, _digest(secret), label, now, holder=holder)
    return stored, f"{PREFIX}_{key_id}_{secret}"


class ApiKeys:
    def __init__(self, store: KeyStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._verified: dict[str, tuple[float, Caller]] = {}

    async def authenticate(self, token: str) -> Caller | None:
        """The caller `token` stands for; None for a malformed, unknown, wrong or revoked key."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
            return None
        cached = self._verified.get(token)
        now = self._clock()
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        stored = await self._store.get_api_key(parts[1])
        if stored is None or stored.revoked_at is not None:
            return None
        if not hmac.compare_digest(stored.secret_sha256, _digest(parts[2])):
            return None
        caller = Caller(stored.role, stored.agency_code, stored.key_id, stored.holder)
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (now, caller)
        return caller
