"""The console's summary band: the holds by state, the last hour (reports, holds, the p95 of
report -> stop confirmed, a chart of each stop's latency), the amount stopped today and the
holds needing a person. Everything from the store (`CaseQueries.activity`), so every API
instance shows the same band, whichever processes confirmed the stops."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape

from stopper.api.console_html import money
from stopper.app.handling import NEEDS_A_PERSON
from stopper.app.queries import CaseQueries
from stopper.app.views import ActivityView

_HOUR = timedelta(hours=1)
_W, _H, _PAD = 360, 90, 24


async def summary_band(queries: CaseQueries, by_state: dict[str, int], now: datetime) -> str:
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    activity = await queries.activity(
        hour_since=now - _HOUR,
        day_since=day_start,
        needs_a_person=sorted(s.value for s in NEEDS_A_PERSON),
    )
    chips = "".join(
        f'<span class="chip state-{escape(s)}" data-state="{escape(s)}">'
        f"{escape(s)} <b>{count}</b></span>"
        for s, count in sorted(by_state.items())
    )
    return (
        '<section id="summary"><h2>Summary</h2><div class="band">'
        + _figures(activity)
        + latency_chart(activity.latencies, now)
        + f'</div><h2>Holds by state</h2><div class="chips">{chips or "none yet"}</div>'
        f'<p class="stamp">as of <time datetime="{escape(now.isoformat())}">'
        f"{escape(now.isoformat(timespec='seconds'))}</time></p></section>"
    )


def p95(values: Sequence[float]) -> float | None:
    """Nearest rank: the smallest value at or above 95 % of them."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[max(0, math.ceil(0.95 * len(ranked)) - 1)]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _figures(a: ActivityView) -> str:
    stopped = ", ".join(f"{money(v)} {escape(c)}" for c, v in sorted(a.stopped_today.items()))
    figures = [
        ("reports", "Reports, last hour", str(a.reports), False),
        ("holds", "Holds, last hour", str(a.holds), False),
        ("stopped-today", "Stopped today (UTC)", stopped or "0.00", False),
        (
            "p95",
            "p95 report → stop confirmed, last hour",
            _duration(p95([s for _, s in a.latencies])),
            False,
        ),
        ("needing", "Holds needing a person", str(a.needing_a_person), a.needing_a_person > 0),
    ]
    return "".join(
        f'<div class="figure{" alarm" if alarm else ""}" id="figure-{key}">'
        f"<span>{escape(label)}</span><b>{value}</b></div>"
        for key, label, value, alarm in figures
    )


def latency_chart(points: Sequence[tuple[datetime, float]], now: datetime) -> str:
    """Each stop confirmed in the last hour as a dot (time across, latency up), the p95 as a
    dashed line; the figures are in the band beside it, the chart is the shape."""
    top = max((s for _, s in points), default=1.0) or 1.0
    inner_w, inner_h = _W - 2 * _PAD, _H - 2 * _PAD + 10

    def x(at: datetime) -> float:
        return _PAD + inner_w * (1 - min(1.0, max(0.0, (now - at) / _HOUR)))

    def y(seconds: float) -> float:
        return _H - _PAD + 6 - inner_h * seconds / top

    dots = "".join(
        f'<circle class="dot" cx="{x(at):.1f}" cy="{y(s):.1f}" r="2.5">'
        f"<title>{escape(at.strftime('%H:%M:%S'))}: {_duration(s)}</title></circle>"
        for at, s in points
    )
    mark = p95([s for _, s in points])
    line = (
        f'<line class="p95" x1="{_PAD}" x2="{_W - _PAD}" y1="{y(mark):.1f}" y2="{y(mark):.1f}"/>'
        if mark is not None
        else ""
    )
    base = _H - _PAD + 6
    label = (
        f"Report to stop confirmed over the last hour: {len(points)} stops, "
        f"p95 {_duration(mark)}, slowest {_duration(top if points else None)}"
    )
    return (
        f'<figure class="chart" id="latency-chart"><svg role="img" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<line class="axis" x1="{_PAD}" x2="{_W - _PAD}" y1="{base}" y2="{base}"/>'
        f'<line class="axis" x1="{_PAD}" x2="{_PAD}" y1="{_PAD - 14}" y2="{base}"/>'
        f'<text x="{_PAD}" y="{_H - 4}">-60 min</text>'
        f'<text x="{_W - _PAD - 20}" y="{_H - 4}">now</text>'
        f'<text x="{_PAD + 4}" y="{_PAD - 6}">{escape(_duration(top if points else None))}</text>'
        f"{line}{dots}</svg><figcaption>report → stop confirmed, last hour</figcaption></figure>"
    )
