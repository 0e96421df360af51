from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from stopper.config import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "stopper.env.example"


def documented_variables() -> set[str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


def expected_variables() -> set[str]:
    expected: set[str] = set()
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseSettings):
            prefix = section.model_config.get("env_prefix", "")
            expected |= {f"{prefix}{sub}".upper() for sub in section.model_fields}
        else:
            expected.add(f"STOPPER_{name}".upper())
    return expected


def test_env_example_lists_exactly_the_settings() -> None:
    assert documented_variables() == expected_variables()


def test_no_servers_means_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STOPPER_DATABASE_URL", raising=False)
    monkeypatch.delenv("STOPPER_KAFKA_BOOTSTRAP", raising=False)
    settings = Settings()
    assert settings.database.is_embedded and settings.kafka.bootstrap is None
    assert settings.database.effective_url.startswith("sqlite+aiosqlite:///")


def test_flat_variable_names_reach_their_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOPPER_DATABASE_URL", "postgresql+asyncpg://u@h/db")
    monkeypatch.setenv("STOPPER_KAFKA_BOOTSTRAP", "h:9092")
    monkeypatch.setenv("STOPPER_API_PORT", "9000")
    settings = Settings()
    assert settings.database.url == "postgresql+asyncpg://u@h/db"
    assert (settings.kafka.bootstrap, settings.api.port) == ("h:9092", 9000)


def test_production_refuses_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOPPER_ENVIRONMENT", "production")
    monkeypatch.delenv("STOPPER_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="production needs"):
        Settings()


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("STOPPER_INSTITUTIONS_CALLBACK_SECRETS", '{"bk01": "CHANGE-ME"}', "placeholder"),
        ("STOPPER_INSTITUTIONS_CALLBACK_SECRETS", '{"bk01": "short"}', "shorter than 16"),
        ("STOPPER_DATABASE_URL", "postgresql+asyncpg://s:CHANGE-ME@db/s", "placeholder password"),
        ("STOPPER_API_REQUIRE_KEYS", "false", "production requires API keys"),
    ],
)
def test_production_refuses_default_secrets(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, complaint: str
) -> None:
    monkeypatch.setenv("STOPPER_ENVIRONMENT", "production")
    monkeypatch.setenv("STOPPER_DATABASE_URL", "postgresql+asyncpg://s:a-real-password@db/s")
    monkeypatch.setenv("STOPPER_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=complaint):
        Settings()


def test_production_requires_keys_and_development_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STOPPER_DATABASE_URL", "postgresql+asyncpg://s:a-real-password@db/s")
    monkeypatch.setenv("STOPPER_KAFKA_BOOTSTRAP", "kafka:9092")
    assert not Settings().keys_required
    monkeypatch.setenv("STOPPER_ENVIRONMENT", "production")
    assert Settings().keys_required
