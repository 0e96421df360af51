"""The operator console: one server-rendered page at /console.

It shows, live: the active cases, each hold's state and layer, the countdown to every stop's
lapse (closest first), the failed holds that need a person, the unconfirmed ones (accepted by
their institution, its answer owed: oldest first), the divergences reconciliation found, and
each institution's health.
The page fetches its panels again every few seconds (`/console/panels`, plain HTML rendered
here) and ticks the countdowns in the browser between two fetches; there is no front-end build.
Account numbers appear masked only, as everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from stopper.api.auth import operator
from stopper.app.auth import Caller
from stopper.app.health import FRESH_S
from stopper.app.ports import Clock, Divergence
from stopper.app.queries import CaseQueries
from stopper.app.views import CaseSummaryView, HoldListView, InstitutionHealthView
from stopper.contracts.operations import BREAKER_STATES
from stopper.registry import Registry

REFRESH_S = 3
_CASES, _LAPSING, _FAILED, _UNCONFIRMED, _DIVERGENCES = 25, 40, 40, 40, 20


def router(queries: CaseQueries, registry: Registry, clock: Clock) -> APIRouter:
    """Operators only: a browser sends the key as the password of HTTP Basic authentication."""
    routes = APIRouter()

    @routes.get("/console", response_class=HTMLResponse, include_in_schema=False)
    async def console(_: Annotated[Caller, Depends(operator)]) -> HTMLResponse:
        panels = await panels_html(queries, registry, clock.now())
        return HTMLResponse(_PAGE.replace("{panels}", panels))

    @routes.get("/console/panels", response_class=HTMLResponse, include_in_schema=False)
    async def panels(_: Annotated[Caller, Depends(operator)]) -> HTMLResponse:
        return HTMLResponse(await panels_html(queries, registry, clock.now()))

    return routes


async def panels_html(queries: CaseQueries, registry: Registry, now: datetime) -> str:
    overview = await queries.overview()
    cases = await queries.list_cases(active_only=True, limit=_CASES)
    lapsing = await queries.list_holds(states=["stopped"], limit=_LAPSING, soonest_first=True)
    failed = await queries.list_holds(states=["failed"], limit=_FAILED)
    unconfirmed = await queries.list_holds(
        states=["unconfirmed"], limit=_UNCONFIRMED, soonest_first=True
    )
    divergences = await queries.recent_divergences(_DIVERGENCES)
    health = await queries.institution_health(now - timedelta(seconds=FRESH_S))
    by_state = overview.holds_by_state
    return "".join(
        [
            _summary(by_state, now),
            _section(
                "failed",
                f"Failed holds: a person must act ({by_state.get('failed', 0)})",
                _failed_table(failed),
            ),
            _section(
                "unconfirmed",
                "Unconfirmed: accepted by the institution, its answer owed "
                f"({by_state.get('unconfirmed', 0)}, oldest first)",
                _unconfirmed_table(unconfirmed),
            ),
            _section(
                "divergences",
                f"Divergences found by reconciliation (latest {_DIVERGENCES})",
                _divergences_table(divergences, now),
            ),
            _section(
                "lapsing",
                f"Stops lapsing unless frozen ({by_state.get('stopped', 0)} stopped, "
                "closest first)",
                _lapsing_table(lapsing),
            ),
            _section("cases", f"Active cases (newest {_CASES})", _cases_table(cases)),
            _section(
                "institutions",
                "Institutions (last 5 minutes, troubled first)",
                _institutions_table(registry, health),
            ),
        ]
    )


def _summary(by_state: dict[str, int], now: datetime) -> str:
    chips = "".join(
        f'<span class="chip state-{escape(state)}" data-state="{escape(state)}">'
        f"{escape(state)} <b>{count}</b></span>"
        for state, count in sorted(by_state.items())
    )
    return (
        f'<section id="summary"><h2>Holds by state</h2><div class="chips">{chips or "none yet"}'
        f'</div><p class="stamp">as of <time datetime="{escape(now.isoformat())}">'
        f"{escape(now.isoformat(timespec='seconds'))}</time></p></section>"
    )


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{escape(title)}</h2>{body}</section>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _countdown(at: datetime | None) -> str:
    if at is None:
        return "-"
    iso = escape(at.isoformat())
    return f'<span class="countdown" data-expires="{iso}">{iso}</span>'


def _state(state: str) -> str:
    return f'<span class="state state-{escape(state)}">{escape(state)}</span>'


def _hold_cells(h: HoldListView) -> list[str]:
    hold = h.hold
    return [
        f'<code title="{escape(str(hold.hold_id))}">{escape(str(hold.hold_id)[:8])}</code>',
        f'<code title="{escape(str(h.case_id))}">{escape(str(h.case_id)[:8])}</code>',
        f"L{hold.layer}",
        escape(hold.institution_code),
        escape(hold.account_masked),
        _state(hold.state),
        f"{_money(hold.amount_asked)} {escape(hold.currency)}",
    ]


def _failed_table(holds: Sequence[HoldListView]) -> str:
    return _table(
        ["hold", "case", "layer", "institution", "account", "state", "asked", "why"],
        ([*_hold_cells(h), escape(h.state_reason or "")] for h in holds),
        "No failed holds.",
    )


def _unconfirmed_table(holds: Sequence[HoldListView]) -> str:
    return _table(
        ["hold", "case", "layer", "institution", "account", "state", "asked", "why", "gives up"],
        ([*_hold_cells(h), escape(h.state_reason or ""), _countdown(h.expires_at)] for h in holds),
        "Every accepted request is confirmed.",
    )


def _divergences_table(divergences: Sequence[Divergence], now: datetime) -> str:
    return _table(
        ["hold", "institution", "Stopper said", "institution said", "found"],
        (
            [
                f'<code title="{escape(str(d.hold_id))}">{escape(str(d.hold_id)[:8])}</code>',
                escape(d.institution_code),
                _state(d.stopper_state),
                _state(d.institution_status),
                f"{int((now - d.found_at).total_seconds() // 60)} min ago",
            ]
            for d in divergences
        ),
        "No divergence found.",
    )


def _lapsing_table(holds: Sequence[HoldListView]) -> str:
    return _table(
        ["hold", "case", "layer", "institution", "account", "state", "asked", "stopped", "lapses"],
        ([*_hold_cells(h), _money(h.hold.amount_stopped), _countdown(h.expires_at)] for h in holds),
        "No stop is waiting for a freeze.",
    )


def _cases_table(cases: Sequence[CaseSummaryView]) -> str:
    def states(by_state: dict[str, int]) -> str:
        return " ".join(f"{_state(s)}&nbsp;{n}" for s, n in sorted(by_state.items()))

    return _table(
        ["case", "agency", "opened", "holds", "stopped", "next lapse", "need a person"],
        (
            [
                f'<code title="{escape(str(c.case_id))}">{escape(str(c.case_id)[:8])}</code>',
                escape(c.agency_code),
                escape(c.opened_at.strftime("%Y-%m-%d %H:%M:%S")),
                states(c.holds_by_state),
                ", ".join(f"{_money(a)} {escape(cur)}" for cur, a in c.amount_stopped.items()),
                _countdown(c.next_lapse_at),
                str(c.holds_by_state.get("failed", 0)),
            ]
            for c in cases
        ),
        "No active cases.",
    )


def _institutions_table(registry: Registry, health: Sequence[InstitutionHealthView]) -> str:
    by_code = {h.institution_code: h for h in health}
    rows: list[tuple[Any, ...]] = []
    for code, institution in registry.items():
        h = by_code.get(code)
        breaker = BREAKER_STATES[h.breaker_state] if h else "closed"
        rate = h.failures / h.attempts if h and h.attempts else None
        rows.append((code, institution, h, breaker, rate))
    rows.sort(key=lambda r: (-BREAKER_STATES.index(r[3]), -(r[4] or 0), r[0]))
    return _table(
        ["code", "institution", "kind", "breaker", "attempts", "error rate", "p95 latency"],
        (
            [
                escape(code),
                escape(institution.name),
                escape(institution.kind.value),
                f'<span class="breaker breaker-{breaker}">{breaker}</span>',
                str(h.attempts if h else 0),
                "-" if rate is None else f"{rate * 100:.1f} %",
                "-" if not h or h.latency_p95_ms is None else f"{h.latency_p95_ms:.0f} ms",
            ]
            for code, institution, h, breaker, rate in rows
        ),
        "No institutions.",
    )


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


_PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Stopper console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #1d2430; }
header { display: flex; align-items: baseline; gap: 1rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .2rem .5rem; border-bottom: 1px solid #e3e6eb; }
th { background: #f3f5f8; font-weight: 600; }
code { font-size: 12px; }
.chip { display: inline-block; margin: 0 .4rem .3rem 0; padding: .1rem .5rem;
        border-radius: 1rem; background: #eef1f5; }
.state-failed, .breaker-open, .urgent, .lapsed { color: #b3261e; font-weight: 600; }
.state-stopped, .state-frozen, .state-returned { color: #1b6b2f; }
.state-unconfirmed { color: #8a5a00; }
.breaker-half_open { color: #a15c00; font-weight: 600; }
.empty, .stamp { color: #6b7380; }
#live { color: #6b7380; }
</style>
</head>
<body>
<header><h1>Stopper console</h1>
<span id="live">live: refreshed every """
    + str(REFRESH_S)
    + """ s</span></header>
<main id="panels">{panels}</main>
<script>
function pad(n) { return String(n).padStart(2, "0"); }
let loaded = Date.now();
function tick() {
  // Count from Stopper's clock, not the browser's.
  const stamp = document.querySelector("#summary time");
  const now = stamp ? Date.parse(stamp.getAttribute("datetime")) + (Date.now() - loaded)
                    : Date.now();
  for (const el of document.querySelectorAll(".countdown")) {
    const left = Math.round((Date.parse(el.dataset.expires) - now) / 1000);
    const s = Math.abs(left);
    const text = Math.floor(s / 3600) + "h " + pad(Math.floor(s % 3600 / 60)) + "m "
      + pad(s % 60) + "s";
    el.textContent = left >= 0 ? "in " + text : "lapsed " + text + " ago";
    el.classList.toggle("urgent", left >= 0 && left < 7200);
    el.classList.toggle("lapsed", left < 0);
  }
}
async function refresh() {
  try {
    const answer = await fetch("/console/panels", { cache: "no-store" });
    if (answer.ok) {
      document.getElementById("panels").innerHTML = await answer.text();
      loaded = Date.now();
      document.getElementById("live").textContent =
        "live: refreshed " + new Date().toLocaleTimeString();
      tick();
    } else {
      document.getElementById("live").textContent = "stale: HTTP " + answer.status;
    }
  } catch (e) {
    document.getElementById("live").textContent = "stale: Stopper unreachable";
  }
}
tick();
setInterval(tick, 1000);
setInterval(refresh, """
    + str(REFRESH_S * 1000)
    + """);
</script>
</body>
</html>
"""
)
