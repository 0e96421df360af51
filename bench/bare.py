"""The bare limits of this machine: minimal aiokafka / asyncpg / aiohttp pipelines with no logic,
that Stopper is compared with.

(c) `bare_per_s`: consume -> asyncpg COPY -> produce -> commit offsets, moving `count` records
    of about 300 bytes from a pre-filled topic: each fetched batch is COPYed into PostgreSQL in
    one transaction, produced to an output topic, and its offsets committed.
(c') `bare_same_io_per_s`: the same I/O per record as Stopper spends per hold, with no logic:
    consume a batch, insert its rows (one statement over arrays, committed before any request
    leaves, as intake commits its holds), one HTTP POST per record to a minimal server in its
    own process (`bench/instant_institution.py`) that answers at once, all of the batch's POSTs
    at once, the rows updated with the answers and committed, the records produced to an
    output topic, offsets committed. From a pre-filled topic, like (c), on uvloop like Stopper.
(issue #20) `bare_latency_ms`: the hop of (c) at a steady rate (records produced one at a
    time, as the api produces reports), each record's time from just before its produce to its
    arrival on the output topic: two broker traversals and one commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import asyncpg
import uvloop
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy.engine import make_url

from bench.loadgen import BULK_WINDOW, bulk_producer
from tests.servers import free_port

RECORD = b"x" * 300
# Stopper's defaults for its consumers: a fetch waits at most 5 ms, batches of up to 500.
FETCH_MAX_WAIT_MS = 5
MAX_BATCH = 500


async def _topics(bootstrap: str, partitions: int, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def _prefill(bootstrap: str, topic: str, count: int) -> None:
    """`count` records onto `topic`, in bulk: the same shape of input as (a)'s."""
    producer = bulk_producer(bootstrap)
    await producer.start()
    try:
        pending = []
        for n in range(count):
            pending.append(await producer.send(topic, RECORD, key=str(n).encode()))
            if len(pending) >= BULK_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _connect(database_url: str) -> asyncpg.Connection:
    url = make_url(database_url)
    return await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )


def _offsets(fetched: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, int]:
    return {
        TopicPartition(tp.topic, tp.partition): batch[-1].offset + 1
        for tp, batch in fetched.items()
        if batch
    }


async def bare_per_s(bootstrap: str, database_url: str, count: int, partitions: int = 6) -> float:
    """(c): records per second through consume -> COPY -> produce -> commit."""
    tag = uuid.uuid4().hex[:8]
    source, sink = f"bare.in.{tag}", f"bare.out.{tag}"
    await _topics(bootstrap, partitions, source, sink)
    await _prefill(bootstrap, source, count)

    db = await _connect(database_url)
    await db.execute(f"CREATE TABLE bare_{tag} (k text, v bytea, at timestamptz)")
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bare-{tag}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_poll_records=1000,
    )
    out = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await consumer.start()
    await out.start()
    moved = 0
    started: float | None = None
    try:
        while moved < count:
            fetched = await consumer.getmany(timeout_ms=200, max_records=1000)
            records = [r for batch in fetched.values() for r in batch]
            if not records:
                continue
            if started is None:
                started = time.perf_counter()
            rows = [(r.key.decode() if r.key else "", r.value, None) for r in records]
            async with db.transaction():
                await db.copy_records_to_table(f"bare_{tag}", records=rows)
            sends = [await out.send(sink, r.value, key=r.key) for r in records]
            await asyncio.gather(*sends)
            await consumer.commit(_offsets(fetched))
            moved += len(records)
        assert started is not None
        return moved / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await out.stop()
        await db.execute(f"DROP TABLE bare_{tag}")
        await db.close()


@contextlib.contextmanager
def instant_institution() -> Iterator[str]:
    """`bench/instant_institution.py` in a process of its own; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.instant_institution", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


async def _until_healthy(client: aiohttp.ClientSession, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with client.get("/healthz") as answer:
                if answer.status == 200:
                    return
        if time.monotonic() > deadline:
            raise RuntimeError("the instant institution did not start")
        await asyncio.sleep(0.1)


async def bare_same_io_per_s(
    bootstrap: str, database_url: str, count: int, processes: int = 2, partitions: int = 6
) -> float:
    """(c'): records per second through consume -> insert, commit -> one POST per record ->
    update, commit -> produce -> commit offsets, in `processes` processes of one consumer group
    (as many as (a)'s workers: Stopper's throughput is two processes' on two cores), each on
    uvloop as Stopper's processes are. The topic is filled once every process has its
    partitions; the time runs from the first batch fetched to the last one committed."""
    tag = uuid.uuid4().hex[:8]
    source, sink, table = f"bare-io.in.{tag}", f"bare-io.out.{tag}", f"bare_io_{tag}"
    await _topics(bootstrap, partitions, source, sink)
    db = await _connect(database_url)
    try:
        await db.execute(
            f"CREATE TABLE {table} (k text PRIMARY KEY, v bytea, status text,"
            " answered_at timestamptz)"
        )
        with instant_institution() as url:
            processes_ = [
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "bench.bare", "same-io-worker"),
                    *("--bootstrap", bootstrap, "--database-url", database_url),
                    *("--url", url, "--source", source, "--sink", sink),
                    *("--group", f"bare-io-{tag}", "--table", table),
                    stdout=asyncio.subprocess.PIPE,
                )
                for _ in range(processes)
            ]
            workers = _Workers(processes_)
            try:
                await workers.wait(lambda: workers.split(partitions), "had their partitions")
                await _prefill(bootstrap, source, count)
                await workers.wait(workers.finished, "finished", timeout=None)
            finally:
                await workers.stop()
        done = [w for w in workers.final if w is not None]
        moved = sum(int(d["moved"]) for d in done)
        if moved != count:
            raise RuntimeError(f"the bare pipeline moved {moved} of {count} records")
        span = max(float(d["last"]) for d in done) - min(
            float(d["first"]) for d in done if d["moved"]
        )
        return moved / span
    finally:
        await db.execute(f"DROP TABLE IF EXISTS {table}")
        await db.close()


class _Workers:
    """The processes of (c') and what each has reported (one JSON object a line)."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes
        self.assigned: list[set[int]] = [set() for _ in processes]
        self.final: list[dict[str, Any] | None] = [None for _ in processes]
        self._changed = asyncio.Event()
        self._readers = [asyncio.create_task(self._read(n)) for n in range(len(processes))]

    async def _read(self, n: int) -> None:
        stdout = self.processes[n].stdout
        assert stdout is not None
        async for line in stdout:
            report = json.loads(line)
            if "assigned" in report:
                self.assigned[n] = set(report["assigned"])
            else:
                self.final[n] = report
            self._changed.set()
        self._changed.set()  # ended

    def split(self, partitions: int) -> bool:
        """Each worker's newest assignment is its share of every partition, none twice."""
        every = set().union(*self.assigned)
        return all(self.assigned) and sum(map(len, self.assigned)) == len(every) == partitions

    def finished(self) -> bool:
        return all(f is not None for f in self.final)

    async def wait(
        self, condition: Callable[[], bool], what: str, timeout: float | None = 60.0
    ) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not condition():
            if any(r.done() and f is None for r, f in zip(self._readers, self.final, strict=True)):
                raise RuntimeError("a worker of the bare pipeline ended without its report")
            self._changed.clear()
            left = None if deadline is None else deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                raise RuntimeError(f"the bare pipeline's workers never {what}") from None

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.terminate()
            await process.wait()
        for reader in self._readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


# A worker that fetched nothing for this long after it began has drained its partitions.
_IDLE_S = 2.0


async def _same_io_worker(args: argparse.Namespace) -> None:
    """One process of (c'): reports each new assignment (`{"assigned": [...]}`), moves records
    until its partitions stay empty for `_IDLE_S`, then reports `{"moved", "first", "last"}`."""
    table = args.table
    db = await _connect(args.database_url)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_poll_records=MAX_BATCH,
    )
    out = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=1)
    # Stopper's worker keeps up to `concurrency` connections per institution (8 per bank, 4 per
    # payment institution: about 240 over the 44 institutions).
    client = aiohttp.ClientSession(
        base_url=args.url,
        connector=aiohttp.TCPConnector(limit=240),
        timeout=aiohttp.ClientTimeout(total=10),
    )

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: object) -> None:
            pass

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            _report({"assigned": sorted(tp.partition for tp in assigned)})

    async def post(value: bytes) -> str:
        async with client.post(
            "/stops", data=value, headers={"content-type": "application/json"}
        ) as answer:
            return str(json.loads(await answer.read())["status"])

    consumer.subscribe([args.source], listener=Listener())
    await consumer.start()
    await out.start()
    moved, first, last, idle_since = 0, 0.0, 0.0, None
    try:
        await _until_healthy(client)
        while True:
            fetched = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            records = [r for batch in fetched.values() for r in batch]
            if not records:
                now = time.monotonic()
                idle_since = idle_since or now
                if moved and now - idle_since >= _IDLE_S:
                    break
                continue
            idle_since = None
            if not moved:
                first = time.monotonic()
            keys = [r.key.decode() if r.key else "" for r in records]
            await db.execute(
                f"INSERT INTO {table} (k, v) SELECT * FROM unnest($1::text[], $2::bytea[])",
                keys,
                [r.value for r in records],
            )
            statuses = await asyncio.gather(*(post(r.value) for r in records))
            await db.execute(
                f"UPDATE {table} t SET status = u.s, answered_at = now()"
                " FROM unnest($1::text[], $2::text[]) AS u(k, s) WHERE t.k = u.k",
                keys,
                statuses,
            )
            sends = [await out.send(args.sink, r.value, key=r.key) for r in records]
            await asyncio.gather(*sends)
            await consumer.commit(_offsets(fetched))
            moved += len(records)
            last = time.monotonic()
    finally:
        await client.close()
        await consumer.stop()
        await out.stop()
        await db.close()
    _report({"moved": moved, "first": first, "last": last})


def _report(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


_STAMP = struct.Struct("!cd")  # b"m" (measured) or b"w" (warm-up), then perf_counter()


async def bare_latency_ms(
    bootstrap: str, database_url: str, rate: float, seconds: float, partitions: int = 6
) -> list[float]:
    """(issue #20): the hop of (c) at `rate` records per second for `seconds`; each record's
    milliseconds from just before its produce to its arrival on the output topic."""
    tag = uuid.uuid4().hex[:8]
    source, sink = f"bare-lat.in.{tag}", f"bare-lat.out.{tag}"
    await _topics(bootstrap, partitions, source, sink)
    db = await _connect(database_url)
    await db.execute(f"CREATE TABLE bare_lat_{tag} (k text, v bytea, at timestamptz)")
    # As the api produces a report: acks from every replica, no linger.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    arrivals = AIOKafkaConsumer(
        sink,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await producer.start()
    await arrivals.start()
    count = int(rate * seconds)
    latencies: list[float] = []
    warmed, arrived_all = asyncio.Event(), asyncio.Event()

    async def sink_loop() -> None:
        async for record in _records(arrivals):
            arrived = time.perf_counter()
            kind, stamp = _STAMP.unpack_from(record.value)
            if kind == b"m":
                latencies.append((arrived - stamp) * 1e3)
                if len(latencies) >= count:
                    arrived_all.set()
            else:
                warmed.set()

    def value(kind: bytes) -> bytes:
        stamped = _STAMP.pack(kind, time.perf_counter())
        return stamped + RECORD[len(stamped) :]

    stopping = asyncio.Event()
    hop = asyncio.create_task(_hop(bootstrap, db, source, sink, tag, stopping))
    watch = asyncio.create_task(sink_loop())
    try:
        # The hop's consumer joins its group (about 5 s on this broker) before the clock starts.
        deadline = time.monotonic() + 60
        while not warmed.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError("the bare hop did not carry a warm-up record in 60 s")
            await producer.send(source, value(b"w"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(warmed.wait(), 0.5)
        started = time.perf_counter()
        pending = []
        for n in range(count):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            pending.append(await producer.send(source, value(b"m"), key=str(n).encode()))
        await asyncio.gather(*pending)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived_all.wait(), 30)
        if not arrived_all.is_set():
            raise RuntimeError(f"{len(latencies)} of {count} records arrived in 30 s")
        return latencies
    finally:
        stopping.set()  # between batches: a commit cut short would be left behind
        await hop
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await arrivals.stop()
        await producer.stop()
        await db.execute(f"DROP TABLE bare_lat_{tag}")
        await db.close()


async def _records(consumer: AIOKafkaConsumer) -> AsyncIterator[ConsumerRecord]:
    while True:
        fetched = await consumer.getmany(timeout_ms=200)
        for batch in fetched.values():
            for record in batch:
                yield record


async def _hop(
    bootstrap: str,
    db: asyncpg.Connection,
    source: str,
    sink: str,
    tag: str,
    stopping: asyncio.Event,
) -> None:
    """The hop of (c), batch by batch as records come, until `stopping`: consume, COPY,
    produce, commit."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bare-lat-{tag}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_poll_records=MAX_BATCH,
    )
    out = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await out.start()
    try:
        while not stopping.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            records = [r for batch in fetched.values() for r in batch]
            if not records:
                continue
            rows = [(r.key.decode() if r.key else "", r.value, None) for r in records]
            async with db.transaction():
                await db.copy_records_to_table(f"bare_lat_{tag}", records=rows)
            sends = [await out.send(sink, r.value, key=r.key) for r in records]
            await asyncio.gather(*sends)
            await consumer.commit(_offsets(fetched))
    finally:
        await consumer.stop()
        await out.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    commands = parser.add_subparsers(required=True)
    worker = commands.add_parser("same-io-worker", help="one process of (c'), for bench.run")
    for name in ("bootstrap", "database-url", "url", "source", "sink", "group", "table"):
        worker.add_argument(f"--{name}", required=True)
    uvloop.run(_same_io_worker(parser.parse_args()))


if __name__ == "__main__":
    main()
