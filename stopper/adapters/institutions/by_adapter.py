"""`AdapterPerInstitution`: the institution port, each call made by the adapter the registry
names for its institution (`Institution.adapter`: `http_json`, `iso20022`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from stopper.app.ports import InstitutionAdapter
from stopper.domain.messages import (
    InstitutionAnswer,
    OrderAnswer,
    OrderFreeze,
    OrderRelease,
    OrderReturn,
    RequestStop,
    StopStatus,
)
from stopper.errors import ConfigurationError
from stopper.registry import Institution, Registry


class ClosingAdapter(InstitutionAdapter, Protocol):
    async def close(self) -> None:
        """Let go of connections (at shutdown)."""
        ...


class AdapterPerInstitution:
    def __init__(self, adapters: Mapping[str, ClosingAdapter], registry: Registry) -> None:
        missing = sorted({i.adapter for i in registry.values()} - set(adapters))
        if missing:
            raise ConfigurationError(f"the registry names adapters Stopper lacks: {missing}")
        self._adapters = dict(adapters)

    def of(self, institution: Institution) -> InstitutionAdapter:
        return self._adapters[institution.adapter]

    async def close(self) -> None:
        # Last given, first closed: an adapter may send through one given before it.
        for adapter in reversed(self._adapters.values()):
            await adapter.close()

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        return await self.of(institution).request_stop(institution, request)

    async def stop_status(self, institution: Institution, idempotency_key: str) -> StopStatus:
        return await self.of(institution).stop_status(institution, idempotency_key)

    async def stop_statuses(
        self, institution: Institution, idempotency_keys: Sequence[str]
    ) -> list[StopStatus]:
        return await self.of(institution).stop_statuses(institution, idempotency_keys)

    async def request_freeze(self, institution: Institution, request: OrderFreeze) -> OrderAnswer:
        return await self.of(institution).request_freeze(institution, request)

    async def request_return(self, institution: Institution, request: OrderReturn) -> OrderAnswer:
        return await self.of(institution).request_return(institution, request)

    async def request_release(self, institution: Institution, request: OrderRelease) -> OrderAnswer:
        return await self.of(institution).request_release(institution, request)
