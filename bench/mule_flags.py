"""What the mule-account registry costs intake, its hot path: three ways to know which accounts
two or more cases name, measured on the write that records a batch of cases.

- `none`: the write as it was before the registry (no index by account, nothing read back);
- `indexed`: the index of `derived`, nothing read back (what the index alone costs);
- `derived` (what Stopper does): a partial index of holds by (account, case), and the same
  statement reads, for each account of the batch, how many cases named it before, counted up
  to `CASES_COUNTED` (`stopper.adapters.db.dialects.postgres._record_cases`);
- `counted`: a `case_count` kept on each account row, raised in the same statement by an upsert
  (`ON CONFLICT DO UPDATE`), with the same index (a look-up or a case's links still need the
  cases of an account). Two writers naming one account wait for each other's row lock.

Each variant gets a database of its own on one private PostgreSQL (fsync off, as bench (a)), and
the same realistic reports (`ReportFactory`: victims of a campaign pay into a pool of 400 mule
accounts, so most accounts are hot), recorded through `SqlStore.record_opened_cases` by
`--writers` concurrent writers in batches of `--batch` reports (intake's batch: up to 500
records): holds per second over the run. A shared machine's load swings more than these
variants differ, so the figures to compare are taken afterwards, from the databases in turn,
each probe rolled back: the statement alone for one more batch (`EXPLAIN ANALYZE`'s
execution time, `--probes` batches, the variants interleaved so a swing hits them all), and two
writers recording two batches that name the same hot accounts at the same moment (the time
until both are done: `counted` makes the second wait for the first). Then, on the `derived`
database, before and after a `VACUUM ANALYZE`: the reads the registry makes (a stop request's
count, a look-up, a case's links, the flagged list, the sweeper's mule-first order with every
hold due). `python -m bench.mule_flags`; the results go to `bench/results/mule_flags.json`
(bench/README.md, "Mule flags").
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import TextClause

from stopper.adapters.db import migrate
from stopper.adapters.db.dialects import postgres as pg
from stopper.adapters.db.dialects.base import table_of
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.intake import _case_rows
from stopper.adapters.db.models import HoldRow
from stopper.adapters.db.store import SqlStore
from stopper.app.intake import parse_report, to_opened_case
from stopper.app.mules import MuleRegistry
from stopper.app.ports import OpenedCase
from stopper.config import DatabaseSettings
from stopper.registry import load_registry
from stopper.simulation.reports import ReportFactory
from tests.servers import create_database, drop_database, postgres

RESULTS = Path(__file__).parent / "results" / "mule_flags.json"
VARIANTS = ("none", "indexed", "derived", "counted")
_TAIL = "UNION ALL SELECT 'account'"
_OWN = pg._record_cases  # Stopper's statement, before a variant stands in for it


def _statement(variant: str, dialect: Dialect) -> TextClause:
    """The batch's one statement as the variant writes it (from Stopper's own)."""
    own = str(_OWN(dialect).text)
    head = own[: own.index(_TAIL)]
    if variant == "derived":
        return text(own)
    if variant in ("none", "indexed"):
        return text(head)
    # `counted`: the accounts' upsert raises each one's count by the batch's new cases naming
    # it (and answers the count after: what intake would derive its flags from).
    accounts = own[own.index("new_accounts AS (") : own.index("new_victims AS (")]
    holds = pg._arrays(dialect, table_of(HoldRow), ("account_id", "case_id"), prefix="holds__")
    upsert = (
        "new_accounts AS (INSERT INTO accounts (id, institution_code, account_number, "
        "holder_name, first_seen_at, case_count) SELECT r.*, (SELECT count(*) FROM "
        f"unnest({holds}) AS h(account_id, case_id) WHERE h.account_id = r.id AND h.case_id IN "
        "(SELECT id FROM new_cases)) FROM ("
        + accounts[accounts.index("SELECT * FROM unnest") : accounts.rindex(" ON CONFLICT")]
        + ") r ON CONFLICT (id) DO UPDATE SET case_count = accounts.case_count + "
        "excluded.case_count RETURNING id, case_count), "
    )
    return text(
        head.replace(accounts, upsert)
        + "UNION ALL SELECT 'account', id, case_count FROM new_accounts"
    )


def _batches(reports: int, batch: int, seed: int) -> Iterator[list[OpenedCase]]:
    registry = load_registry()
    factory = ReportFactory(registry, seed=seed)
    start = datetime.now(UTC) - timedelta(days=1)
    cases: list[OpenedCase] = []
    for n in range(reports):
        at = start + timedelta(milliseconds=n)
        doc = factory.report(at)
        parsed = parse_report(json.dumps(doc).encode(), registry)
        cases.append(to_opened_case(parsed, accepted_at=at, opened_at=at, source="kafka"))
        if len(cases) == batch:
            yield cases
            cases = []
    if cases:
        yield cases


async def _timed(call: Callable[[], Awaitable[Any]], runs: int = 5) -> float:
    """The median of `runs` calls, in milliseconds."""
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        took.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(took), 2)


async def _database(server: str, variant: str) -> AsyncEngine:
    url = await create_database(server, f"mules_{variant}")
    engine = create_engine(DatabaseSettings(url=url))
    await migrate.upgrade(engine)
    async with engine.begin() as connection:
        if variant == "none":
            await connection.execute(text("DROP INDEX ix_holds_account_case"))
        if variant == "counted":
            await connection.execute(
                text("ALTER TABLE accounts ADD COLUMN case_count INTEGER NOT NULL DEFAULT 0")
            )
    return engine


def _as(variant: str) -> Callable[[], None]:
    """Make Stopper's intake write as `variant` does; returns the undo."""
    pg._record_cases = functools.cache(functools.partial(_statement, variant))

    def undo() -> None:
        pg._record_cases = _OWN

    return undo


async def _write(
    engine: AsyncEngine, variant: str, batches: list[list[OpenedCase]], writers: int
) -> float:
    """Record `batches` with `writers` writers, as the variant writes; holds per second."""
    store = SqlStore(engine, "bench.stop-requests")
    queue: asyncio.Queue[list[OpenedCase]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def write() -> None:
        while not queue.empty():
            await store.record_opened_cases(queue.get_nowait())

    undo = _as(variant)
    try:
        started = time.perf_counter()
        await asyncio.gather(*(write() for _ in range(writers)))
        elapsed = time.perf_counter() - started
    finally:
        undo()
    return round(sum(len(c.case.holds) for b in batches for c in b) / elapsed, 1)


async def _statement_ms(engine: AsyncEngine, variant: str, batch: list[OpenedCase]) -> float:
    """The statement alone for `batch`, rolled back: `EXPLAIN ANALYZE`'s execution time."""
    rows, _ = _case_rows(batch, None, "bench.case-events")
    async with engine.connect() as connection:
        sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + str(_statement(variant, connection.dialect).text)
        plan = (await connection.execute(text(sql), pg.case_parameters(rows))).scalar()
        await connection.rollback()
    explained: Any = json.loads(plan) if isinstance(plan, str) else plan
    return float(explained[0]["Execution Time"])


async def _pair_ms(engine: AsyncEngine, variant: str, pair: list[list[OpenedCase]]) -> float:
    """Two writers recording two batches at the same moment, each rolled back when done: the
    milliseconds until both are."""
    dialect = engine.dialect
    statement = _statement(variant, dialect)

    async def one(batch: list[OpenedCase]) -> None:
        rows, _ = _case_rows(batch, None, "bench.case-events")
        async with engine.connect() as connection:
            await connection.execute(statement, pg.case_parameters(rows))
            await connection.rollback()

    started = time.perf_counter()
    await asyncio.gather(*(one(batch) for batch in pair))
    return (time.perf_counter() - started) * 1000


async def _reads(store: SqlStore, batches: list[list[OpenedCase]]) -> dict[str, float]:
    """What the registry's reads take on the database just written (every hold `requested`,
    so all of them are due for the sweeper: its worst case, a backlog of everything)."""
    registry = MuleRegistry(store)
    last = batches[-1]
    hold_ids = [h.id for c in last for h in c.case.holds][:500]
    account = last[0].case.holds[0]
    now = datetime.now(UTC)
    return {
        "mule_cases_500_holds": await _timed(lambda: store.mule_cases(hold_ids)),
        "look_up": await _timed(
            lambda: registry.look_up(account.institution_code, account.account_number)
        ),
        "case_links": await _timed(lambda: registry.case_links(last[0].case.id)),
        "flagged_page_of_50": await _timed(lambda: registry.flagged(50)),
        "due_holds_500_mules_first": await _timed(lambda: store.due_holds(now, now, 500)),
    }


async def measure(
    server: str, reports: int, batch: int, writers: int, probes: int, seed: int
) -> dict[str, Any]:
    written = list(_batches(reports + (probes + 2) * batch, batch, seed))
    batches, extra = written[: -(probes + 2)], written[-(probes + 2) :]
    results: dict[str, Any] = {
        "reports": reports,
        "holds": sum(len(c.case.holds) for b in batches for c in b),
        "batch": batch,
        "writers": writers,
        "probes": probes,
    }
    engines = {variant: await _database(server, variant) for variant in VARIANTS}
    try:
        for variant, engine in engines.items():
            results[variant] = {"holds_per_s": await _write(engine, variant, batches, writers)}
            print(variant, results[variant], flush=True)
        took: dict[str, list[float]] = {v: [] for v in VARIANTS}
        pairs: dict[str, list[float]] = {v: [] for v in VARIANTS}
        failed: dict[str, list[str]] = {v: [] for v in VARIANTS}
        for n in range(probes):
            for variant, engine in engines.items():  # interleaved: a swing hits them all
                try:
                    took[variant].append(await _statement_ms(engine, variant, extra[n]))
                    pairs[variant].append(await _pair_ms(engine, variant, extra[-2:]))
                except Exception as e:  # a statement timeout on a loaded machine: kept
                    failed[variant].append(f"{type(e).__name__}: {str(e)[:200]}")
        for variant in VARIANTS:
            results[variant]["statement_ms"] = round(statistics.median(took[variant]), 1)
            results[variant]["two_writers_ms"] = round(statistics.median(pairs[variant]), 1)
            results[variant]["probes_failed"] = failed[variant]
        for variant in VARIANTS[1:]:
            for key in ("statement_ms", "two_writers_ms"):
                ratio = results[variant][key] / results["none"][key]
                results[variant][f"{key}_vs_none"] = round(ratio, 2)
        store = SqlStore(engines["derived"], "bench.stop-requests")
        results["derived"]["reads_ms_fresh"] = await _reads(store, batches)
        async with engines["derived"].connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE holds"))
        results["derived"]["reads_ms_vacuumed"] = await _reads(store, batches)
    finally:
        for engine in engines.values():
            url = engine.url.render_as_string(hide_password=False)
            await engine.dispose()
            await drop_database(url)
    return results


def main(reports: int, batch: int, writers: int, probes: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stopper-mule-flags-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the cluster runs as another user, who must reach its folder
        (root / "pg").mkdir()
        with postgres(root / "pg") as server:
            return asyncio.run(measure(server, reports, batch, writers, probes, seed))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--probes", type=int, default=15)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    found = main(args.reports, args.batch, args.writers, args.probes, args.seed)
    RESULTS.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps(found, indent=2))
