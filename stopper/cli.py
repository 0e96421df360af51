"""The `stopper` command: its arguments and exit codes (what each subcommand does is in
`commands`)."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable
from pathlib import Path

from stopper import commands
from stopper.errors import ConfigurationError, StopperError


def _version() -> str:
    try:
        return importlib.metadata.version("stopper")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def _at_least(minimum: float, kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"at least {minimum:g}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _include_handled(command: argparse.ArgumentParser) -> None:
    # A hold a person marked handled (with a note) has left the "needs a person" list; --all
    # shows it too.
    command.add_argument(
        "--all",
        dest="unhandled",
        action="store_false",
        help="also the holds a person marked handled since their last change",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stopper", description="Emergency payment-stop coordinator."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error (without it: one line on stderr, exit code 1)",
    )
    subcommands = parser.add_subparsers(dest="command", required=True)

    serve = subcommands.add_parser(
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
    serve.set_defaults(run=commands.serve)

    simulate = subcommands.add_parser(
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
    simulate.set_defaults(run=commands.simulate)

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

    cases = subcommands.add_parser("cases", help="cases, from a running Stopper").add_subparsers(
        dest="cases_command", required=True
    )
    listing = operator_command(cases, "list", "cases with a hold still in play, newest first")
    listing.add_argument("--all", dest="all_cases", action="store_true", help="every case")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=commands.list_cases)
    show = operator_command(cases, "show", "one case: its holds, layers, amounts and payouts")
    show.add_argument("case_id")
    show.set_defaults(run=commands.ask("/v1/cases/{case_id}", "case_show"))

    def release_command(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
    ) -> argparse.ArgumentParser:
        command = operator_command(group, name, help)
        command.add_argument("--reason", required=True, help="why, for the audit")
        command.add_argument("--by", required=True, help="your name, for the audit")
        command.add_argument(
            "--operator",
            default="",
            help="who you are where keys are not required (X-Operator; default: --by)",
        )
        command.set_defaults(run=commands.releases)
        return command

    withdraw = release_command(
        cases,
        "withdraw",
        "withdraw a case's report: every hold of it is released at its institution",
    )
    withdraw.add_argument("case_id")

    holds = subcommands.add_parser("holds", help="holds, from a running Stopper").add_subparsers(
        dest="holds_command", required=True
    )
    failed = operator_command(holds, "failed", "holds Stopper gave up on: a person must act")
    failed.add_argument("--limit", type=int, default=100)
    _include_handled(failed)
    failed.set_defaults(
        run=commands.ask(
            "/v1/holds", "holds_list", {"state": "failed", "limit": None, "unhandled": None}
        )
    )
    unconfirmed = operator_command(
        holds,
        "unconfirmed",
        "holds their institution accepted (or left unanswered) and has not confirmed, oldest first",
    )
    unconfirmed.add_argument("--limit", type=int, default=100)
    _include_handled(unconfirmed)
    unconfirmed.set_defaults(
        run=commands.ask(
            "/v1/holds",
            "holds_list",
            {"state": "unconfirmed", "order": "deadline", "limit": None, "unhandled": None},
        )
    )
    lapsing = operator_command(holds, "lapsing", "stopped holds, the closest to lapsing first")
    lapsing.add_argument("--limit", type=int, default=100)
    lapsing.set_defaults(
        run=commands.ask(
            "/v1/holds", "holds_list", {"state": "stopped", "order": "deadline", "limit": None}
        )
    )

    release = release_command(
        holds, "release", "release a hold whose account was cleared: its institution lifts it"
    )
    release.add_argument("hold_id")

    institutions = subcommands.add_parser(
        "institutions", help="institutions, from a running Stopper"
    ).add_subparsers(dest="institutions_command", required=True)
    status = operator_command(
        institutions, "status", "breaker, attempts, error rate and latency per institution"
    )
    status.set_defaults(run=commands.ask("/v1/institutions/status", "institutions_status"))

    reconcile = operator_command(
        subcommands,
        "reconcile",
        "ask the institutions now for the outcome of every unconfirmed or failed hold",
    )
    reconcile.add_argument("--institution", default=None, help="one institution's code")
    reconcile.set_defaults(run=commands.reconcile)

    reverify = operator_command(
        subcommands,
        "reverify",
        "ask the institutions again about every stopped first-level hold (a job the workers "
        "run behind live work)",
    )
    reverify.add_argument("--institution", default=None, help="one institution's code")
    reverify.add_argument(
        "--wait", action="store_true", help="follow the job until it has finished"
    )
    reverify.add_argument("--by", default="operator", help="who asks (without a key)")
    reverify.set_defaults(run=commands.reverify)

    returns = subcommands.add_parser(
        "returns",
        help="return orders: a return waits until a second operator approves it (four eyes)",
    ).add_subparsers(dest="returns_command", required=True)

    def return_command(name: str, help: str) -> argparse.ArgumentParser:
        command = operator_command(returns, name, help)
        command.add_argument(
            "--operator",
            default="",
            help="who you are where keys are not required (X-Operator; default: --by); "
            "with a key, its holder is who you are",
        )
        command.set_defaults(run=commands.returns)
        return command

    order = return_command("order", "order the return of a case's frozen funds (pending)")
    order.add_argument("case_id")
    order.add_argument("--document", required=True, help="the legal document's reference")
    order.add_argument("--by", required=True, help="your name, for the audit")
    order.add_argument("--hold", action="append", default=[], help="only this hold (repeatable)")
    approve = return_command("approve", "approve another operator's return order: it is sent")
    approve.add_argument("order_id")
    approve.add_argument("--by", required=True, help="your name, for the audit")
    reject = return_command("reject", "reject another operator's return order, with a reason")
    reject.add_argument("order_id")
    reject.add_argument("--by", required=True, help="your name, for the audit")
    reject.add_argument("--reason", required=True)
    pending = return_command("pending", "return orders waiting for a second operator")
    pending.add_argument("--limit", type=int, default=200)

    keys = subcommands.add_parser(
        "keys", help="API keys of intake systems and operators (in the database)"
    ).add_subparsers(dest="keys_command", required=True)
    add = keys.add_parser("add", help="create a key and print it (once)")
    add.add_argument("--role", choices=["intake", "operator"], required=True)
    add.add_argument("--agency", default=None, help="the agency an intake key files reports for")
    add.add_argument("--label", default="", help="who or what holds the key")
    add.add_argument(
        "--holder",
        default=None,
        help="the person an operator key belongs to: four eyes compare holders, and a key "
        "without one can neither order nor approve a return",
    )
    add.set_defaults(run=commands.keys)
    keys.add_parser("list", help="every key: id, role, agency, active or revoked").set_defaults(
        run=commands.keys
    )
    revoke = keys.add_parser("revoke", help="revoke a key (effective within seconds)")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=commands.keys)

    iso = subcommands.add_parser("iso20022", help="ISO 20022 for integrators").add_subparsers(
        dest="iso20022_command", required=True
    )
    example = iso.add_parser(
        "example",
        help="print a message of a sample case as Stopper writes it (camt.056, the return "
        "instruction) or expects it (camt.029, pacs.004)",
    )
    example.add_argument("message", choices=["camt.056", "camt.029", "pacs.004", "return"])
    example.set_defaults(run=commands.iso20022_example)

    mig = subcommands.add_parser("migrate", help="upgrade the database schema to the newest")
    mig.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION instead")
    mig.set_defaults(run=commands.migrate)

    demo = subcommands.add_parser("demo", help="a live run on the embedded default")
    demo.add_argument(
        "--reports", type=_at_least(1, int), default=300, help="how many reports (default 300)"
    )
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
        type=_at_least(1, float),
        default=1.0,
        help="run the 48-hour deadlines this many times faster and let 72 hours pass "
        "(e.g. 3600: 72 h in 72 s); default 1: no deadline phase",
    )
    demo.add_argument(
        "--max-wait",
        type=_at_least(0, float),
        default=180.0,
        help="seconds to wait for every hold to settle (default 180)",
    )
    demo.add_argument(
        "--institutions-url",
        default=None,
        metavar="URL",
        help="send stop requests there instead of to the simulated institutions, which then "
        "make no hold fail (e.g. a port nothing listens on: every hold fails, and the exit code "
        "says so)",
    )
    demo.set_defaults(run=commands.demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 1 it failed, said in one line on stderr (`--debug`: the traceback);
    2 a usage error or unusable settings (argparse's own for the former); 130 interrupted."""
    args = build_parser().parse_args(argv)
    if args.debug:
        code: int = args.run(args)
        return code
    try:
        code = args.run(args)
    except ConfigurationError as e:
        print(f"stopper: {e}", file=sys.stderr)
        return 2
    except StopperError as e:  # the database, the API, the schema: the message says which
        print(f"stopper: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopper: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `stopper ... | head`: the reader has all it wanted.
        sys.stderr.close()
        return 0
    except Exception as e:
        # A bug, or a condition nobody foresaw: still one line, and the way to the rest.
        lines = str(e).strip().splitlines()
        print(
            f"stopper: unexpected {type(e).__name__}: {lines[0] if lines else '(no message)'} "
            "(`stopper --debug ...` shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
