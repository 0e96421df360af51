"""What the console's pages share: the page around the panels, tables, states, amounts,
countdowns, and the action buttons `static/console.js` turns into confirmed API calls.

An action button names its API call by `data-act` and the ids it needs; `data-what` is the
sentence the confirmation shows ("Order the formal freeze of ..."). The operator's key never
appears in a page or a URL: the script keeps it in the browser's sessionStorage and sends it
as the `Authorization: Bearer` header of the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Final
from uuid import UUID

from stopper.app.handling import NEEDS_A_PERSON
from stopper.app.views import HoldView
from stopper.domain.holds import FREEZABLE, RELEASABLE, HoldEvent, HoldState, states_allowing

REFRESH_S: Final = 3
REAPPLICABLE: Final = states_allowing(HoldEvent.REAPPLIED)
RETURNABLE: Final = states_allowing(HoldEvent.RETURN_STARTED)
# A release may be asked for, or asked for again (one under way answers so: nothing is doubled).
RELEASE_OFFERED: Final = RELEASABLE | states_allowing(HoldEvent.RELEASE_CONFIRMED)


def money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


def short(id_: UUID) -> str:
    return f'<code title="{escape(str(id_))}">{escape(str(id_)[:8])}</code>'


def case_link(case_id: UUID) -> str:
    return (
        f'<a href="/console/cases/{escape(str(case_id))}" title="{escape(str(case_id))}">'
        f"<code>{escape(str(case_id)[:8])}</code></a>"
    )


def state(name: str) -> str:
    return f'<span class="state state-{escape(name)}">{escape(name)}</span>'


def countdown(at: datetime | None) -> str:
    if at is None:
        return "-"
    iso = escape(at.isoformat())
    return f'<span class="countdown" data-expires="{iso}">{iso}</span>'


def section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{escape(title)}</h2>{body}</section>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def act_button(act: str, label: str, what: str, **ids: UUID | str) -> str:
    data = "".join(f' data-{k}="{escape(str(v))}"' for k, v in ids.items())
    return (
        f'<button type="button" class="act act-{act}" data-act="{act}"{data} '
        f'data-what="{escape(what)}">{escape(label)}</button>'
    )


def hold_actions(hold: HoldView) -> str:
    """The buttons for what the hold's state allows (each from the hold table)."""
    current = HoldState(hold.state)
    where = (
        f"hold {str(hold.hold_id)[:8]} at {hold.institution_code} {hold.account_masked} "
        f"({hold.state}, {money(hold.amount_stopped)} of {money(hold.amount_asked)} "
        f"{hold.currency} stopped)"
    )
    buttons = []
    if current in FREEZABLE:
        verb = "Renew the freeze of" if current is HoldState.FROZEN else "Order the freeze of"
        buttons.append(act_button("freeze", "Freeze…", f"{verb} {where}", hold=hold.hold_id))
    if current in REAPPLICABLE:
        buttons.append(
            act_button("reapply", "Re-apply…", f"Re-apply the stop on {where}", hold=hold.hold_id)
        )
    if current in RELEASE_OFFERED:
        again = current not in RELEASABLE
        buttons.append(
            act_button(
                "release",
                "Release again…" if again else "Release…",
                f"{'Send again the release of' if again else 'Release'} {where}: its "
                "institution lifts the stop and carries out none of the hold's requests still "
                "on their way (a request never sent is dropped at once)",
                hold=hold.hold_id,
            )
        )
    if current in NEEDS_A_PERSON:
        buttons.append(
            act_button(
                "handled",
                "Handled…",
                f"Mark {where} as handled: it leaves the list of holds needing a person",
                hold=hold.hold_id,
            )
        )
    return '<span class="acts">' + "".join(buttons) + "</span>" if buttons else ""


def return_action(case_id: UUID, holds: Sequence[HoldView]) -> str:
    # A frozen hold that holds nothing has nothing to return (the return desk skips it).
    frozen = [h for h in holds if HoldState(h.state) in RETURNABLE and h.amount_frozen > 0]
    if not frozen:
        return ""
    by_currency: dict[str, int] = {}
    for h in frozen:
        by_currency[h.currency] = by_currency.get(h.currency, 0) + h.amount_frozen
    amounts = ", ".join(f"{money(a)} {c}" for c, a in sorted(by_currency.items()))
    return act_button(
        "return",
        "Order a return…",
        f"Return the frozen funds of case {str(case_id)[:8]} ({len(frozen)} frozen holds, "
        f"{amounts}) to its victims",
        case=case_id,
    )


def withdraw_action(case_id: UUID, holds: Sequence[HoldView]) -> str:
    """Withdraw the case's report: every hold that may be released is."""
    releasable = [h for h in holds if HoldState(h.state) in RELEASABLE]
    if not releasable:
        return ""
    by_state: dict[str, int] = {}
    for h in releasable:
        by_state[h.state] = by_state.get(h.state, 0) + 1
    states = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items()))
    return act_button(
        "withdraw",
        "Withdraw the report…",
        f"Withdraw the report of case {str(case_id)[:8]}: release its {len(releasable)} holds "
        f"({states}) at their institutions",
        case=case_id,
    )


def page(title: str, heading: str, refresh_path: str, panels: str, every_s: int = REFRESH_S) -> str:
    """A console page around `panels`, fetched again from `refresh_path` every `every_s`."""
    return (
        _PAGE.replace("{title}", escape(title))
        .replace("{heading}", heading)
        .replace("{refresh}", escape(refresh_path))
        .replace("{every_ms}", str(every_s * 1000))
        .replace("{every}", str(every_s))
        .replace("{panels}", panels)
    )


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/console/static/console.css">
</head>
<body>
<header><h1>{heading}</h1>
<span id="live" aria-live="off">live: refreshed every {every} s</span>
<form id="key-form" method="post" autocomplete="off">
<span id="key-state">no key: actions need one</span>
<label>Your name <input name="who" id="key-who" required maxlength="64"
  pattern="[A-Za-z0-9._:@\\-]+" placeholder="e.g. duty-officer"></label>
<label>Operator key <input name="key" id="key-value" type="password" required></label>
<button type="submit">Use key</button>
<button type="button" id="key-forget" hidden>Forget key</button>
</form>
</header>
<div id="answer" role="status" aria-live="polite"></div>
<main id="panels" data-refresh="{refresh}" data-every="{every_ms}">{panels}</main>
<dialog id="confirm" aria-labelledby="confirm-title">
<form method="dialog" id="confirm-form">
<h2 id="confirm-title">Confirm</h2>
<p id="confirm-what"></p>
<p id="confirm-input"><label for="confirm-field" id="confirm-label">Value</label><br>
<textarea id="confirm-field" rows="3" cols="60" required maxlength="2000"></textarea></p>
<p class="buttons"><button type="button" id="confirm-cancel">Cancel</button>
<button type="submit" id="confirm-go">Confirm</button></p>
</form>
</dialog>
<script src="/console/static/console.js"></script>
</body>
</html>
"""
