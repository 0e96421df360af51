"""API keys with a hand-written key store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stopper.app.auth import ANONYMOUS, ApiKeys, Caller, KeyRole, StoredKey, new_key
from stopper.errors import KeyRefused

NOW = datetime(2026, 11, 22, tzinfo=UTC)


class FakeKeyStore:
    def __init__(self) -> None:
        self.keys: dict[str, StoredKey] = {}
        self.lookups = 0

    async def add_api_key(self, key: StoredKey) -> None:
        self.keys[key.key_id] = key

    async def get_api_key(self, key_id: str) -> StoredKey | None:
        self.lookups += 1
        return self.keys.get(key_id)

    async def list_api_keys(self) -> list[StoredKey]:
        return list(self.keys.values())

    async def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        key = self.keys[key_id]
        self.keys[key_id] = StoredKey(
            key.key_id, key.agency_code, key.role, key.secret_sha256, key.label, key.created_at, at
        )
        return True


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_is_stored_hashed_and_names_its_agency_and_role() -> None:
    store, ticks = FakeKeyStore(), Ticks()
    stored, token = new_key("PSB-01", KeyRole.INTAKE, "district 1", NOW)
    await store.add_api_key(stored)
    secret = token.split("_", 2)[2]
    assert secret not in repr(stored) and len(stored.secret_sha256) == 64
    caller = await ApiKeys(store, ticks).authenticate(token)
    assert caller == Caller(KeyRole.INTAKE, "PSB-01", stored.key_id)
    assert caller.sees_agency("PSB-01") and not caller.sees_agency("PSB-02")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
        lambda t: t.replace("stk_", "xyz_"),  # not a Stopper key
        lambda t: "stk_" + "0" * 12 + "_" + t.split("_", 2)[2],  # unknown key id
        lambda t: "stk__",
        lambda t: "",
    ],
)
async def test_a_wrong_or_malformed_key_is_nobody(mangle: object) -> None:
    store = FakeKeyStore()
    stored, token = new_key("PSB-01", KeyRole.INTAKE, "", NOW)
    await store.add_api_key(stored)
    assert callable(mangle)
    assert await ApiKeys(store, Ticks()).authenticate(mangle(token)) is None


async def test_a_revoked_key_stops_working_within_the_cache_time() -> None:
    store, ticks = FakeKeyStore(), Ticks()
    stored, token = new_key(None, KeyRole.OPERATOR, "centre", NOW)
    await store.add_api_key(stored)
    keys = ApiKeys(store, ticks)
    assert await keys.authenticate(token) is not None
    assert await keys.authenticate(token) is not None and store.lookups == 1  # cached
    await store.revoke_api_key(stored.key_id, NOW)
    ticks.now += 11
    assert await keys.authenticate(token) is None


def test_an_intake_key_needs_an_agency_and_actions_name_their_key() -> None:
    with pytest.raises(KeyRefused, match="agency"):
        new_key(None, KeyRole.INTAKE, "", NOW)
    assert Caller(KeyRole.OPERATOR, None, "abc").actor("li") == "operator:li (key:abc)"
    assert ANONYMOUS.actor("li") == "operator:li (anonymous)" and ANONYMOUS.is_operator
