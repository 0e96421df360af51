"""`stopper cases|holds|institutions status|reconcile|reverify|returns`: what operators and
scripts ask a running Stopper, through its API (and the orders they give it: returns, releases,
withdrawals, re-verifications). Readable tables by default, the API's JSON with `--json`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx

from stopper.errors import OperatorCommandFailed


def fetch(
    url: str,
    path: str,
    params: dict[str, Any] | None = None,
    key: str = "",
    body: dict[str, Any] | None = None,
    operator: str = "",
) -> Any:
    """GET `path` (POST with `body` as JSON when it is given) and return the JSON answer.
    `operator` names the person acting where keys are not required (X-Operator)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if operator:
        headers["x-operator"] = operator
    # A reconciliation asks every institution: give it longer than a read.
    timeout = 10 if body is None else 120
    try:
        if body is None:
            response = httpx.get(
                url.rstrip("/") + path, params=params, headers=headers, timeout=timeout
            )
        else:
            response = httpx.post(
                url.rstrip("/") + path, params=params, json=body, headers=headers, timeout=timeout
            )
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise OperatorCommandFailed(f"cannot reach Stopper at {url}: {type(e).__name__}") from e
    if response.status_code not in (200, 202):  # 202: an order taken
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):  # not JSON, or JSON without a detail
            detail = response.text
        raise OperatorCommandFailed(f"HTTP {response.status_code}: {detail}")
    try:
        return response.json()
    except ValueError as e:
        raise _not_stopper(url) from e


def _not_stopper(url: str) -> OperatorCommandFailed:
    return OperatorCommandFailed(f"{url} did not answer as Stopper's API does: is it Stopper?")


def table(rows: Sequence[Sequence[str]], headers: Sequence[str], out: TextIO) -> None:
    if not rows:
        out.write("(none)\n")
        return
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out.write(line.rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def countdown(at: str | None, now: datetime) -> str:
    """'in 5h 03m', 'lapsed 12m ago' or '-'."""
    if not at:
        return "-"
    seconds = int((datetime.fromisoformat(at) - now).total_seconds())
    span = abs(seconds)
    text = f"{span // 3600}h {span % 3600 // 60:02d}m" if span >= 3600 else f"{span // 60}m"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _money(amounts: dict[str, str]) -> str:
    return ", ".join(f"{a} {c}" for c, a in amounts.items()) or "-"


def _states(by_state: dict[str, int]) -> str:
    return " ".join(f"{s}:{n}" for s, n in sorted(by_state.items()))


def cases_list(doc: Any, now: datetime, out: TextIO) -> None:
    rows = [
        [
            c["case_id"],
            c["agency_code"],
            c["opened_at"][:19].replace("T", " "),
            _states(c["holds_by_state"]),
            _money(c["amount_stopped"]),
            countdown(c["next_lapse_at"], now),
            str(c["needs_person"]),
        ]
        for c in doc["cases"]
    ]
    table(
        rows,
        ["CASE", "AGENCY", "OPENED (UTC)", "HOLDS", "STOPPED", "NEXT LAPSE", "NEED A PERSON"],
        out,
    )


def case_show(doc: Any, now: datetime, out: TextIO) -> None:
    out.write(
        f"case {doc['case_id']}  report {doc['report_id']}  agency {doc['agency_code']}\n"
        f"opened {doc['opened_at']}  victims {doc['victims']}  transfers {doc['transfers']}\n"
        f"holds {_states(doc['holds_by_state'])}\n\n"
    )
    rows = [
        [
            f"L{h['layer']}",
            h["hold_id"],
            h["institution_code"],
            h["account"],
            h["state"],
            f"{h['amount_asked']} {h['currency']}",
            h["amount_stopped"],
            h["amount_frozen"],
            h["amount_returned"],
        ]
        for h in sorted(doc["holds"], key=lambda h: (h["layer"], h["institution_code"]))
    ]
    table(
        rows,
        ["LAYER", "HOLD", "INST", "ACCOUNT", "STATE", "ASKED", "STOPPED", "FROZEN", "RETURNED"],
        out,
    )
    if doc.get("payouts"):
        out.write("\npayouts to victims\n")
        table(
            [
                [p["victim_ref"], p["amount"] + " " + p["currency"], p["account"], p["status"]]
                for p in doc["payouts"]
            ],
            ["VICTIM", "AMOUNT", "ACCOUNT", "STATUS"],
            out,
        )


def holds_list(doc: Any, now: datetime, out: TextIO) -> None:
    rows = [
        [
            h["hold_id"],
            h["case_id"],
            h["institution_code"],
            h["account"],
            h["state"],
            f"{h['amount_asked']} {h['currency']}",
            countdown(h["expires_at"], now),
            (h["state_reason"] or "")[:70],
        ]
        for h in doc["holds"]
    ]
    table(rows, ["HOLD", "CASE", "INST", "ACCOUNT", "STATE", "ASKED", "DEADLINE", "WHY"], out)


def institutions_status(doc: Any, now: datetime, out: TextIO) -> None:
    rows = [
        [
            i["code"],
            i["kind"],
            i["name"][:28],
            i["breaker"],
            str(i["attempts"]),
            "-" if i["error_rate"] is None else f"{i['error_rate'] * 100:.1f} %",
            "-" if i["latency_p95_ms"] is None else f"{i['latency_p95_ms']:.0f} ms",
        ]
        for i in doc["institutions"]
    ]
    table(rows, ["CODE", "KIND", "NAME", "BREAKER", "ATTEMPTS 5M", "ERRORS", "P95"], out)


def reconciliation(doc: Any, now: datetime, out: TextIO) -> None:
    outcomes = sorted({o for counts in doc["outcomes"].values() for o in counts})
    rows = [
        [code, *(str(counts.get(o, 0)) for o in outcomes)]
        for code, counts in sorted(doc["outcomes"].items())
    ]
    rows.append(["all", *(str(doc["total"].get(o, 0)) for o in outcomes)])
    table(rows, ["INST", *(o.upper() for o in outcomes)], out)
    applied = doc["total"].get("applied", 0)
    out.write(
        f"{applied} holds had diverged from their institution's record and were moved to it"
        " (GET /v1/divergences lists them).\n"
        if applied
        else "No divergence: Stopper's view matches every institution asked.\n"
    )
    for code, why in sorted(doc["unreachable"].items()):
        out.write(f"{code}: could not be asked ({why})\n")


def reverification(doc: Any, now: datetime, out: TextIO) -> None:
    """One re-verification job: its scope, progress and outcomes."""
    scope = doc["institution"] or "every institution"
    out.write(
        f"re-verification {doc['id']}  {doc['state']}  {scope}  by {doc['requested_by']}\n"
        f"started {doc['started_at'][:19]}"
        + (f", finished {doc['finished_at'][:19]}" if doc["finished_at"] else "")
        + "\n"
    )
    out.write(
        f"{doc['holds']} holds: {doc['asked']} asked, {doc['confirmed']} confirmed, "
        f"{doc['diverged']} diverged, {doc['unreachable']} unreachable, "
        f"{doc['remaining']} to go\n"
    )
    rows = [[outcome, str(n)] for outcome, n in sorted(doc["outcomes"].items())]
    table(rows, ["OUTCOME", "HOLDS"], out)
    if doc["diverged"]:
        out.write("Divergences: GET /v1/divergences (or the console) lists them.\n")


def reverify(
    url: str,
    *,
    institution: str | None,
    requested_by: str,
    wait: bool,
    as_json: bool,
    key: str = "",
    out: TextIO | None = None,
    poll_s: float = 2.0,
) -> int:
    """Start a re-verification; with `wait`, follow it (a line of progress per poll) until it
    has finished. A running job overlapping it is an error naming that job (HTTP 409)."""
    out = out or sys.stdout
    body = {"institution": institution, "requested_by": requested_by}
    doc = fetch(url, "/v1/reverifications", key=key, body=body)
    while wait and doc["state"] != "finished":
        if not as_json:
            out.write(
                f"{doc['asked'] + doc['unreachable']} of {doc['holds']} holds, "
                f"{doc['diverged']} diverged, {doc['remaining']} to go\n"
            )
            out.flush()
        time.sleep(poll_s)
        doc = fetch(url, f"/v1/reverifications/{doc['id']}", key=key)
    if as_json:
        out.write(json.dumps(doc, indent=2) + "\n")
        return 0
    try:
        reverification(doc, datetime.now(UTC), out)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise _not_stopper(url) from e
    return 0


def return_order(doc: Any, now: datetime, out: TextIO) -> None:
    """One return order: who asked, who decided, and the returns it would make or made."""
    asked = doc["requester"]
    out.write(
        f"return order {doc['order_id']}  {doc['approval']}  case {doc['case_id']}  "
        f"document {doc['legal_document_ref']}\n"
        f"ordered by {asked['name']} ({asked['person']}) at {doc['requested_at'][:19]}\n"
    )
    if doc.get("decider"):
        decided = doc["decider"]
        why = f": {doc['reason']}" if doc.get("reason") else ""
        out.write(
            f"{doc['approval']} by {decided['name']} ({decided['person']}) at "
            f"{doc['decided_at'][:19]}{why}\n"
        )
    if "returns" not in doc:
        return
    out.write("returns (once approved)\n" if doc["approval"] == "pending" else "returns\n")
    table(
        [
            [
                r["hold_id"],
                f"{r['amount']} {r['currency']}",
                r["unallocated"],
                str(len(r["payouts"])),
            ]
            for r in doc["returns"]
        ],
        ["HOLD", "AMOUNT", "UNALLOCATED", "PAYOUTS"],
        out,
    )
    for skipped in doc.get("skipped", []):
        out.write(f"skipped {skipped['hold_id']}: {skipped['reason']}\n")


def return_orders(doc: Any, now: datetime, out: TextIO) -> None:
    rows = [
        [
            o["order_id"],
            o["approval"],
            o["case_id"],
            o["legal_document_ref"],
            f"{o['requester']['name']} ({o['requester']['person']})",
            o["requested_at"][:19].replace("T", " "),
        ]
        for o in doc["orders"]
    ]
    table(rows, ["ORDER", "APPROVAL", "CASE", "DOCUMENT", "ORDERED BY", "AT (UTC)"], out)


def hold_release(doc: Any, now: datetime, out: TextIO) -> None:
    """A hold's release: ordered of its institution, or released at once."""
    outcome = {
        "ordered": "release sent to its institution; releasing until it confirms",
        "cancelled": "released at once: its stop request had never left",
        "already_ordered": "a release is already under way",
        "resent": "the earlier release, which had given up, sent again",
    }.get(doc["outcome"], doc["outcome"])
    out.write(f"hold {doc['hold_id']}  {doc['state']}  ({doc['ground']})\n{outcome}\n")


def case_withdrawal(doc: Any, now: datetime, out: TextIO) -> None:
    """A withdrawn case: each hold released or on its way to it, and those left as they are."""
    out.write(f"case {doc['case_id']} withdrawn ({doc['ground']})\n")
    table(
        [[r["hold_id"], r["outcome"], r["state"]] for r in doc["releases"]],
        ["HOLD", "RELEASE", "STATE"],
        out,
    )
    for skipped in doc.get("skipped", []):
        out.write(f"not released {skipped['hold_id']}: {skipped['reason']}\n")


Render = Callable[[Any, datetime, TextIO], None]


def run(
    url: str,
    path: str,
    render: Render,
    *,
    as_json: bool,
    params: dict[str, Any] | None = None,
    key: str = "",
    out: TextIO | None = None,
    body: dict[str, Any] | None = None,
    operator: str = "",
) -> int:
    out = out or sys.stdout
    doc = fetch(url, path, params, key, body, operator)
    if as_json:
        out.write(json.dumps(doc, indent=2) + "\n")
        return 0
    try:
        render(doc, datetime.now(UTC), out)
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # JSON, but not Stopper's
        raise _not_stopper(url) from e
    return 0
