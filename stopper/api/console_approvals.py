"""The console's panel of orders waiting for a second operator (four eyes: returns, and
freezes where STOPPER_APPROVALS_FREEZES is on), each with Approve and Reject for another
person; the API refuses the one who asked (403, with the reason the page shows)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final
from uuid import UUID

from stopper.api.console_html import act_button, case_link, section, short, table
from stopper.app.approvals import ApprovalDesk, ApprovalOrder, ApprovalStatus, OrderKind

_LIMIT: Final = 50
_PATHS: Final = {OrderKind.RETURN: "return-orders", OrderKind.FREEZE: "freeze-orders"}


async def pending_orders(approvals: ApprovalDesk, case_id: UUID | None = None) -> str:
    orders: list[ApprovalOrder] = []
    for kind in OrderKind:
        orders += await approvals.listing(kind, ApprovalStatus.PENDING, _LIMIT)
    if case_id is not None:
        orders = [o for o in orders if o.case_id == case_id]
    orders.sort(key=lambda o: o.requested_at)
    return section(
        "approvals",
        f"Waiting for a second operator ({len(orders)}, oldest first)",
        _table(orders),
    )


def _table(orders: Sequence[ApprovalOrder]) -> str:
    return table(
        ["order", "kind", "case", "hold", "document", "asked by", "asked at", "act"],
        (
            [
                short(o.id),
                escape(o.kind.value),
                case_link(o.case_id),
                short(o.hold_id) if o.hold_id else "all frozen",
                f"<code>{escape(o.document_ref)}</code>",
                escape(o.requester.person),
                escape(o.requested_at.strftime("%Y-%m-%d %H:%M:%S")),
                _decisions(o),
            ]
            for o in orders
        ),
        "Nothing waits for approval.",
    )


def _decisions(o: ApprovalOrder) -> str:
    what = (
        f"the {o.kind.value} order {str(o.id)[:8]} of case {str(o.case_id)[:8]} under "
        f"{o.document_ref}, asked by {o.requester.person}"
    )
    path = f"/v1/{_PATHS[o.kind]}/{o.id}"
    return (
        '<span class="acts">'
        + act_button("approve", "Approve…", f"Approve {what}: it is sent now", path=path)
        + act_button("reject", "Reject…", f"Reject {what}: nothing is sent", path=path)
        + "</span>"
    )
