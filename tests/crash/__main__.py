"""`make soak`: the crash harness for longer, printing the counts.

python -m tests.crash [--minutes 10] [--rate 6] [--kills-per-minute 6]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.crash.harness import Harness, Scenario
from tests.servers import postgres_server, tansu_broker


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=6.0, help="reports per second")
    parser.add_argument("--kills-per-minute", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    scenario = Scenario(
        load_s=args.minutes * 60,
        rate_per_s=args.rate,
        kills=int(args.minutes * args.kills_per_minute),
        settle_s=300.0,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="stopper-soak-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        (root / "pg").mkdir()
        with postgres_server(root / "pg") as pg, tansu_broker(root) as broker:
            outcome = asyncio.run(Harness(scenario, root, pg, broker).run())
    print("\n".join(outcome.lines()))
    clean = (
        not outcome.lost
        and outcome.stuck == 0
        and outcome.double_stops == 0
        and not outcome.audit_gaps
        and outcome.accepted == outcome.reports_sent
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
