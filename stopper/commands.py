"""What each `stopper` subcommand does (the parser and exit codes are `cli`'s).

Settings are read and validated here, per command; a database that cannot be reached or a
schema that is not at the newest migration ends in one line naming it, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from stopper import config
from stopper.config import DatabaseSettings, Settings
from stopper.errors import ConfigurationError, SchemaNotReady, StoreUnavailable
from stopper.logs import configure_logging

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

_T = TypeVar("_T")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        raise _invalid_settings(e) from e
    except SettingsError as e:  # a variable that does not parse at all (JSON, say)
        raise ConfigurationError(f"invalid settings: {e}") from e


def _settings_section(error: ValidationError) -> type[BaseSettings] | None:
    """The settings class `error` is about, if it is about settings."""
    section = getattr(config, error.title, None)
    if isinstance(section, type) and issubclass(section, BaseSettings):
        return section
    return None


def _invalid_settings(error: ValidationError) -> ConfigurationError:
    """One line naming each variable that is wrong and why, never its value (a secret, maybe)."""
    section = _settings_section(error)
    prefix = str(section.model_config.get("env_prefix", "")) if section else ""
    problems = []
    for problem in error.errors():
        why = problem["msg"].removeprefix("Value error, ")
        name = "_".join(str(part) for part in problem["loc"]).upper()
        problems.append(f"{prefix}{name}: {why}" if name else why)
    return ConfigurationError("invalid settings: " + "; ".join(problems))


def _where(database: DatabaseSettings) -> str:
    """The database, as a person would look for it (a password never shown)."""
    if database.is_embedded:
        return str(database.embedded_path)
    from sqlalchemy.engine import make_url

    return make_url(database.effective_url).render_as_string(hide_password=True)


@contextlib.contextmanager
def _database_errors(database: DatabaseSettings) -> Iterator[None]:
    """What the driver and Alembic raise around a command, said in one line: the database cannot
    be reached, or its schema is one this Stopper does not know."""
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    try:
        yield
    except BrokenPipeError:  # the reader of what a command printed went away: not the database
        raise
    except (OperationalError, InterfaceError, OSError) as e:
        cause = e.orig if isinstance(e, DBAPIError) and e.orig is not None else e
        said = str(cause).strip().partition("\n")[0] or type(cause).__name__
        raise StoreUnavailable(f"database unreachable at {_where(database)}: {said}") from e
    except CommandError as e:
        raise SchemaNotReady(
            f"the database schema at {_where(database)} is not one this Stopper knows ({e}); "
            "was it migrated by a newer Stopper?"
        ) from e


async def _schema_at_head(engine: AsyncEngine, database: DatabaseSettings) -> None:
    """What a command that needs the schema does first. Like `serve`, it brings the schema to
    the newest migration, unless STOPPER_DATABASE_MIGRATE_ON_START=false (migrations are then
    `stopper migrate`'s alone): then it only checks, and says what to run."""
    from stopper.adapters.db import migrate

    if database.migrate_on_start:
        await migrate.upgrade(engine)
    elif not await migrate.at_head(engine):
        raise SchemaNotReady(
            f"the database schema at {_where(database)} is not at this Stopper's newest "
            "migration: run `stopper migrate` first"
        )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from stopper.api.app import create_app
    from stopper.runtime import build_runtime

    settings = _settings()
    if args.role:
        settings = _with_role(settings, args.role)
    configure_logging(settings.log_level)
    host = args.host or settings.api.host
    port = args.port if args.port is not None else settings.api.port
    if settings.database.migrate_on_start:
        # Here rather than at start-up inside the server, where a database that cannot be
        # reached would end in a traceback; the runtime's own upgrade then finds nothing to do.
        _run_on_database(settings.database, _schema_at_head)
    app = create_app(build_runtime(settings))
    _settle_garbage_collector()
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    return 0


def _settle_garbage_collector() -> None:
    """A server makes many short-lived objects per request while what it imported lives for
    ever: take the latter out of the collector's sight and collect the young less often (what
    it bought is in bench/README.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _with_role(settings: Settings, role: str) -> Settings:
    try:
        return Settings.model_validate({**settings.model_dump(), "role": role})
    except ValidationError as e:
        raise _invalid_settings(e) from e


def simulate(args: argparse.Namespace) -> int:
    import uvicorn

    from stopper.registry import load_registry
    from stopper.simulation.institutions import Simulation
    from stopper.simulation.profiles import profile
    from stopper.simulation.server import create_simulation_app

    settings = _settings()
    configure_logging(settings.log_level)
    sim = settings.simulation
    registry = load_registry(settings.registry_path)
    simulation = Simulation(
        registry,
        profile(args.profile or sim.profile, registry),
        secret_for=lambda ref: settings.institutions.secret_for(ref, settings.environment),
        stopper_url=args.stopper_url or sim.stopper_url,
        seed=sim.seed,
    )
    app = create_simulation_app(simulation)
    _settle_garbage_collector()
    uvicorn.run(
        app,
        host=args.host or sim.host,
        port=args.port if args.port is not None else sim.port,
        log_config=None,
        access_log=False,
    )
    return 0


def _run_on_database(
    database: DatabaseSettings, work: Callable[[AsyncEngine, DatabaseSettings], Awaitable[_T]]
) -> _T:
    """`work` on an engine of `database`, disposed of afterwards; what the driver raises is
    said in one line (`_database_errors`)."""
    from stopper.adapters.db.engine import create_engine, settle_sqlite_workers

    async def run() -> _T:
        engine = create_engine(database)
        try:
            return await work(engine, database)
        finally:
            await engine.dispose()
            await settle_sqlite_workers()

    with _database_errors(database):
        return asyncio.run(run())


def iso20022_example(args: argparse.Namespace) -> int:
    from stopper.adapters.institutions.iso20022.examples import example

    sys.stdout.buffer.write(example(args.message))
    sys.stdout.flush()
    return 0


def migrate(args: argparse.Namespace) -> int:
    from stopper.adapters.db import migrate

    settings = _settings()
    configure_logging(settings.log_level)

    async def run(engine: AsyncEngine, _: DatabaseSettings) -> None:
        if args.downgrade:
            await migrate.downgrade(engine, args.downgrade)
        else:
            await migrate.upgrade(engine)

    _run_on_database(settings.database, run)
    return 0


def _api_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    api = _settings().api
    return api.url or f"http://127.0.0.1:{api.port}"


def _api_key(args: argparse.Namespace) -> str:
    return str(args.key or _settings().api.key)


def ask(
    path: str, render: str, params: dict[str, object] | None = None
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from stopper import operator_cli

        return operator_cli.run(
            _api_url(args),
            path.format(**vars(args)),
            getattr(operator_cli, render),
            as_json=args.json,
            params={k: (getattr(args, k) if v is None else v) for k, v in (params or {}).items()},
            key=_api_key(args),
        )

    return run


def reconcile(args: argparse.Namespace) -> int:
    from stopper import operator_cli

    return operator_cli.run(
        _api_url(args),
        "/v1/reconciliations",
        operator_cli.reconciliation,
        as_json=args.json,
        key=_api_key(args),
        body={"institution": args.institution},
    )


def reverify(args: argparse.Namespace) -> int:
    from stopper import operator_cli

    return operator_cli.reverify(
        _api_url(args),
        institution=args.institution,
        requested_by=args.by,
        wait=args.wait,
        as_json=args.json,
        key=_api_key(args),
    )


def returns(args: argparse.Namespace) -> int:
    """`stopper returns order|approve|reject|pending`: four eyes on money going out."""
    from stopper import operator_cli

    render: operator_cli.Render = operator_cli.return_order
    body: dict[str, object] | None = None
    params: dict[str, object] | None = None
    command = args.returns_command
    if command == "order":
        path = f"/v1/cases/{args.case_id}/returns"
        body = {"legal_document_ref": args.document, "requested_by": args.by}
        if args.hold:
            body["hold_ids"] = args.hold
    elif command == "approve":
        path, body = f"/v1/return-orders/{args.order_id}/approve", {"approved_by": args.by}
    elif command == "reject":
        path = f"/v1/return-orders/{args.order_id}/reject"
        body = {"rejected_by": args.by, "reason": args.reason}
    else:
        path, render = "/v1/return-orders", operator_cli.return_orders
        params = {"status": "pending", "limit": args.limit}
    return operator_cli.run(
        _api_url(args),
        path,
        render,
        as_json=args.json,
        params=params,
        key=_api_key(args),
        body=body,
        operator=args.operator or getattr(args, "by", "") or "",
    )


def releases(args: argparse.Namespace) -> int:
    """`stopper holds release` and `stopper cases withdraw`: lifting holds, with who and why."""
    from stopper import operator_cli

    render: operator_cli.Render
    if getattr(args, "hold_id", None):
        path, render = f"/v1/holds/{args.hold_id}/release", operator_cli.hold_release
    else:
        path, render = f"/v1/cases/{args.case_id}/withdraw", operator_cli.case_withdrawal
    return operator_cli.run(
        _api_url(args),
        path,
        render,
        as_json=args.json,
        key=_api_key(args),
        body={"reason": args.reason, "requested_by": args.by},
        operator=args.operator or args.by,
    )


def list_cases(args: argparse.Namespace) -> int:
    params = {"active": "false" if args.all_cases else "true", "limit": args.limit}
    from stopper import operator_cli

    return operator_cli.run(
        _api_url(args),
        "/v1/cases",
        operator_cli.cases_list,
        as_json=args.json,
        params=params,
        key=_api_key(args),
    )


def keys(args: argparse.Namespace) -> int:
    from stopper.adapters.db.store import SqlStore
    from stopper.app.auth import KeyRole, StoredKey, new_key
    from stopper.errors import KeyRefused

    settings = _settings()
    now = datetime.now(UTC)
    issued: tuple[StoredKey, str] | None = None
    if args.keys_command == "add":
        try:
            issued = new_key(args.agency, KeyRole(args.role), args.label, now, args.holder)
        except KeyRefused as e:
            print(f"stopper: {e}", file=sys.stderr)
            return 2

    async def run(engine: AsyncEngine, database: DatabaseSettings) -> int:
        await _schema_at_head(engine, database)
        store = SqlStore(engine, settings.kafka.stop_requests_topic)
        if issued is not None:
            stored, token = issued
            await store.add_api_key(stored)
            holder = f", holder {stored.holder}" if stored.holder else ""
            print(
                f"key {stored.key_id} ({stored.role.value}, agency {stored.agency_code or '-'}"
                f"{holder})"
            )
            print("the key itself, shown this once:")
            print(token)
            return 0
        if args.keys_command == "revoke":
            if await store.revoke_api_key(args.key_id, now):
                print(f"key {args.key_id} revoked")
                return 0
            print(f"stopper: no active key {args.key_id}", file=sys.stderr)
            return 1
        for key in await store.list_api_keys():
            state = "revoked" if key.revoked_at else "active"
            print(
                f"{key.key_id}  {key.role.value:<8}  {key.agency_code or '-':<24}  "
                f"{state:<7}  {key.created_at:%Y-%m-%d}  {key.holder or '-':<16}  {key.label}"
            )
        return 0

    return _run_on_database(settings.database, run)


def demo(args: argparse.Namespace) -> int:
    from stopper import demo

    if args.db is not None:
        # A file of the user's: one that cannot be opened, or whose schema this Stopper does not
        # know, is said here in one line rather than by the server failing to start.
        database = DatabaseSettings(url=None, embedded_path=args.db, migrate_on_start=True)
        _run_on_database(database, _schema_at_head)
    configure_logging("WARNING")
    # Breaker, failure and lapse events would flood the live display; the summary counts them.
    logging.getLogger("stopper.app").setLevel(logging.CRITICAL)
    try:
        return demo.main(
            args.reports,
            args.db,
            args.json,
            args.profile,
            args.max_wait,
            args.clock_speed,
            institutions_url=args.institutions_url,
        )
    except ValidationError as e:  # the demo reads the sections it does not set from the environment
        if _settings_section(e) is None:
            raise
        raise _invalid_settings(e) from e
