"""The operator commands' tables, from canned API answers."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from stopper import cli
from stopper.operator_cli import cases_list, countdown, holds_list, institutions_status

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_countdowns_read_like_a_clock() -> None:
    assert countdown("2026-11-22T17:03:00+00:00", NOW) == "in 5h 03m"
    assert countdown("2026-11-22T11:48:00+00:00", NOW) == "12m ago"
    assert countdown(None, NOW) == "-"


def test_case_and_hold_tables_show_what_a_person_needs() -> None:
    out = io.StringIO()
    cases_list(
        {
            "cases": [
                {
                    "case_id": "c-1",
                    "agency_code": "PSB-01",
                    "opened_at": "2026-11-22T11:00:00.123+00:00",
                    "holds_by_state": {"stopped": 2, "failed": 1},
                    "amount_stopped": {"CNY": "500.00"},
                    "next_lapse_at": "2026-11-24T11:00:00+00:00",
                    "needs_person": 1,
                }
            ]
        },
        NOW,
        out,
    )
    header, rule, row = out.getvalue().splitlines()
    assert header.split()[:2] == ["CASE", "AGENCY"] and set(rule) <= {"-", " "}
    assert row.split() == [
        "c-1",
        "PSB-01",
        "2026-11-22",
        "11:00:00",
        "failed:1",
        "stopped:2",
        "500.00",
        "CNY",
        "in",
        "47h",
        "00m",
        "1",
    ]
    empty = io.StringIO()
    holds_list({"holds": []}, NOW, empty)
    assert empty.getvalue() == "(none)\n"


def test_institutions_table_shows_breaker_error_rate_and_latency() -> None:
    out = io.StringIO()
    institutions_status(
        {
            "institutions": [
                {
                    "code": "BK02",
                    "kind": "bank",
                    "name": "Jade River Bank",
                    "breaker": "open",
                    "attempts": 40,
                    "failures": 30,
                    "error_rate": 0.75,
                    "latency_p95_ms": 812.4,
                }
            ]
        },
        NOW,
        out,
    )
    assert out.getvalue().splitlines()[2].split()[-6:] == ["open", "40", "75.0", "%", "812", "ms"]


def test_an_unreachable_api_is_a_clear_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["cases", "list", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach Stopper at http://127.0.0.1:9" in capsys.readouterr().err


def test_return_orders_read_who_asked_who_decided_and_what_goes_back() -> None:
    from stopper.operator_cli import return_order, return_orders

    order = {
        "order_id": "o-1",
        "approval": "rejected",
        "case_id": "c-1",
        "legal_document_ref": "RET-1",
        "requester": {"name": "officer-7", "person": "alice", "key_id": "ka"},
        "requested_at": "2026-11-22T11:00:00+00:00",
        "decider": {"name": "supervisor-2", "person": "bob", "key_id": "kb"},
        "decided_at": "2026-11-22T11:30:00+00:00",
        "reason": "wrong document",
    }
    out = io.StringIO()
    return_order(order, NOW, out)
    assert out.getvalue().splitlines() == [
        "return order o-1  rejected  case c-1  document RET-1",
        "ordered by officer-7 (alice) at 2026-11-22T11:00:00",
        "rejected by supervisor-2 (bob) at 2026-11-22T11:30:00: wrong document",
    ]
    pending = {
        **order,
        "approval": "pending",
        "decider": None,
        "returns": [
            {
                "hold_id": "h-1",
                "currency": "CNY",
                "amount": "600.00",
                "unallocated": "0.00",
                "payouts": [{}, {}],
            }
        ],
        "skipped": [{"hold_id": "h-2", "reason": "the hold is stopped, not frozen"}],
    }
    out = io.StringIO()
    return_order(pending, NOW, out)
    lines = out.getvalue().splitlines()
    assert lines[2] == "returns (once approved)"
    assert lines[5].split() == ["h-1", "600.00", "CNY", "0.00", "2"]
    assert lines[6] == "skipped h-2: the hold is stopped, not frozen"
    listing = io.StringIO()
    return_orders({"orders": [pending]}, NOW, listing)
    assert listing.getvalue().splitlines()[2].split()[:4] == ["o-1", "pending", "c-1", "RET-1"]


def test_returns_commands_parse() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["returns", "order", "c-1", "--document", "RET-1", "--by", "li", "--hold", "h-1"]
    )
    assert (args.returns_command, args.hold, args.operator) == ("order", ["h-1"], "")
    args = parser.parse_args(["returns", "reject", "o-1", "--by", "wu", "--reason", "no"])
    assert (args.order_id, args.reason) == ("o-1", "no")
    with pytest.raises(SystemExit):
        parser.parse_args(["returns", "approve", "o-1"])  # --by is required


def test_release_commands_parse_and_say_what_was_ordered() -> None:
    from stopper.operator_cli import case_withdrawal, hold_release

    parser = cli.build_parser()
    args = parser.parse_args(["holds", "release", "h-1", "--reason", "cleared", "--by", "li"])
    assert (args.hold_id, args.reason, args.by, args.operator) == ("h-1", "cleared", "li", "")
    args = parser.parse_args(["cases", "withdraw", "c-1", "--reason", "withdrawn", "--by", "wu"])
    assert (args.case_id, args.reason) == ("c-1", "withdrawn")
    with pytest.raises(SystemExit):
        parser.parse_args(["holds", "release", "h-1", "--by", "li"])  # --reason is required
    out = io.StringIO()
    hold_release(
        {"hold_id": "h-1", "outcome": "ordered", "state": "releasing", "ground": "account_cleared"},
        NOW,
        out,
    )
    assert out.getvalue().splitlines() == [
        "hold h-1  releasing  (account_cleared)",
        "release sent to its institution; releasing until it confirms",
    ]
    out = io.StringIO()
    case_withdrawal(
        {
            "case_id": "c-1",
            "ground": "report_withdrawn",
            "releases": [
                {"hold_id": "h-1", "outcome": "ordered", "state": "releasing"},
                {"hold_id": "h-2", "outcome": "cancelled", "state": "released"},
            ],
            "skipped": [{"hold_id": "h-3", "reason": "the hold is returned: its funds were ..."}],
        },
        NOW,
        out,
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "case c-1 withdrawn (report_withdrawn)"
    assert [line.split() for line in lines[3:5]] == [
        ["h-1", "ordered", "releasing"],
        ["h-2", "cancelled", "released"],
    ]
    assert lines[5] == "not released h-3: the hold is returned: its funds were ..."


@pytest.mark.parametrize("command", ["failed", "unconfirmed"])
def test_the_needs_a_person_lists_leave_out_handled_holds_unless_asked_for_all(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stopper import operator_cli

    asked: list[dict[str, object]] = []

    def fetch(url: str, path: str, params: dict[str, object], *_: object) -> object:
        asked.append({"path": path, **params})
        return {"holds": []}

    monkeypatch.setattr(operator_cli, "fetch", fetch)
    assert cli.main(["holds", command]) == 0
    assert cli.main(["holds", command, "--all"]) == 0
    assert [(a["path"], a["state"], a["unhandled"]) for a in asked] == [
        ("/v1/holds", command, True),
        ("/v1/holds", command, False),
    ]
