"""Wire models know no use case: importing them must not pull in `stopper.app` or the metrics
(whose import registers Prometheus collectors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import stopper

# Run in a fresh interpreter: this test process has long imported everything.
_PROBE = """
import importlib, json, pkgutil, sys
import stopper.contracts
names = [m.name for m in pkgutil.iter_modules(stopper.contracts.__path__, "stopper.contracts.")]
for name in names:
    importlib.import_module(name)
loaded = sorted(
    m for m in sys.modules
    if m.startswith(("stopper.app", "stopper.api", "stopper.adapters")) or m == "stopper.metrics"
)
prometheus = "prometheus_client" in sys.modules
from prometheus_client import REGISTRY
# What a bare `import prometheus_client` registers: process, platform and gc collectors.
families = sorted(
    f.name for f in REGISTRY.collect() if not f.name.startswith(("process_", "python_"))
)
print(json.dumps({"modules": names, "loaded": loaded, "prometheus": prometheus,
                  "families": families}))
"""


def test_importing_every_contract_loads_no_use_case_and_registers_no_collector() -> None:
    # `-c` puts the working directory first on the path: the same tree as this test's.
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=Path(stopper.__file__).parents[1],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(done.stdout)
    assert "stopper.contracts.cases" in found["modules"]  # the probe saw the package
    assert found["loaded"] == []
    assert not found["prometheus"]
    assert found["families"] == []
