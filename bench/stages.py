"""Where a report's race goes, stage by stage: reports posted over HTTP at `--rate` for
`--seconds` to Stopper (one api, `--workers` workers, simulated institutions answering at once,
on its own PostgreSQL and broker, as `make bench` runs it), then, per first-level hold, from
Stopper's records:

- accepted -> opened: the api handed the report to the broker (`report_accepted_at`) until
  intake took it up (the case's `opened_at`): broker, fetch and the worker's queue;
- opened -> sent: intake took it up until the first attempt was claimed (`sent_at`, one commit
  before the request leaves);
- sent -> confirmed: until the institution's confirmation was recorded (`confirmed_at`);
- and the two races of `make bench` (b), accepted -> sent and accepted -> confirmed.

    python -m bench.stages --rate 200 --seconds 20

Writes bench/results/stages.json. A quick look at one part of (b), not a replacement for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench.loadgen import Race
from bench.run import RESULTS, machine
from bench.stack import http_load, on_servers
from tests.servers import Broker, PostgresServer

STAGES = {
    "accepted_to_opened_ms": ("opened", "accepted"),
    "opened_to_sent_ms": ("sent", "opened"),
    "sent_to_confirmed_ms": ("confirmed", "sent"),
    "accepted_to_sent_ms": ("sent", "accepted"),
    "accepted_to_confirmed_ms": ("confirmed", "accepted"),
}


async def stages(
    args: argparse.Namespace, pg: PostgresServer, broker: Broker, root: Path
) -> dict[str, Any]:
    run = await http_load(
        pg,
        broker,
        root,
        workers=args.workers,
        rate=args.rate,
        seconds=args.seconds,
        seed=3,
        timeout=120.0,
    )
    sent, rows = run.sent, await _times(run.database_url, run.since)
    result: dict[str, Any] = {
        "reports": sent.reports,
        "accepted": sent.accepted,
        "holds": len(rows),
    }
    for name, (later, earlier) in STAGES.items():
        result[name] = Race.percentiles(
            [
                (row[later] - row[earlier]).total_seconds() * 1e3
                for row in rows
                if row[later] is not None and row[earlier] is not None
            ]
        )
    return result


async def _times(database_url: str, since: datetime) -> list[asyncpg.Record]:
    url = make_url(database_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        return list(
            await connection.fetch(
                """
                SELECT h.report_accepted_at AS accepted, c.opened_at AS opened,
                       h.sent_at AS sent, h.confirmed_at AS confirmed
                FROM holds h JOIN cases c ON c.id = h.case_id
                WHERE h.layer = 1 AND h.reapplications = 0 AND h.report_accepted_at >= $1
                """,
                since,
            )
        )
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="reports per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    started = datetime.now(UTC)
    result = on_servers("stopper-stages-", lambda pg, broker, root: stages(args, pg, broker, root))
    document = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {"rate": args.rate, "seconds": args.seconds, "workers": args.workers},
        **result,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stages.json").write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
