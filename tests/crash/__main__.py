"""`make soak`: the crash harness for longer, printing the counts.

python -m tests.crash [--scenario realistic|steady] [--minutes 10] [--rate 20]
                      [--kills-per-minute 2] [--seed 11]

realistic (the default): the scenario of `test_crash.py`'s realistic test, for longer (the
registry as deployed, 20 reports/s, the api and the workers killed, the broker paused for 20 s,
PostgreSQL restarted; then every hold must match its institution's ledger within 60 s).
steady: the suite's first scenario, for longer (scaled-down timeouts, 6 reports/s, 6 kills a
minute, the broker paused for 30 s, PostgreSQL restarted; then every hold must have an answer).
Exit status 0 when nothing was lost, doubled or left out of step.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
from pathlib import Path

from tests.crash.harness import REALISTIC_UNDER_FAULTS, Harness, Scenario
from tests.servers import postgres_server, tansu_broker

SCENARIOS = {
    "realistic": dataclasses.replace(REALISTIC_UNDER_FAULTS, seed=11),
    "steady": Scenario(rate_per_s=6.0, settle_s=300.0, seed=11),
}
KILLS_PER_MINUTE = {"realistic": 2.0, "steady": 6.0}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="realistic")
    parser.add_argument("--minutes", type=float, default=10.0, help="of load")
    parser.add_argument("--rate", type=float, default=None, help="reports per second")
    parser.add_argument("--kills-per-minute", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    base = SCENARIOS[args.scenario]
    kills_per_minute = args.kills_per_minute or KILLS_PER_MINUTE[args.scenario]
    scenario = dataclasses.replace(
        base,
        load_s=args.minutes * 60,
        rate_per_s=args.rate or base.rate_per_s,
        kills=int(args.minutes * kills_per_minute),
        seed=base.seed if args.seed is None else args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="stopper-soak-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        (root / "pg").mkdir()
        with postgres_server(root / "pg") as pg, tansu_broker(root) as broker:
            outcome = asyncio.run(Harness(scenario, root, pg, broker).run())
    print("\n".join(outcome.lines()))
    return 0 if outcome.clean else 1


if __name__ == "__main__":
    sys.exit(main())
