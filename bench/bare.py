"""The bare limit of this machine: a minimal aiokafka consume -> asyncpg write -> aiokafka produce
pipeline with no logic, moving `count` records of about 300 bytes from a pre-filled topic:
each fetched batch is COPYed into PostgreSQL in one transaction, produced to an output topic,
and its offsets committed. Stopper's throughput is compared with this."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy.engine import make_url

from bench.loadgen import BULK_WINDOW, bulk_producer

RECORD = b"x" * 300


async def bare_per_s(bootstrap: str, database_url: str, count: int, partitions: int = 6) -> float:
    tag = uuid.uuid4().hex[:8]
    source, sink = f"bare.in.{tag}", f"bare.out.{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(source, partitions, 1), NewTopic(sink, partitions, 1)])
    finally:
        await admin.close()
    producer = bulk_producer(bootstrap)  # the same shape of input as (a)'s
    await producer.start()
    try:
        pending = []
        for n in range(count):
            pending.append(await producer.send(source, RECORD, key=str(n).encode()))
            if len(pending) >= BULK_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()

    url = make_url(database_url)
    db = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    await db.execute(f"CREATE TABLE bare_{tag} (k text, v bytea, at timestamptz)")
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bare-{tag}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
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
            await consumer.commit(
                {
                    TopicPartition(tp.topic, tp.partition): b[-1].offset + 1
                    for tp, b in fetched.items()
                    if b
                }
            )
            moved += len(records)
        assert started is not None
        return moved / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await out.stop()
        await db.execute(f"DROP TABLE bare_{tag}")
        await db.close()


if __name__ == "__main__":
    print(asyncio.run(bare_per_s(os.environ["BOOTSTRAP"], os.environ["DATABASE_URL"], 20_000)))
