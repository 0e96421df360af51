"""The `stopper` command."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from stopper.config import Settings
from stopper.errors import ConfigurationError
from stopper.logs import configure_logging
from stopper.operator_cli import OperatorCommandFailed


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        raise ConfigurationError(f"invalid settings: {e}") from e


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from stopper.api.app import create_app
    from stopper.runtime import build_runtime

    settings = _settings()
    if args.role:
        settings = _with_role(settings, args.role)
    configure_logging(settings.log_level)
    host = args.host or settings.api.host
    port = args.port if args.port is not None else settings.api.port
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
        raise ConfigurationError(f"invalid settings: {e}") from e


def _simulate(args: argparse.Namespace) -> int:
    import uvicorn

    from stopper.registry import load_registry
    from stopper.simulation.institutions import Simulation, create_simulation_app, profile

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


def _migrate(args: argparse.Namespace) -> int:
    from stopper.adapters.db import migrate
    from stopper.adapters.db.engine import create_engine

    settings = _settings()
    configure_logging(settings.log_level)

    async def run() -> None:
        engine = create_engine(settings.database)
        try:
            if args.downgrade:
                await migrate.downgrade(engine, args.downgrade)
            else:
                await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    return 0


def _api_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    api = _settings().api
    return api.url or f"http://127.0.0.1:{api.port}"


def _api_key(args: argparse.Namespace) -> str:
    return str(args.key or _settings().api.key)


def _ask(
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


def _list_cases(args: argparse.Namespace) -> int:
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


def _keys(args: argparse.Namespace) -> int:
    from stopper.adapters.db.engine import create_engine
    from stopper.adapters.db.store import SqlStore
    from stopper.app.auth import KeyRole, new_key

    settings = _settings()

    async def run() -> int:
        engine = create_engine(settings.database)
        store = SqlStore(engine, settings.kafka.stop_requests_topic)
        try:
            now = datetime.now(UTC)
            if args.keys_command == "add":
                try:
                    stored, token = new_key(args.agency, KeyRole(args.role), args.label, now)
                except ValueError as e:
                    print(f"stopper: {e}", file=sys.stderr)
                    return 2
                await store.add_api_key(stored)
                print(
                    f"key {stored.key_id} ({stored.role.value}, agency {stored.agency_code or '-'})"
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
                    f"{state:<7}  {key.created_at:%Y-%m-%d}  {key.label}"
                )
            return 0
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _demo(args: argparse.Namespace) -> int:
    from stopper import demo

    configure_logging("WARNING")
    # Breaker, failure and lapse events would flood the live display; the summary counts them.
    logging.getLogger("stopper.app").setLevel(logging.CRITICAL)
    return demo.main(
        args.reports, args.db, args.json, args.profile, args.max_wait, args.clock_speed
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stopper", description="Emergency payment-stop coordinator."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run the HTTP API and the consumers (embedded default without servers)"
    )
    serve.add_argument("--host", default=None, help="default: STOPPER_API_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: STOPPER_API_PORT or 8080")
    serve.add_argument(
        "--role",
        choices=["all", "api", "worker"],
        default=None,
        help="all (default: STOPPER_ROLE or all), api (HTTP only) or worker (consumers and "
        "sweepers; HTTP for health and metrics)",
    )
    serve.set_defaults(run=_serve)

    simulate = commands.add_parser(
        "simulate", help="run the simulated banks and payment institutions over HTTP"
    )
    simulate.add_argument("--host", default=None, help="default: 127.0.0.1")
    simulate.add_argument("--port", type=int, default=None, help="default: 8090")
    simulate.add_argument(
        "--profile",
        choices=["realistic", "chaos", "instant"],
        default=None,
        help="behaviour profile (default: STOPPER_SIMULATION_PROFILE or realistic)",
    )
    simulate.add_argument(
        "--stopper-url", default=None, help="where callbacks go (default: http://127.0.0.1:8080)"
    )
    simulate.set_defaults(run=_simulate)

    def operator_command(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
    ) -> argparse.ArgumentParser:
        command = group.add_parser(name, help=help)
        command.add_argument(
            "--url", default=None, help="Stopper's API (default: STOPPER_API_URL or 127.0.0.1)"
        )
        command.add_argument("--json", action="store_true", help="the API's JSON, unchanged")
        command.add_argument(
            "--key", default=None, help="an operator key (default: STOPPER_API_KEY)"
        )
        return command

    cases = commands.add_parser("cases", help="cases, from a running Stopper").add_subparsers(
        dest="cases_command", required=True
    )
    listing = operator_command(cases, "list", "cases with a hold still in play, newest first")
    listing.add_argument("--all", dest="all_cases", action="store_true", help="every case")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=_list_cases)
    show = operator_command(cases, "show", "one case: its holds, layers, amounts and payouts")
    show.add_argument("case_id")
    show.set_defaults(run=_ask("/v1/cases/{case_id}", "case_show"))

    holds = commands.add_parser("holds", help="holds, from a running Stopper").add_subparsers(
        dest="holds_command", required=True
    )
    failed = operator_command(holds, "failed", "holds Stopper gave up on: a person must act")
    failed.add_argument("--limit", type=int, default=100)
    failed.set_defaults(run=_ask("/v1/holds", "holds_list", {"state": "failed", "limit": None}))
    lapsing = operator_command(holds, "lapsing", "stopped holds, the closest to lapsing first")
    lapsing.add_argument("--limit", type=int, default=100)
    lapsing.set_defaults(
        run=_ask(
            "/v1/holds", "holds_list", {"state": "stopped", "order": "deadline", "limit": None}
        )
    )

    institutions = commands.add_parser(
        "institutions", help="institutions, from a running Stopper"
    ).add_subparsers(dest="institutions_command", required=True)
    status = operator_command(
        institutions, "status", "breaker, attempts, error rate and latency per institution"
    )
    status.set_defaults(run=_ask("/v1/institutions/status", "institutions_status"))

    keys = commands.add_parser(
        "keys", help="API keys of intake systems and operators (in the database)"
    ).add_subparsers(dest="keys_command", required=True)
    add = keys.add_parser("add", help="create a key and print it (once)")
    add.add_argument("--role", choices=["intake", "operator"], required=True)
    add.add_argument("--agency", default=None, help="the agency an intake key files reports for")
    add.add_argument("--label", default="", help="who or what holds the key")
    add.set_defaults(run=_keys)
    keys.add_parser("list", help="every key: id, role, agency, active or revoked").set_defaults(
        run=_keys
    )
    revoke = keys.add_parser("revoke", help="revoke a key (effective within seconds)")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_keys)

    mig = commands.add_parser("migrate", help="upgrade the database schema to the newest")
    mig.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION instead")
    mig.set_defaults(run=_migrate)

    demo = commands.add_parser("demo", help="a live run on the embedded default")
    demo.add_argument("--reports", type=int, default=300, help="how many reports (default 300)")
    demo.add_argument(
        "--db", type=Path, default=None, help="keep the SQLite file here (default: a temporary one)"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    demo.add_argument(
        "--profile",
        choices=["realistic", "chaos", "instant"],
        default="realistic",
        help="behaviour of the simulated institutions (default realistic)",
    )
    demo.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="run the 48-hour deadlines this many times faster and let 72 hours pass "
        "(e.g. 3600: 72 h in 72 s); default 1: no deadline phase",
    )
    demo.add_argument(
        "--max-wait",
        type=float,
        default=180.0,
        help="seconds to wait for every hold to settle (default 180)",
    )
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigurationError as e:
        print(f"stopper: {e}", file=sys.stderr)
        return 2
    except OperatorCommandFailed as e:
        print(f"stopper: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `stopper ... | head`: the reader has all it wanted.
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
