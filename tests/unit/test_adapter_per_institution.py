"""Each institution's calls go through the adapter its registry entry names."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stopper.adapters.institutions.by_adapter import AdapterPerInstitution
from stopper.domain.messages import AnswerKind, InstitutionAnswer
from stopper.errors import ConfigurationError
from stopper.registry import Registry, load_registry
from tests.unit.fakes import ScriptedAdapter, requested_hold


class Adapter(ScriptedAdapter):
    def __init__(self, code: str) -> None:
        super().__init__({code: [InstitutionAnswer(AnswerKind.STOPPED, amount_held=1)] * 3})
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def registry() -> Registry:
    base = load_registry()
    return Registry({**base.institutions, "BK02": replace(base["BK02"], adapter="iso20022")})


async def test_calls_go_to_the_adapter_the_registry_names_and_all_are_closed() -> None:
    json, iso = Adapter("BK07"), Adapter("BK02")
    reg = registry()
    adapters = AdapterPerInstitution({"http_json": json, "iso20022": iso}, reg)
    for code in ("BK07", "BK02"):
        record = requested_hold(code)
        await adapters.request_stop(reg[code], record.hold.stop_request(record.requested_at))
    assert [r.institution_code for r in json.requests] == ["BK07"]
    assert [r.institution_code for r in iso.requests] == ["BK02"]
    await adapters.close()
    assert json.closed and iso.closed


def test_a_registry_naming_an_adapter_not_given_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError, match="iso20022"):
        AdapterPerInstitution({"http_json": Adapter("BK07")}, registry())
