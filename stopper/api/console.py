"""The operator console: the main page at /console, a page per case at /console/cases/{id}.

The main page shows, live: a summary band (the last hour, the amount stopped today, the holds
needing a person, the report -> stop latency), the failed and unconfirmed holds nobody has
handled yet, the divergences reconciliation found, the countdown to every stop's lapse
(closest first), the active cases (each a link to its page) and each institution's health.
Holds and cases carry the actions their states allow (freeze, re-apply, mark handled, order a
return, release a hold, withdraw a case's report): `static/console.js` asks the operator to
confirm, calls the API with the operator's key and shows its answer, then fetches the panels
again at once. The pages fetch their panels again every few seconds (plain HTML rendered here)
and tick the countdowns in the browser between two fetches; there is no front-end build.
Account numbers appear masked only, as everywhere else, and no URL carries one (or a name):
only case ids.
Orders waiting for a second operator (four eyes) are listed with Approve and Reject, and the
releases under way (a release that gave up says why) with the action to send it again.
The known mule accounts have a page of their own (/console/accounts, linked from the main page's
heading), and a case's page shows the cases it shares accounts with and its ring.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from importlib import resources
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from stopper.api.auth import operator
from stopper.api.console_approvals import pending_orders
from stopper.api.console_case import case_panels
from stopper.api.console_html import (
    case_link,
    countdown,
    hold_actions,
    money,
    page,
    section,
    short,
    state,
    table,
)
from stopper.api.console_mules import FLAGGED_REFRESH_S, FLAGGED_SHOWN, flagged_panel
from stopper.api.console_summary import summary_band
from stopper.app.approvals import ApprovalDesk
from stopper.app.auth import Caller
from stopper.app.health import FRESH_S
from stopper.app.mules import MuleRegistry
from stopper.app.ports import Clock, Divergence
from stopper.app.queries import CaseQueries
from stopper.app.views import CaseSummaryView, HoldListView, InstitutionHealthView
from stopper.contracts.operations import BREAKER_STATES
from stopper.registry import Registry

_CASES, _LAPSING, _FAILED, _UNCONFIRMED, _DIVERGENCES, _RELEASING = 25, 40, 40, 40, 20, 40
_STATIC: Final = {
    name: (resources.files("stopper.api").joinpath("static", name).read_bytes(), kind)
    for name, kind in (
        ("console.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    )
}


def router(
    queries: CaseQueries,
    registry: Registry,
    clock: Clock,
    approvals: ApprovalDesk,
    mules: MuleRegistry,
) -> APIRouter:
    """Operators only: a browser sends the key as the password of HTTP Basic authentication
    (the pages), or as a bearer token (the script's calls)."""
    routes = APIRouter()

    @routes.get("/console", response_class=HTMLResponse, include_in_schema=False)
    async def console(_: Annotated[Caller, Depends(operator)]) -> HTMLResponse:
        panels = await panels_html(queries, registry, approvals, clock.now())
        heading = 'Stopper console · <a href="/console/accounts">known mule accounts</a>'
        return HTMLResponse(page("Stopper console", heading, "/console/panels", panels))

    @routes.get("/console/panels", response_class=HTMLResponse, include_in_schema=False)
    async def panels(_: Annotated[Caller, Depends(operator)]) -> HTMLResponse:
        return HTMLResponse(await panels_html(queries, registry, approvals, clock.now()))

    @routes.get("/console/accounts", response_class=HTMLResponse, include_in_schema=False)
    async def accounts_page(_: Annotated[Caller, Depends(operator)]) -> HTMLResponse:
        panel = flagged_panel(await mules.flagged(FLAGGED_SHOWN), clock.now())
        return HTMLResponse(
            page(
                "Known mule accounts · Stopper console",
                '<a href="/console">Stopper console</a> · known mule accounts',
                "/console/accounts/panels",
                panel,
                every_s=FLAGGED_REFRESH_S,
            )
        )

    @routes.get("/console/accounts/panels", response_class=HTMLResponse, include_in_schema=False)
    async def accounts_panels(_: Annotated[Caller, Depends(operator)]) -> HTMLResponse:
        return HTMLResponse(flagged_panel(await mules.flagged(FLAGGED_SHOWN), clock.now()))

    @routes.get("/console/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
    async def case_page(case_id: UUID, _: Annotated[Caller, Depends(operator)]) -> HTMLResponse:
        body = await case_panels(queries, approvals, mules, case_id, clock.now())
        if body is None:
            return HTMLResponse(_no_case(case_id), status_code=404)
        title = f"Case {str(case_id)[:8]}"
        return HTMLResponse(
            page(
                f"{title} · Stopper console",
                f'<a href="/console">Stopper console</a> · {escape(title)}',
                f"/console/cases/{case_id}/panels",
                body,
            )
        )

    @routes.get(
        "/console/cases/{case_id}/panels", response_class=HTMLResponse, include_in_schema=False
    )
    async def case_page_panels(
        case_id: UUID, _: Annotated[Caller, Depends(operator)]
    ) -> HTMLResponse:
        body = await case_panels(queries, approvals, mules, case_id, clock.now())
        if body is None:
            return HTMLResponse(_no_case(case_id), status_code=404)
        return HTMLResponse(body)

    @routes.get("/console/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        # Public like any page's script and style: no data in them, and a browser fetches
        # them without the page's credentials.
        if name not in _STATIC:
            return Response(status_code=404)
        content, kind = _STATIC[name]
        return Response(content, media_type=kind, headers={"cache-control": "no-cache"})

    return routes


def _no_case(case_id: UUID) -> str:
    return (
        f"<!doctype html><title>No such case</title><p>No case {escape(str(case_id))} (a report "
        'accepted moments ago may still be queued). <a href="/console">Back</a></p>'
    )


async def panels_html(
    queries: CaseQueries, registry: Registry, approvals: ApprovalDesk, now: datetime
) -> str:
    overview = await queries.overview()
    cases = await queries.list_cases(active_only=True, limit=_CASES)
    lapsing = await queries.list_holds(states=["stopped"], limit=_LAPSING, soonest_first=True)
    failed = await queries.list_holds(states=["failed"], limit=_FAILED, unhandled_only=True)
    unconfirmed = await queries.list_holds(
        states=["unconfirmed"], limit=_UNCONFIRMED, soonest_first=True, unhandled_only=True
    )
    releasing = await queries.list_holds(states=["releasing"], limit=_RELEASING)
    divergences = await queries.recent_divergences(_DIVERGENCES)
    health = await queries.institution_health(now - timedelta(seconds=FRESH_S))
    by_state = overview.holds_by_state
    return "".join(
        [
            await summary_band(queries, by_state, now),
            await pending_orders(approvals),
            section(
                "failed",
                f"Failed holds: a person must act ({len(failed)} not handled yet, "
                f"{by_state.get('failed', 0)} failed)",
                _failed_table(failed),
            ),
            section(
                "unconfirmed",
                "Unconfirmed: accepted by the institution, its answer owed, or unanswered"
                " and being asked about "
                f"({by_state.get('unconfirmed', 0)}, oldest first; handled ones left out)",
                _unconfirmed_table(unconfirmed),
            ),
            section(
                "releasing",
                "Releases under way: released once the institution confirms "
                f"({by_state.get('releasing', 0)}; one that gave up says why)",
                _releasing_table(releasing),
            ),
            section(
                "divergences",
                f"Divergences found by reconciliation and re-verification (latest {_DIVERGENCES})",
                _divergences_table(divergences, now),
            ),
            section(
                "lapsing",
                f"Stops lapsing unless frozen ({by_state.get('stopped', 0)} stopped, "
                "closest first)",
                _lapsing_table(lapsing),
            ),
            section("cases", f"Active cases (newest {_CASES})", _cases_table(cases)),
            section(
                "institutions",
                "Institutions (last 5 minutes, troubled first)",
                _institutions_table(registry, health),
            ),
        ]
    )


def _hold_cells(h: HoldListView) -> list[str]:
    hold = h.hold
    return [
        short(hold.hold_id),
        case_link(h.case_id),
        f"L{hold.layer}",
        escape(hold.institution_code),
        escape(hold.account_masked),
        state(hold.state),
        f"{money(hold.amount_asked)} {escape(hold.currency)}",
    ]


def _acts(h: HoldListView) -> str:
    return hold_actions(h.hold)


def _failed_table(holds: Sequence[HoldListView]) -> str:
    return table(
        ["hold", "case", "layer", "institution", "account", "state", "asked", "why", "act"],
        ([*_hold_cells(h), escape(h.state_reason or ""), _acts(h)] for h in holds),
        "No failed hold waits for a person.",
    )


def _unconfirmed_table(holds: Sequence[HoldListView]) -> str:
    return table(
        [
            "hold",
            "case",
            "layer",
            "institution",
            "account",
            "state",
            "asked",
            "why",
            "gives up",
            "act",
        ],
        (
            [*_hold_cells(h), escape(h.state_reason or ""), countdown(h.expires_at), _acts(h)]
            for h in holds
        ),
        "Every accepted request is confirmed.",
    )


def _releasing_table(holds: Sequence[HoldListView]) -> str:
    return table(
        ["hold", "case", "layer", "institution", "account", "state", "asked", "why", "act"],
        ([*_hold_cells(h), escape(h.state_reason or ""), _acts(h)] for h in holds),
        "No release is under way.",
    )


def _divergences_table(divergences: Sequence[Divergence], now: datetime) -> str:
    return table(
        ["hold", "institution", "Stopper said", "institution said", "found by", "found"],
        (
            [
                f'<code title="{escape(str(d.hold_id))}">{escape(str(d.hold_id)[:8])}</code>',
                escape(d.institution_code),
                state(d.stopper_state),
                state(d.institution_status),
                escape(d.found_by),
                f"{int((now - d.found_at).total_seconds() // 60)} min ago",
            ]
            for d in divergences
        ),
        "No divergence found.",
    )


def _lapsing_table(holds: Sequence[HoldListView]) -> str:
    return table(
        [
            "hold",
            "case",
            "layer",
            "institution",
            "account",
            "state",
            "asked",
            "stopped",
            "lapses",
            "act",
        ],
        (
            [*_hold_cells(h), money(h.hold.amount_stopped), countdown(h.expires_at), _acts(h)]
            for h in holds
        ),
        "No stop is waiting for a freeze.",
    )


def _cases_table(cases: Sequence[CaseSummaryView]) -> str:
    def states(by_state: dict[str, int]) -> str:
        return " ".join(f"{state(s)}&nbsp;{n}" for s, n in sorted(by_state.items()))

    return table(
        ["case", "agency", "opened", "holds", "stopped", "next lapse", "need a person"],
        (
            [
                case_link(c.case_id),
                escape(c.agency_code),
                escape(c.opened_at.strftime("%Y-%m-%d %H:%M:%S")),
                states(c.holds_by_state),
                ", ".join(f"{money(a)} {escape(cur)}" for cur, a in c.amount_stopped.items()),
                countdown(c.next_lapse_at),
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
    return table(
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
