"""The sections of the settings, one class each (`Settings` in `__init__` holds them)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stopper.app.jurisdictions import PROFILES, FixedLapse, Jurisdiction, JurisdictionProfile
from stopper.app.policies import DeadlinePolicy, DispatchPolicy, ReverifyPolicy
from stopper.app.rotating_secrets import RotatingSecret


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STOPPER_DATABASE_", extra="ignore")

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+asyncpg://user:pw@host/db. "
        "Unset: a SQLite file at `embedded_path`.",
    )
    embedded_path: Path = Path("stopper.db")
    migrate_on_start: bool = Field(
        default=True, description="Run Alembic migrations to head when a process starts."
    )
    pool_size: int = Field(default=10, ge=1, le=200)
    statement_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long one statement may run (PostgreSQL's statement_timeout, lock "
        "waits included) or wait for SQLite's write lock (its busy timeout) before it fails "
        "as the database being unavailable. Migrations are exempt.",
    )

    @property
    def effective_url(self) -> str:
        return self.url or f"sqlite+aiosqlite:///{self.embedded_path}"

    @property
    def is_embedded(self) -> bool:
        return self.url is None


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STOPPER_KAFKA_", extra="ignore")

    bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port]. Unset: the bus in the SQLite file (embedded "
        "default), or in process memory beside PostgreSQL.",
    )
    reports_topic: str = "stopper.reports"
    reports_dlq_topic: str = "stopper.reports.dlq"
    stop_requests_topic: str = "stopper.stop-requests"
    intake_group: str = "stopper-intake"
    dispatch_group: str = "stopper-dispatch"
    stop_requests_dlq_topic: str = "stopper.stop-requests.dlq"
    hold_events_topic: str = Field(
        default="stopper.hold-events",
        description="Warnings and lapses (and later other hold events) for other systems.",
    )
    case_events_topic: str = Field(
        default="stopper.case-events",
        description="Case events for agencies and other systems, keyed by case id "
        "(deploy/asyncapi.yaml); the webhooks are fed from it.",
    )
    webhooks_group: str = "stopper-webhooks"
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    # A long fetch wait costs ~max-wait per hop on some brokers (see shared/MEASURED.md).
    fetch_max_wait_ms: int = Field(
        default=5,
        ge=0,
        le=10_000,
        description="How long a fetch of the reports waits for records: it sets report -> "
        "stop request on a broker that waits out the maximum (Tansu does).",
    )
    dispatch_fetch_max_wait_ms: int = Field(
        default=50,
        ge=0,
        le=10_000,
        description="The same for the stop-request consumer (trail holds and re-applied stops "
        "only; intake's first requests do not travel through it): every idle fetch costs the "
        "broker and the worker, so this one waits longer.",
    )
    webhooks_fetch_max_wait_ms: int = Field(
        default=250,
        ge=0,
        le=10_000,
        description="The same for the webhook fan-out's consumer of the case events: an "
        "agency's webhook may wait a quarter of a second, and at 5 ms the idle fetches of this "
        "one consumer cost the broker (Tansu) about 0.06 of a core per worker.",
    )
    max_batch: int = Field(default=500, ge=1, le=10_000)
    request_timeout_ms: int = Field(default=10_000, ge=100)
    client_id: str = "stopper"


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STOPPER_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Larger bodies get 413.")
    public_url: str = Field(default="", description="Prefix for status URLs; empty = relative.")
    url: str = Field(
        default="",
        description="Where `stopper cases|holds|institutions status` reach the API; "
        "empty: http://127.0.0.1:<port>.",
    )
    require_keys: bool | None = Field(
        default=None,
        description="Callers must present an API key (`stopper keys add`). Unset: required in "
        "production, not in development (where an anonymous caller acts as an operator).",
    )
    key: str = Field(
        default="", description="The API key the operator commands send (an operator key)."
    )

    @field_validator("require_keys", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value


class InstitutionsSettings(BaseSettings):
    """How Stopper reaches institutions and checks what they send back."""

    model_config = SettingsConfigDict(env_prefix="STOPPER_INSTITUTIONS_", extra="ignore")

    base_url: str = Field(
        default="http://127.0.0.1:8090",
        description="Joined to registry endpoints that are a path only (the simulation).",
    )
    callback_secrets: dict[str, str] = Field(
        default_factory=dict,
        description='JSON object: callback_secret_ref -> HMAC secret, e.g. {"bk01": "..."}: '
        "the current secret, the one the institution is to sign with.",
    )
    previous_callback_secrets: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object: callback_secret_ref -> the secret it replaces, during a "
        "rotation window only: callbacks signed with it still verify (README: rotating a "
        "secret). Remove the entry once the institution signs with the current one.",
    )
    callback_window_s: int = Field(
        default=300, ge=1, description="Signed callbacks older or newer than this are refused."
    )

    def rotating_secret_for(self, ref: str, environment: Environment) -> RotatingSecret:
        """The secret callbacks of `ref` are verified with: the current one, and during a
        rotation window the previous one too."""
        return RotatingSecret(
            self.secret_for(ref, environment), self.previous_callback_secrets.get(ref)
        )

    @model_validator(mode="after")
    def _previous_replaces_a_current(self) -> InstitutionsSettings:
        for ref, previous in self.previous_callback_secrets.items():
            if previous == self.callback_secrets.get(ref):
                raise ValueError(
                    f"the previous callback secret for {ref!r} is the current one: put the new "
                    "secret in STOPPER_INSTITUTIONS_CALLBACK_SECRETS"
                )
        return self

    def secret_for(self, ref: str, environment: Environment) -> str:
        """The current secret of `ref`: the one that signs (the simulated institutions')."""
        secret = self.callback_secrets.get(ref)
        if secret is not None:
            return secret
        if environment is Environment.PRODUCTION:
            raise ValueError(f"no callback secret configured for {ref!r}")
        # Development and the simulation share this well-known secret; production refuses it.
        return f"dev-only-callback-secret-{ref}"


class DispatchSettings(BaseSettings):
    # An empty variable is unset: `STOPPER_DISPATCH_STOP_LAPSE_HOURS=` leaves the lapse to the
    # jurisdiction profile.
    model_config = SettingsConfigDict(
        env_prefix="STOPPER_DISPATCH_", extra="ignore", env_ignore_empty=True
    )

    sweep_interval_ms: int = Field(
        default=200,
        ge=10,
        description="How often due retries and unanswered requests are looked for.",
    )
    relay_interval_ms: int = Field(default=50, ge=5, description="Outbox poll interval when idle.")
    relay_batch: int = Field(default=500, ge=1)
    outbox_retention_h: float = Field(
        default=24.0,
        gt=0,
        description="How long a published outbox row is kept after it was written before it is "
        "deleted (unpublished rows are never deleted). Callback nonces are kept twice the "
        "callback window and ten minutes.",
    )
    first_dispatch_grace_s: float = Field(
        default=10.0,
        gt=0,
        description="A hold still requested this long after it was recorded (its stop "
        "request not claimed: intake ran without a dispatcher, or a trail hold's request was "
        "not consumed) is dispatched by the sweeper.",
    )
    max_queued_per_institution: int = Field(
        default=400,
        ge=1,
        description="Stop attempts under way to one institution in one process before intake "
        "and the stop-request consumer wait for some to finish (a burst then waits on the "
        "broker, as consumer lag); an institution with room is never held up by another.",
    )
    max_queued: int = Field(
        default=3000,
        ge=1,
        description="Stop attempts under way in one process before intake and the stop-request "
        "consumer wait, however long, for room: the process is behind as a whole (short of "
        "CPU, every institution busy), so a burst waits on the broker rather than in memory "
        "against its deadlines. Well above max_queued_per_institution: one slow institution "
        "never reaches it alone.",
    )
    hedge: bool = Field(
        default=True,
        description="Send a stop attempt slower than the institution's usual answer (its "
        "recent 95th percentile) once more, same key; the first answer wins.",
    )
    inquiry_max_interval_s: float = Field(
        default=900.0,
        gt=0,
        description="The longest wait between two status inquiries about a request an "
        "institution accepted (the wait doubles from the institution's callback_wait_s).",
    )
    unconfirmed_alert_s: float = Field(
        default=600.0,
        gt=0,
        description="An accepted request unconfirmed for longer than this counts in "
        "stopper_holds_unconfirmed_overdue (alert StopperHoldsUnconfirmed).",
    )
    reconcile_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often a worker asks every institution for the outcomes of its "
        "unconfirmed and failed holds (reconciliation).",
    )
    stop_lapse_hours: float | None = Field(
        default=None,
        gt=0,
        description="Set: a stop lapses this many hours after confirmation, whatever the "
        "jurisdiction profile says. Unset: the profile's rule (48 hours in cn).",
    )
    trail_max_depth: int = Field(
        default=5, ge=1, le=20, description="Layers of the money trail followed, first included."
    )

    def policy(self, profile: JurisdictionProfile = PROFILES[Jurisdiction.CN]) -> DispatchPolicy:
        """The dispatch policy under `profile`, with this section's settings laid over it."""
        expiry = profile.stop_expiry
        if self.stop_lapse_hours is not None:
            expiry = FixedLapse(timedelta(hours=self.stop_lapse_hours))
        return DispatchPolicy(
            stop_expiry=expiry,
            first_dispatch_grace=timedelta(seconds=self.first_dispatch_grace_s),
            inquiry_max_interval=timedelta(seconds=self.inquiry_max_interval_s),
            max_queued_per_institution=self.max_queued_per_institution,
            max_queued=self.max_queued,
            trail_max_depth=self.trail_max_depth,
        )


class DeadlineSettings(BaseSettings):
    """The lapse of emergency stops and the expiry of freezes: when to warn, how often to look.
    Each value left unset (or empty) is the jurisdiction profile's."""

    model_config = SettingsConfigDict(
        env_prefix="STOPPER_DEADLINES_", extra="ignore", env_ignore_empty=True
    )

    warn_before_hours: list[float] | None = Field(
        default=None,
        description="JSON list: lead times of the lapse warnings, in hours (cn: [12, 2]).",
    )
    sweep_interval_ms: int = Field(default=1000, ge=10)
    max_reapplications: int | None = Field(
        default=None, ge=0, description="How often one hold's stop may be re-applied (cn: 2)."
    )
    freeze_validity_days: float | None = Field(
        default=None, gt=0, description="How long a formal freeze holds (cn: 182, six months)."
    )
    freeze_warn_before_hours: list[float] | None = Field(
        default=None,
        description="JSON list: lead times of freeze-expiry warnings (cn: [336, 72], 14 and "
        "3 days).",
    )

    @field_validator("warn_before_hours", "freeze_warn_before_hours")
    @classmethod
    def _positive(cls, leads: list[float] | None) -> list[float] | None:
        if leads is None:
            return None
        if not leads or any(h <= 0 for h in leads):
            raise ValueError("give at least one positive lead time")
        return sorted(leads, reverse=True)

    def policy(self, profile: JurisdictionProfile = PROFILES[Jurisdiction.CN]) -> DeadlinePolicy:
        """The deadline policy under `profile`, with this section's settings laid over it."""

        def leads(
            hours: list[float] | None, default: tuple[timedelta, ...]
        ) -> tuple[timedelta, ...]:
            return default if hours is None else tuple(timedelta(hours=h) for h in hours)

        return DeadlinePolicy(
            stop_warnings=leads(self.warn_before_hours, profile.stop_warnings),
            freeze_warnings=leads(self.freeze_warn_before_hours, profile.freeze_warnings),
            freeze_validity=profile.freeze_validity
            if self.freeze_validity_days is None
            else timedelta(days=self.freeze_validity_days),
            max_reapplications=profile.max_reapplications
            if self.max_reapplications is None
            else self.max_reapplications,
        )


class WebhookSettings(BaseSettings):
    """Agencies' webhooks: how each delivery is tried, and for how long."""

    model_config = SettingsConfigDict(env_prefix="STOPPER_WEBHOOKS_", extra="ignore")

    timeout_s: float = Field(default=10.0, gt=0, le=60, description="Per delivery attempt.")
    first_retry_s: float = Field(default=10.0, gt=0, description="Backoff after a failure.")
    max_retry_s: float = Field(default=3600.0, gt=0, description="Backoff doubles up to this.")
    retry_for_s: float = Field(
        default=86_400.0, gt=0, description="A delivery not made within this is given up."
    )
    sweep_interval_ms: int = Field(default=200, ge=10)
    batch: int = Field(default=100, ge=1, le=10_000, description="Deliveries tried at once.")
    rotation_window_h: float = Field(
        default=24.0,
        gt=0,
        le=24 * 30,
        description="After a webhook's secret is rotated, how long the secret it replaced still "
        "signs deliveries beside the new one (unless the agency ends the rotation sooner).",
    )


class ReverifySettings(BaseSettings):
    """Re-verification (`stopper.app.reverify`): how a job asks the institutions again about
    every stopped first-level hold without taking from live work: pages of holds at a bounded
    rate, and a lease on the job (another worker resumes it once the lease lapses)."""

    model_config = SettingsConfigDict(env_prefix="STOPPER_REVERIFY_", extra="ignore")

    page: int = Field(
        default=250,
        ge=1,
        le=1000,
        description="Holds read per page; each institution is asked about its share of a page "
        "in one status query (at most 1,000 keys, STATUS_QUERY_MAX_KEYS).",
    )
    holds_per_s: float = Field(
        default=1000.0,
        gt=0,
        description="At most this many holds asked about per second (a pause after each page "
        "makes up the rest): what bulk work may take from the live work's share of a worker, "
        "the institutions and the database. 300,000 holds in five minutes.",
    )
    lease_s: float = Field(
        default=60.0, gt=0, description="A job untouched this long is taken over by a worker."
    )
    poll_interval_s: float = Field(
        default=5.0, gt=0, description="How often a worker looks for a job to run."
    )

    def policy(self) -> ReverifyPolicy:
        return ReverifyPolicy(
            page=self.page,
            holds_per_s=self.holds_per_s,
            lease=timedelta(seconds=self.lease_s),
        )


class ApprovalSettings(BaseSettings):
    """Four eyes (`stopper.app.approvals`): returns always wait for a second operator; freezes
    too when switched on."""

    model_config = SettingsConfigDict(env_prefix="STOPPER_APPROVALS_", extra="ignore")

    freezes: bool = Field(
        default=False,
        description="A freeze order waits for a second operator's approval, like a return.",
    )


class SimulationSettings(BaseSettings):
    """`stopper simulate`: the simulated banks and payment institutions."""

    model_config = SettingsConfigDict(env_prefix="STOPPER_SIMULATION_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    profile: str = Field(default="realistic", pattern=r"^(realistic|chaos|instant)$")
    stopper_url: str = Field(
        default="http://127.0.0.1:8080", description="Where callbacks are sent."
    )
    seed: int = 7
