"""The institution registry: which banks and payment institutions Stopper knows, and how it
talks to each (adapter, endpoint, timeout, retry policy, breaker, concurrency, batches, callback
secret).

The packaged file `stopper/data/institutions.toml` describes the simulated world; operators point
Stopper at another file through settings (`STOPPER_REGISTRY_PATH`). The file's comments explain
every field.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from stopper.errors import ConfigurationError


class InstitutionKind(StrEnum):
    BANK = "bank"
    PAYMENT_INSTITUTION = "payment_institution"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    initial_backoff_ms: int
    max_backoff_ms: int
    deadline_s: float

    def backoff(self, attempt: int, rng: random.Random) -> timedelta:
        """The wait before the attempt after `attempt`: exponential, with full jitter so the
        retries of many holds at one institution spread out."""
        ceiling = min(self.max_backoff_ms, self.initial_backoff_ms * 2 ** (attempt - 1))
        return timedelta(milliseconds=rng.uniform(self.initial_backoff_ms / 2, ceiling))


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int
    cooldown_s: float


DEFAULT_RETRY = RetryPolicy(
    max_attempts=8, initial_backoff_ms=200, max_backoff_ms=5000, deadline_s=120.0
)
DEFAULT_BREAKER = BreakerPolicy(failure_threshold=5, cooldown_s=5.0)


@dataclass(frozen=True, slots=True)
class Institution:
    code: str
    name: str
    kind: InstitutionKind
    adapter: str = "http_json"
    endpoint: str = ""
    timeout_ms: int = 2000
    concurrency: int = 8
    callback_wait_s: float = 30.0
    retry: RetryPolicy = DEFAULT_RETRY
    breaker: BreakerPolicy = DEFAULT_BREAKER
    callback_secret_ref: str = ""
    # Holds one stop request may carry (`iso20022`: one camt.056 for many holds; `http_json`: 1),
    # and how long a request waits for others to join it when the institution is busy.
    batch_size: int = 1
    batch_window_ms: float = 5.0

    @property
    def holds_in_flight(self) -> int:
        """Stop attempts that may be under way at once: `concurrency` requests, each carrying
        up to `batch_size` holds."""
        return self.concurrency * self.batch_size


@dataclass(frozen=True, slots=True)
class Registry(Mapping[str, Institution]):
    institutions: Mapping[str, Institution]

    def __getitem__(self, code: str) -> Institution:
        return self.institutions[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self.institutions)

    def __len__(self) -> int:
        return len(self.institutions)

    def of_kind(self, kind: InstitutionKind) -> list[Institution]:
        return [i for i in self.institutions.values() if i.kind is kind]


ADAPTERS = frozenset({"http_json", "iso20022"})
# Holds per stop request unless the registry says otherwise, by adapter.
DEFAULT_BATCH_SIZE = {"http_json": 1, "iso20022": 50}


def load_registry(path: Path | None = None) -> Registry:
    """Read and check a registry file; `None` means the packaged simulated world."""
    try:
        if path is None:
            raw = resources.files("stopper.data").joinpath("institutions.toml").read_text()
        else:
            raw = path.read_text()
        document = tomllib.loads(raw)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigurationError(f"cannot read the institution registry: {e}") from e
    defaults: dict[str, Any] = document.get("defaults", {})
    institutions: dict[str, Institution] = {}
    for entry in document.get("institution", []):
        institution = _institution(entry, defaults)
        if institution.code in institutions:
            raise ConfigurationError(f"institution code {institution.code} listed twice")
        institutions[institution.code] = institution
    if not institutions:
        raise ConfigurationError("the institution registry lists no institutions")
    return Registry(institutions)


def _institution(entry: Mapping[str, Any], defaults: Mapping[str, Any]) -> Institution:
    try:
        kind = InstitutionKind(entry["kind"])
        merged = {**defaults.get(kind.value, {}), **entry}
        adapter = str(merged.get("adapter", "http_json"))
        institution = Institution(
            code=str(merged["code"]),
            name=str(merged["name"]),
            kind=kind,
            adapter=adapter,
            endpoint=str(merged.get("endpoint", "")),
            timeout_ms=int(merged.get("timeout_ms", 2000)),
            concurrency=int(merged.get("concurrency", 8)),
            callback_wait_s=float(merged.get("callback_wait_s", 30)),
            retry=RetryPolicy(**merged["retry"]) if "retry" in merged else DEFAULT_RETRY,
            breaker=BreakerPolicy(**merged["breaker"]) if "breaker" in merged else DEFAULT_BREAKER,
            callback_secret_ref=str(merged.get("callback_secret_ref", merged["code"])),
            batch_size=int(merged.get("batch_size", DEFAULT_BATCH_SIZE.get(adapter, 1))),
            batch_window_ms=float(merged.get("batch_window_ms", 5.0)),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigurationError(f"bad registry entry {dict(entry)!r}: {e}") from e
    if institution.adapter not in ADAPTERS:
        raise ConfigurationError(f"{institution.code}: unknown adapter {institution.adapter!r}")
    if institution.timeout_ms <= 0 or institution.concurrency <= 0:
        raise ConfigurationError(f"{institution.code}: timeout and concurrency must be positive")
    if institution.batch_size < 1 or (
        institution.adapter == "http_json" and institution.batch_size != 1
    ):
        raise ConfigurationError(
            f"{institution.code}: batch_size must be 1 for http_json, at least 1 for iso20022"
        )
    if not 0 <= institution.batch_window_ms <= 1000:
        raise ConfigurationError(f"{institution.code}: batch_window_ms must be 0 to 1000")
    return institution
