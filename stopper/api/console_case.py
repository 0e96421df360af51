"""The console's case page (`/console/cases/{case_id}`): the money trail drawn layer by layer
as inline SVG (accounts as nodes, onward transfers as edges with amount and outcome), the
holds with the actions their states allow, the cases sharing an account with this one and its
ring, the payouts to victims, and the case's timeline from the audit (transitions and people's
notes). Rendered here, refreshed like the main page."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Final
from uuid import UUID

from stopper.api.console_approvals import pending_orders
from stopper.api.console_html import (
    case_link,
    hold_actions,
    money,
    return_action,
    section,
    short,
    state,
    table,
    withdraw_action,
)
from stopper.api.console_mules import links_section
from stopper.app.approvals import ApprovalDesk
from stopper.app.mules import MuleRegistry
from stopper.app.queries import CaseQueries
from stopper.app.views import AuditEntryView, CaseView, HoldView, TrailEdgeView, TrailView

_NODE_W, _NODE_H, _COL, _ROW, _MARGIN = 210, 74, 290, 92, 16
_AUDIT_LIMIT: Final = 500
# What a transfer that leads to no hold of its own ended in, as the graph names it.
_ENDS: Final = {
    "unrecoverable": "cash: unrecoverable",
    "depth_limit": "depth limit",
    "unknown_institution": "unknown institution",
    "nothing_left": "nothing left",
}


async def case_panels(
    queries: CaseQueries,
    approvals: ApprovalDesk,
    mules: MuleRegistry,
    case_id: UUID,
    now: datetime,
) -> str | None:
    view = await queries.get_case(case_id)
    trail = await queries.get_trail(case_id)
    if view is None or trail is None:
        return None
    audit = await queries.case_audit(case_id, _AUDIT_LIMIT)
    return "".join(
        [
            _facts(view, now),
            section("trail", "Money trail, layer by layer", trail_graph(trail)),
            await pending_orders(approvals, case_id),
            section("holds", f"Holds ({len(view.holds)})", _holds(view)),
            links_section(await mules.case_links(case_id)),
            section("payouts", f"Payouts to victims ({len(view.payouts)})", _payouts(view)),
            section("timeline", f"Timeline from the audit ({len(audit)})", _timeline(audit)),
        ]
    )


def _facts(view: CaseView, now: datetime) -> str:
    acts = return_action(view.case_id, view.holds) + withdraw_action(view.case_id, view.holds)
    return (
        f'<section id="case"><p>Case {case_link(view.case_id)} · report '
        f"<code>{escape(view.report_id)}</code> · agency {escape(view.agency_code)} · "
        f"reported {escape(view.reported_at.strftime('%Y-%m-%d %H:%M:%S'))} · "
        f"{view.victim_count} victims, {view.transfer_count} transfers</p>"
        f'<p class="acts">{acts}</p>'
        f'<p class="stamp">as of <time datetime="{escape(now.isoformat())}">'
        f"{escape(now.isoformat(timespec='seconds'))}</time> · "
        '<a href="/console">back to the console</a></p></section>'
    )


def _holds(view: CaseView) -> str:
    return table(
        [
            "hold",
            "layer",
            "institution",
            "account",
            "state",
            "asked",
            "stopped",
            "frozen",
            "returned",
            "act",
        ],
        (
            [
                short(h.hold_id),
                f"L{h.layer}",
                escape(h.institution_code),
                escape(h.account_masked),
                state(h.state),
                f"{money(h.amount_asked)} {escape(h.currency)}",
                money(h.amount_stopped),
                money(h.amount_frozen),
                money(h.amount_returned),
                hold_actions(h),
            ]
            for h in view.holds
        ),
        "No holds.",
    )


def _payouts(view: CaseView) -> str:
    return table(
        ["hold", "round", "victim", "amount", "to account", "status"],
        (
            [
                short(p.hold_id),
                str(p.round),
                escape(p.victim_ref),
                f"{money(p.amount)} {escape(p.currency)}",
                escape(p.account_masked),
                state(p.status),
            ]
            for p in view.payouts
        ),
        "No payouts ordered.",
    )


def _timeline(audit: Sequence[AuditEntryView]) -> str:
    def moved(e: AuditEntryView) -> str:
        if e.is_note:
            return f"note on {state(e.to_state)}"
        return f"{state(e.from_state) if e.from_state else 'born'} → {state(e.to_state)}"

    return table(
        ["at", "hold", "layer", "institution", "change", "event", "cause / note", "by"],
        (
            [
                escape(e.at.strftime("%Y-%m-%d %H:%M:%S")),
                short(e.hold_id),
                f"L{e.layer}",
                escape(e.institution_code),
                moved(e),
                f"<b>{escape(e.event or '')}</b>" if e.is_note else escape(e.event or ""),
                escape(e.cause),
                escape(e.actor),
            ]
            for e in audit
        ),
        "Nothing recorded yet.",
    )


def trail_graph(trail: TrailView) -> str:
    """Columns are layers (the victims' transfers reach layer 1); a hold is a node at its
    layer, an onward transfer an edge to the hold it led to, or to an end node in the next
    column when it led to none (cash, the depth limit, ...)."""
    place: dict[UUID, tuple[float, float]] = {}
    rows: dict[int, int] = {}
    nodes: list[str] = []
    for hold in sorted(trail.holds, key=lambda h: (h.layer, h.updated_at, h.hold_id)):
        row = rows.get(hold.layer, 0)
        rows[hold.layer] = row + 1
        x, y = _MARGIN + (hold.layer - 1) * _COL, _MARGIN + row * _ROW
        place[hold.hold_id] = (x, y)
        nodes.append(_node(hold, x, y))
    edges: list[str] = []
    layer_of = {h.hold_id: h.layer for h in trail.holds}
    for edge in trail.edges:
        if edge.from_hold_id not in place:
            continue
        x1, y1 = place[edge.from_hold_id]
        if edge.to_hold_id is not None and edge.to_hold_id in place:
            x2, y2 = place[edge.to_hold_id]
        else:
            layer = layer_of[edge.from_hold_id] + 1
            row = rows.get(layer, 0)
            rows[layer] = row + 1
            x2, y2 = _MARGIN + (layer - 1) * _COL, _MARGIN + row * _ROW
            nodes.append(_end(edge, x2, y2))
        edges.append(_edge(edge, x1 + _NODE_W, y1 + _NODE_H / 2, x2, y2 + _NODE_H / 2))
    if not nodes:
        return '<p class="empty">No holds yet.</p>'
    width = _MARGIN * 2 + max(rows) * _COL
    height = _MARGIN * 2 + max(rows.values()) * _ROW
    label = (
        f"Money trail: {len(trail.holds)} holds over {len(set(layer_of.values()))} layers, "
        f"{len(trail.edges)} onward transfers"
    )
    return (
        f'<div class="trail"><svg id="trail-graph" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#6b7380"/></marker></defs>' + "".join(edges) + "".join(nodes) + "</svg></div>"
    )


def _node(h: HoldView, x: float, y: float) -> str:
    lines = [
        f"L{h.layer} · {h.institution_code} · {h.account_masked}",
        h.state,
        f"asked {money(h.amount_asked)} {h.currency}",
        f"stopped {money(h.amount_stopped)} · frozen {money(h.amount_frozen)}",
    ]
    return _box(f"node state-{h.state}", str(h.hold_id), lines, x, y)


def _end(e: TrailEdgeView, x: float, y: float) -> str:
    where = " · ".join(p for p in (e.institution_code, e.account_masked) if p)
    lines = [_ENDS.get(e.outcome, e.outcome), where or e.kind, f"traced {money(e.amount_traced)}"]
    return _box(f"end outcome-{e.outcome}", "", lines, x, y)


def _box(cls: str, hold_id: str, lines: Sequence[str], x: float, y: float) -> str:
    texts = "".join(
        f'<text x="{x + 8}" y="{y + 17 + 16 * i}"'
        + (' font-weight="600"' if i == 0 else "")
        + f">{escape(line)}</text>"
        for i, line in enumerate(lines)
    )
    data = f' data-hold="{escape(hold_id)}"' if hold_id else ""
    return (
        f'<g class="{escape(cls)}"{data}><rect x="{x}" y="{y}" width="{_NODE_W}" '
        f'height="{_NODE_H}" rx="6"/>{texts}</g>'
    )


def _edge(e: TrailEdgeView, x1: float, y1: float, x2: float, y2: float) -> str:
    if x2 <= x1:  # back to a hold of this layer or before (a cycle, a merge): loop below
        bend = max(y1, y2) + _ROW / 2
        d = f"M {x1} {y1} C {x1 + 60} {bend}, {x2 - 60} {bend}, {x2} {y2}"
        lx, ly = (x1 + x2) / 2, bend - 4
    else:
        mid = (x1 + x2) / 2
        d = f"M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}"
        lx, ly = mid, (y1 + y2) / 2 - 4
    text = f"{money(e.amount)} · {e.outcome.replace('_', ' ')}"
    return (
        f'<g class="edge outcome-{escape(e.outcome)}"><path d="{d}" marker-end="url(#arrow)"/>'
        f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="middle">{escape(text)}</text></g>'
    )
