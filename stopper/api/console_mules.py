"""The console's view of the mule-account registry: the known mule accounts (their own page,
`/console/accounts`: the list reads every hold, so the main page's refresh does not pay for it)
and a case's links on its page. Accounts appear masked only; pages link cases by id."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Final

from stopper.api.console_html import case_link, money, section, table
from stopper.app.views import CaseLinksView, FlaggedAccountsView

FLAGGED_SHOWN: Final = 100
# The list groups every hold by account (bench/README.md, "Mule flags"): fetched again less
# often than the main page's panels.
FLAGGED_REFRESH_S: Final = 30


def _time(at: datetime) -> str:
    return escape(at.strftime("%Y-%m-%d %H:%M:%S"))


def flagged_panel(view: FlaggedAccountsView, now: datetime) -> str:
    shown = len(view.accounts)
    title = f"Known mule accounts: named in two or more cases ({view.total}"
    title += f", the {shown} most recently named)" if shown < view.total else ")"
    body = table(
        ["institution", "account", "cases", "first named", "last named", "stopped", "cases"],
        (
            [
                escape(a.institution_code),
                escape(a.account_masked),
                str(a.cases),
                _time(a.first_seen_at),
                _time(a.last_seen_at),
                ", ".join(f"{money(v)} {escape(c)}" for c, v in sorted(a.amount_stopped.items()))
                or "-",
                " ".join(case_link(c.case_id) for c in a.recent_cases)
                + (" …" if a.cases > len(a.recent_cases) else ""),
            ]
            for a in view.accounts
        ),
        "No account is named in more than one case.",
    )
    stamp = (
        f'<p class="stamp">as of <time datetime="{escape(now.isoformat())}">'
        f"{escape(now.isoformat(timespec='seconds'))}</time> · "
        '<a href="/console">back to the console</a></p>'
    )
    return section("flagged", title, body + stamp)


def links_section(links: CaseLinksView) -> str:
    """The cases that share an account with this one, and the ring they belong to."""
    at_least = "" if links.complete else "at least "
    linked = table(
        ["case", "agency", "opened", "shared accounts"],
        (
            [
                case_link(c.case_id),
                escape(c.agency_code),
                _time(c.opened_at),
                ", ".join(
                    f"{escape(a.institution_code)} {escape(a.account_masked)}" for a in c.shared
                ),
            ]
            for c in links.linked
        ),
        "No other case names an account of this case.",
    )
    ring = (
        f'<p class="ring">Ring: {at_least}{links.ring_size} '
        f"case{'s' if links.ring_size != 1 else ''} connected through shared accounts"
        + (" (the search stopped at its bound)" if not links.complete else "")
        + (
            ": " + " ".join(case_link(c) for c in links.ring_case_ids)
            if links.ring_case_ids
            else ""
        )
        + "</p>"
    )
    title = f"Linked cases: sharing an account ({at_least}{links.linked_total})"
    return section("links", title, linked + ring)
