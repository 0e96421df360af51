"""Crash safety, bounded for the suite: Stopper's processes killed again and again under load,
the broker paused and PostgreSQL restarted; nothing lost, nothing doubled, no gap in the audit
trail, and, under the realistic load, every hold as its institution's ledger has it within a
minute of the last fault. `make soak` runs the realistic one for longer."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash.harness import REALISTIC_UNDER_FAULTS, Harness, Scenario
from tests.servers import Broker, PostgresServer, postgres_server, tansu_broker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_servers() -> Iterator[tuple[PostgresServer, Broker, Path]]:
    """Servers of this test's own: it pauses and restarts them."""
    with tempfile.TemporaryDirectory(prefix="stopper-crash-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        (root / "pg").mkdir()
        with postgres_server(root / "pg") as pg, tansu_broker(root) as broker:
            yield pg, broker, root


async def test_killed_paused_and_restarted_stopper_loses_nothing_and_doubles_nothing(
    own_servers: tuple[PostgresServer, Broker, Path],
) -> None:
    pg, broker, root = own_servers
    outcome = await Harness(Scenario(), root, pg, broker).run()
    print("\n" + "\n".join(outcome.lines()))
    assert outcome.accepted == outcome.reports_sent, "every report was taken in the end"
    assert outcome.lost == [], "every accepted report has its case"
    assert outcome.stuck == 0, "every hold reached a state"
    assert outcome.double_stops == 0, "no institution executed a stop twice"
    assert outcome.audit_gaps == [], "every hold's audit trail is gapless"
    assert sum(d.startswith("SIGKILL") for d in outcome.disturbances) == Scenario().kills
    assert outcome.holds_by_state.get("stopped", 0) > 0
    assert set(outcome.holds_by_state) <= {"stopped", "not_found", "rejected", "failed"}


async def test_three_workers_share_the_load_and_two_finish_what_a_killed_one_left(
    own_servers: tuple[PostgresServer, Broker, Path],
) -> None:
    """Several instances: three workers in the same consumer groups; one is killed for good
    mid-load, and the other two take over its partitions and its leased holds."""
    pg, broker, root = own_servers
    scenario = Scenario(
        load_s=30.0,
        rate_per_s=4.0,
        kills=1,
        broker_pause_s=0.0,
        restart_postgres=False,
        workers=3,
        kill_workers_only=True,
        revive=False,
        seed=12,
    )
    outcome = await Harness(scenario, root, pg, broker).run()
    print("\n" + "\n".join(outcome.lines()))
    [killed] = outcome.disturbances
    assert killed.startswith("SIGKILL worker-")
    assert outcome.accepted == outcome.reports_sent and outcome.lost == []
    assert outcome.stuck == 0 and outcome.double_stops == 0 and outcome.audit_gaps == []
    assert outcome.stops_executed == outcome.holds_by_state.get("stopped", 0)


async def test_under_realistic_load_and_faults_every_hold_matches_its_institutions_ledger(
    own_servers: tuple[PostgresServer, Broker, Path],
) -> None:
    """The realistic profile at 20 reports/s for two minutes, on the registry as deployed (its
    timeouts and callback waits), the api and the workers SIGKILLed, the broker paused for 20 s
    and PostgreSQL restarted; within 60 s of the last fault (and of the end of the load) every
    hold matches what its institution did. About 2.5 minutes when it passes, at most about 3.5."""
    pg, broker, root = own_servers
    scenario = REALISTIC_UNDER_FAULTS
    outcome = await Harness(scenario, root, pg, broker).run()
    print("\n" + "\n".join(outcome.lines()))
    ledger = outcome.ledger
    assert ledger is not None
    killed = {d.removeprefix("SIGKILL ") for d in outcome.disturbances if d.startswith("SIGKILL")}
    assert {"api", "worker-1", "worker-2"} <= killed, "the api and every worker were killed"
    assert outcome.accepted == outcome.reports_sent, "every report was taken in the end"
    assert outcome.lost == [], "every accepted report has its case"
    assert outcome.double_stops == 0, "no institution executed a stop twice"
    assert ledger.executed_twice == [], "no (hold, generation) stopped twice"
    assert ledger.unknown_to_stopper == [], "every stop an institution executed has its hold"
    assert ledger.failed_but_stopped == [], "no hold failed whose funds are stopped"
    assert ledger.divergent == 0, "every hold matches its institution's ledger"
    assert ledger.unsettled == 0, "every hold reached its institution in time"
    assert outcome.matched_after_s is not None, "all matched within the time allowed"
    assert outcome.audit_gaps == [], "every hold's audit trail is gapless"
