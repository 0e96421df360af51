"""Paths and helpers shared by the Prometheus and Grafana tests."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "stopper.rules.yml"
RULES_TESTS = PROMETHEUS_DIR / "stopper.rules.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "stopper.json"

# What Grafana puts in place of its variables, so an expression can be sent to Prometheus.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$institution": ".*"}


def binary(name: str) -> str:
    """The path of a Prometheus binary; fails (not skips) the test when it is missing."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"`{name}` is not on PATH. `make test` installs it with Debian's prometheus package "
            "(apt-get install prometheus: /usr/bin/prometheus and /usr/bin/promtool).",
            pytrace=False,
        )
    return found


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows are only headings), collapsed rows included."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression on the dashboard: panel targets and template variables."""
    queries = [t["expr"] for p in dashboard_panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def as_promql(grafana_expr: str) -> str:
    """A dashboard expression with Grafana's variables filled in."""
    for variable, value in _GRAFANA_VARIABLES.items():
        grafana_expr = grafana_expr.replace(variable, value)
    return grafana_expr


def label_values_metric(query: str) -> str | None:
    """The metric of a Grafana `label_values(metric, label)` query (not PromQL), else None."""
    found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query.strip())
    return found.group(1) if found else None
