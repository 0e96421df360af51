"""The load generator: realistic fraud reports, over HTTP or straight onto the Kafka topic, at a
set rate or as fast as they go; and what Stopper's own records say about each report's race.

    python -m bench.loadgen --via http --url http://127.0.0.1:8080 --rate 200 --seconds 30
    python -m bench.loadgen --via kafka --bootstrap 127.0.0.1:9092 --reports 5000
    python -m bench.loadgen --measure postgresql+asyncpg://...   # latencies from the records

Latencies come from the holds table: `report_accepted_at` (HTTP: when the api handed the report
to the broker; Kafka: the record's timestamp), `sent_at` (the claim of the first attempt, one
commit before the request leaves) and `confirmed_at` (the institution confirmed the stop),
first-level holds only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaProducer
from sqlalchemy.engine import make_url

from stopper.registry import load_registry
from stopper.simulation.reports import ReportFactory

_JSON = {"content-type": "application/json"}


@dataclass
class Sent:
    reports: int = 0
    accepted: int = 0
    refused: int = 0
    seconds: float = 0.0
    holds: int = 0  # first-level holds the accepted reports call for


def holds_called_for(report: dict[str, Any]) -> int:
    """First-level holds a report calls for: one per distinct receiving account."""
    return len(
        {
            (t["receiving_account"]["institution_code"], t["receiving_account"]["account_number"])
            for t in report["transfers"]
        }
    )


async def send_http(url: str, rate: float, seconds: float, seed: int = 1) -> Sent:
    """Post reports at `rate` per second for `seconds` (each on its own task, so a slow answer
    does not slow the rate down). aiohttp: the load generator shares the machine with what it
    measures, and httpx cost it about half a core at 200 reports/s."""
    factory = ReportFactory(load_registry(), seed=seed)
    sent = Sent()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout, connector=connector) as client:

        async def post(report: dict[str, Any]) -> None:
            try:
                async with client.post(
                    "/v1/reports", data=json.dumps(report).encode(), headers=_JSON
                ) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError):
                sent.refused += 1
                return
            if status in (200, 202):
                sent.accepted += 1
                sent.holds += holds_called_for(report)
            else:
                sent.refused += 1

        started = time.perf_counter()
        count = int(rate * seconds)
        tasks = []
        for n in range(count):
            due = started + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(post(factory.report(datetime.now(UTC)))))
            sent.reports += 1
        await asyncio.gather(*tasks)
        sent.seconds = time.perf_counter() - started
    return sent


# Records handed to `bulk_producer` before waiting for them: enough for each of six partitions
# to fill a batch.
BULK_WINDOW = 6_000


def bulk_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer that feeds a topic in bulk, as an intake system replaying a day's reports
    would: batches of up to 512 KiB, filled for up to 20 ms.

    The batch size matters on the test broker: Tansu's memory storage lists every stored batch
    of a partition on each fetch, and a fetch returns a few batches, so a deep backlog of small
    batches drains in quadratic time (48,000 one-record batches: 15.9 s and 14.4 s of broker
    CPU to read back; in 16 KiB or 512 KiB batches: 1.2 s and 0.1 s). Fed 500 records at a
    time while Stopper ran, (a)'s backlog left the broker at 100 % CPU after a minute and every
    consumer starved (bench/README.md)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks="all"
    )


async def send_kafka(bootstrap: str, topic: str, reports: int, seed: int = 1) -> Sent:
    """Produce `reports` onto the reports topic as fast as the broker takes them."""
    factory = ReportFactory(load_registry(), seed=seed)
    producer = bulk_producer(bootstrap)
    await producer.start()
    sent = Sent()
    started = time.perf_counter()
    try:
        pending = []
        for _ in range(reports):
            report = factory.report(datetime.now(UTC))
            pending.append(
                await producer.send(
                    topic, json.dumps(report).encode(), key=report["report_id"].encode()
                )
            )
            sent.reports += 1
            sent.holds += holds_called_for(report)
            if len(pending) >= BULK_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        sent.accepted = sent.reports
    finally:
        await producer.stop()
    sent.seconds = time.perf_counter() - started
    return sent


@dataclass
class Race:
    holds: int
    requested_ms: list[float]
    confirmed_ms: list[float]
    first_accepted: datetime | None
    last_settled: datetime | None
    states: dict[str, int] = field(default_factory=dict)  # holds by state

    @staticmethod
    def percentiles(values: list[float]) -> dict[str, float]:
        if len(values) < 2:
            only = round(values[0], 1) if values else 0.0
            return {"p50": only, "p95": only, "p99": only}
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return {"p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "p99": round(cuts[98], 1)}


async def measure(database_url: str, since: datetime | None = None) -> Race:
    """Each first-level hold's race, from the records Stopper keeps."""
    url = make_url(database_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        rows = await connection.fetch(
            """
            SELECT report_accepted_at, sent_at, confirmed_at, updated_at, state
            FROM holds
            WHERE layer = 1 AND reapplications = 0
              AND ($1::timestamptz IS NULL OR report_accepted_at >= $1)
            """,
            since,
        )
    finally:
        await connection.close()

    def ms(later: datetime | None, earlier: datetime | None) -> float | None:
        return None if later is None or earlier is None else (later - earlier).total_seconds() * 1e3

    requested = [v for r in rows if (v := ms(r["sent_at"], r["report_accepted_at"])) is not None]
    confirmed = [
        v for r in rows if (v := ms(r["confirmed_at"], r["report_accepted_at"])) is not None
    ]
    settled = [r["updated_at"] for r in rows if r["state"] not in ("requested", "sent")]
    accepted = [r["report_accepted_at"] for r in rows if r["report_accepted_at"] is not None]
    return Race(
        holds=len(rows),
        requested_ms=requested,
        confirmed_ms=confirmed,
        first_accepted=min(accepted) if accepted else None,
        last_settled=max(settled) if settled else None,
        states=dict(Counter(r["state"] for r in rows)),
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--via", choices=["http", "kafka"], default="http")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="stopper.reports")
    parser.add_argument("--rate", type=float, default=200.0, help="reports per second (http)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--reports", type=int, default=5000, help="how many (kafka)")
    parser.add_argument("--measure", metavar="DATABASE_URL", help="print the races and stop")
    args = parser.parse_args()
    if args.measure:
        race = asyncio.run(measure(args.measure))
        print(
            json.dumps(
                {
                    "holds": race.holds,
                    "report_to_request_ms": Race.percentiles(race.requested_ms),
                    "report_to_stopped_ms": Race.percentiles(race.confirmed_ms),
                },
                indent=2,
            )
        )
        return 0
    if args.via == "http":
        sent = asyncio.run(send_http(args.url, args.rate, args.seconds))
    else:
        sent = asyncio.run(send_kafka(args.bootstrap, args.topic, args.reports))
    print(json.dumps(vars(sent)))
    return 0 if sent.refused == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
