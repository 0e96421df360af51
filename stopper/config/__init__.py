"""Settings, in sections, read from the environment (prefix ``STOPPER_``) and validated at start-up.

This package is the only code that reads the environment; the sections are in `sections.py`.
No database URL and no Kafka bootstrap means the embedded default: a SQLite file holding the
store and the bus, no servers needed.
"""

from __future__ import annotations

import os
import socket
from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stopper.app.jurisdictions import PROFILES, Jurisdiction, JurisdictionProfile
from stopper.app.policies import DeadlinePolicy, DispatchPolicy
from stopper.config.sections import (
    ApiSettings,
    ApprovalSettings,
    DatabaseSettings,
    DeadlineSettings,
    DispatchSettings,
    Environment,
    InstitutionsSettings,
    KafkaSettings,
    ReverifySettings,
    SimulationSettings,
    WebhookSettings,
)


class Role(StrEnum):
    """What one Stopper process does. `all` (the default) does everything in one process; a
    deployment runs `api` processes (HTTP: intake, queries, orders, callbacks, console) and
    `worker` processes (consumers, outbox relay, sweepers; HTTP only for health and metrics)."""

    ALL = "all"
    API = "api"
    WORKER = "worker"


# Values from examples and development that must never reach production.
_PLACEHOLDERS = ("CHANGE-ME", "change-me", "dev-only", "changeme")


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STOPPER_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    role: Role = Field(default=Role.ALL, description="all, api or worker (see `Role`).")
    instance_id: str = Field(
        default_factory=_default_instance,
        max_length=64,
        description="Names this process in shared state (institution health); default host-pid.",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    jurisdiction: Jurisdiction = Field(
        default=Jurisdiction.CN,
        description="The law deadlines follow (cn, sg or uk; see stopper/app/jurisdictions.py); "
        "STOPPER_DISPATCH_STOP_LAPSE_HOURS and STOPPER_DEADLINES_* override it when set.",
    )
    registry_path: Path | None = Field(
        default=None, description="Institution registry file; unset: the packaged simulated world."
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    institutions: InstitutionsSettings = Field(default_factory=InstitutionsSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    deadlines: DeadlineSettings = Field(default_factory=DeadlineSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    reverify: ReverifySettings = Field(default_factory=ReverifySettings)
    simulation: SimulationSettings = Field(default_factory=SimulationSettings)

    @property
    def jurisdiction_profile(self) -> JurisdictionProfile:
        return PROFILES[self.jurisdiction]

    def dispatch_policy(self) -> DispatchPolicy:
        return self.dispatch.policy(self.jurisdiction_profile)

    def deadline_policy(self) -> DeadlinePolicy:
        return self.deadlines.policy(self.jurisdiction_profile)

    @property
    def keys_required(self) -> bool:
        if self.api.require_keys is None:
            return self.environment is Environment.PRODUCTION
        return self.api.require_keys

    def _refuse_default_secrets(self) -> None:
        if self.api.require_keys is False:
            raise ValueError("production requires API keys: unset STOPPER_API_REQUIRE_KEYS")
        if any(marker in (self.database.url or "") for marker in _PLACEHOLDERS):
            raise ValueError("STOPPER_DATABASE_URL still has a placeholder password")
        institutions = self.institutions
        for which, secrets in (
            ("callback secret", institutions.callback_secrets),
            ("previous callback secret", institutions.previous_callback_secrets),
        ):
            for ref, secret in secrets.items():
                if len(secret) < 16 or any(m in secret for m in _PLACEHOLDERS):
                    raise ValueError(
                        f"the {which} for {ref!r} is a placeholder or shorter than 16 characters"
                    )

    @field_validator("instance_id")
    @classmethod
    def _instance_named(cls, value: str) -> str:
        return value or _default_instance()

    @model_validator(mode="after")
    def _production_needs_servers(self) -> Settings:
        if self.environment is Environment.PRODUCTION and (
            self.database.is_embedded or self.kafka.bootstrap is None
        ):
            raise ValueError(
                "production needs STOPPER_DATABASE_URL and STOPPER_KAFKA_BOOTSTRAP: "
                "the embedded default is for development and demos"
            )
        if self.environment is Environment.PRODUCTION:
            self._refuse_default_secrets()
        if self.role is not Role.ALL and (
            self.database.is_embedded or self.kafka.bootstrap is None
        ):
            raise ValueError(
                f"role {self.role.value} shares its work with other processes: it needs "
                "STOPPER_DATABASE_URL and STOPPER_KAFKA_BOOTSTRAP (the embedded default is one "
                "process: role all)"
            )
        return self


__all__ = [
    "ApiSettings",
    "ApprovalSettings",
    "DatabaseSettings",
    "DeadlineSettings",
    "DispatchSettings",
    "Environment",
    "InstitutionsSettings",
    "KafkaSettings",
    "ReverifySettings",
    "Role",
    "Settings",
    "SimulationSettings",
    "WebhookSettings",
]
