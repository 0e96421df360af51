"""Callback secrets rotate without an outage: during the window both the new and the old
secret verify, only the new one signs; once the old one is removed, it no longer verifies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stopper import metrics
from stopper.app.rotating_secrets import RotatingSecret, SecretUsed
from stopper.config import Environment, InstitutionsSettings, Settings
from stopper.domain.holds import HoldState
from stopper.runtime import callback_secrets
from tests.unit.test_callbacks import NOW, REGISTRY, callback, refused, sent_hold, signed

OLD = "old-secret-of-bk01-0123456789"
NEW = "new-secret-of-bk01-9876543210"


def rotating(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, RotatingSecret]:
    """The secrets Stopper starts with under `env`, as the runtime resolves them."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return callback_secrets(Settings(), REGISTRY)


def previous_used() -> float:
    return float(metrics.CALLBACKS_PREVIOUS_SECRET.labels("BK01")._value.get())


async def test_during_the_window_old_and_new_secrets_both_verify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = rotating(
        {
            "STOPPER_INSTITUTIONS_CALLBACK_SECRETS": f'{{"bk01": "{NEW}"}}',
            "STOPPER_INSTITUTIONS_PREVIOUS_CALLBACK_SECRETS": f'{{"bk01": "{OLD}"}}',
        },
        monkeypatch,
    )
    assert secrets["bk01"] == RotatingSecret(NEW, OLD)
    # The institution has not switched yet: its callback signed with the old secret is taken,
    # and counted as such.
    handler, store, record = await sent_hold(secrets)
    before = previous_used()
    body = callback(record)
    result = await handler.handle("BK01", signed(body, secret=OLD, nonce="rotate-old-1"), body)
    assert result.outcome == "applied"
    assert store.holds[record.hold.id].hold.state is HoldState.STOPPED
    assert previous_used() == before + 1
    # It switched: the new secret verifies too, and is not counted as the previous.
    handler, store, record = await sent_hold(secrets)
    body = callback(record)
    result = await handler.handle("BK01", signed(body, secret=NEW, nonce="rotate-new-1"), body)
    assert result.outcome == "applied"
    assert previous_used() == before + 1
    # Any other secret still fails.
    error = await refused(handler, "BK01", signed(body, secret="guessed-" + NEW), body)
    assert error.reason == "bad_signature"


async def test_once_the_previous_is_removed_the_old_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = rotating(
        {"STOPPER_INSTITUTIONS_CALLBACK_SECRETS": f'{{"bk01": "{NEW}"}}'}, monkeypatch
    )
    assert secrets["bk01"] == RotatingSecret(NEW)
    handler, store, record = await sent_hold(secrets)
    body = callback(record)
    error = await refused(handler, "BK01", signed(body, secret=OLD, nonce="rotate-old-2"), body)
    assert error.reason == "bad_signature"
    assert store.holds[record.hold.id].hold.state is HoldState.UNCONFIRMED
    result = await handler.handle("BK01", signed(body, secret=NEW, nonce="rotate-new-2"), body)
    assert result.outcome == "applied"


def test_only_the_current_secret_signs() -> None:
    """What the simulated institutions (and with #17, Stopper's own webhooks) sign with."""
    settings = InstitutionsSettings(
        callback_secrets={"bk01": NEW}, previous_callback_secrets={"bk01": OLD}
    )
    assert settings.secret_for("bk01", Environment.PRODUCTION) == NEW
    secret = settings.rotating_secret_for("bk01", Environment.PRODUCTION)
    assert secret.signs_with == NEW
    ts = int(NOW.timestamp())
    headers = signed(b"{}", secret=secret.signs_with, nonce="n-12345678")
    given = headers["x-stopper-signature"]
    assert secret.verifies(ts, "n-12345678", b"{}", given) is SecretUsed.CURRENT
    old_headers = signed(b"{}", secret=OLD, nonce="n-12345678")
    old = old_headers["x-stopper-signature"]
    assert secret.verifies(ts, "n-12345678", b"{}", old) is SecretUsed.PREVIOUS
    assert RotatingSecret(NEW).verifies(ts, "n-12345678", b"{}", old) is None


def test_a_previous_secret_equal_to_the_current_is_refused() -> None:
    with pytest.raises(ValidationError, match="is the current one"):
        InstitutionsSettings(
            callback_secrets={"bk01": NEW}, previous_callback_secrets={"bk01": NEW}
        )


def test_production_refuses_a_placeholder_previous_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOPPER_ENVIRONMENT", "production")
    monkeypatch.setenv("STOPPER_DATABASE_URL", "postgresql+asyncpg://u:pw-0123456789@h/db")
    monkeypatch.setenv("STOPPER_KAFKA_BOOTSTRAP", "h:9092")
    monkeypatch.setenv("STOPPER_INSTITUTIONS_CALLBACK_SECRETS", f'{{"bk01": "{NEW}"}}')
    monkeypatch.setenv("STOPPER_INSTITUTIONS_PREVIOUS_CALLBACK_SECRETS", '{"bk01": "CHANGE-ME"}')
    with pytest.raises(ValidationError, match="previous callback secret"):
        Settings()
