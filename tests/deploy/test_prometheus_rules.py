"""The alert rules, the Prometheus config and the Grafana dashboard: valid, tested, and naming
only metrics Stopper really exports (a renamed metric breaks these tests)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import stopper.metrics  # noqa: F401  (registers Stopper's metrics)
from tests.deploy.tools import (
    DASHBOARD,
    GRAFANA_DIR,
    PROMETHEUS_CONFIG,
    REPO,
    RULES,
    RULES_TESTS,
    as_promql,
    binary,
    dashboard_panels,
    dashboard_queries,
    label_values_metric,
    load_dashboard,
    load_yaml,
)

METRIC_NAME = re.compile(r"\bstopper_[a-z0-9_]+")


def promtool(*args: str | Path) -> None:
    result = subprocess.run(
        [binary("promtool"), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(map(str, args))} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def relative(path: Path) -> Path:
    return path.relative_to(REPO)


def test_the_rules_file_is_valid() -> None:
    promtool("check", "rules", relative(RULES))


def test_the_prometheus_config_is_valid() -> None:
    # Also checks the rule files it names, relative to the config's folder.
    promtool("check", "config", relative(PROMETHEUS_CONFIG))


def test_the_rule_unit_tests_pass() -> None:
    promtool("test", "rules", relative(RULES_TESTS))


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(RULES)["groups"]
    assert [g["name"] for g in groups] == ["stopper"]
    rules: list[dict[str, Any]] = groups[0]["rules"]
    return rules


def test_every_alert_says_how_urgent_it_is_and_what_to_do() -> None:
    rules = alert_rules()
    assert len(rules) >= 10
    for rule in rules:
        name = rule.get("alert")
        assert name and name.startswith("Stopper"), rule
        assert "for" in rule, f"{name}: no `for:`"
        assert rule["labels"] == {"severity": rule["labels"]["severity"]}, name
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, name
        assert all(text.strip() for text in annotations.values()), name


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in load_yaml(RULES_TESTS)["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
            for expected in case.get("exp_alerts") or []:
                assert expected["exp_annotations"]["summary"], (group["name"], case)

    # promtool passes a test of an alert that does not exist as long as it expects nothing.
    unknown = (firing | quiet) - alerts
    assert not unknown, f"tests name alerts the rules lack: {sorted(unknown)}"
    assert alerts <= firing, f"no test where these fire: {sorted(alerts - firing)}"
    assert alerts <= quiet, f"no test where these stay quiet: {sorted(alerts - quiet)}"


def test_prometheus_scrapes_every_stopper_process_and_loads_the_rules() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["stopper.rules.yml"]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "stopper"  # the alerts select up{job="stopper"}
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # Every api and worker container of the compose file, however many are running.
    [dns] = job["dns_sd_configs"]
    assert (sorted(dns["names"]), dns["type"], dns["port"]) == (["api", "worker"], "A", 8080)


def test_grafana_provisioning_finds_prometheus_and_the_dashboards() -> None:
    [source] = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert (source["uid"], source["type"], source["url"]) == (
        "prometheus",
        "prometheus",
        "http://prometheus:9090",
    )
    [provider] = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "stopper.yml")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def exported_series_names() -> dict[str, set[str]]:
    """Series names each of Stopper's metric families exposes, by family name."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if family.name.startswith("stopper_"):
            exported[family.name] = {family.name + s for s in suffixes.get(family.type, ("",))}
    return exported


def used_names(texts: list[str]) -> set[str]:
    return {name for text in texts for name in METRIC_NAME.findall(text)}


@pytest.mark.parametrize("path", [RULES, RULES_TESTS, DASHBOARD], ids=lambda p: p.name)
def test_only_metrics_stopper_exports_are_named(path: Path) -> None:
    exported = set().union(*exported_series_names().values())
    if path == DASHBOARD:
        names = used_names(dashboard_queries(load_dashboard()))
    else:
        names = used_names([path.read_text()])
    assert names, f"no Stopper metric found in {path.name}"
    unknown = sorted(names - exported)
    assert not unknown, (
        f"{path.name} names series Stopper does not export: {unknown}; "
        "see stopper/metrics.py (counters end in _total, histograms in _bucket/_sum/_count)"
    )


def test_every_metric_has_a_place_on_the_dashboard() -> None:
    on_dashboard = used_names(dashboard_queries(load_dashboard()))
    missing = sorted(
        family for family, series in exported_series_names().items() if not series & on_dashboard
    )
    assert not missing, f"metrics no dashboard panel shows: {missing}"


def test_the_dashboard_is_provisionable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "stopper"
    assert dashboard["schemaVersion"] >= 36
    panels = dashboard_panels(dashboard)
    assert len(panels) >= 15

    rows = [p for p in dashboard["panels"] if p.get("type") == "row"]
    ids = [p["id"] for p in rows + panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        where = f"panel {panel.get('title')!r}"
        assert panel.get("datasource", {}).get("uid") == "prometheus", where
        targets: list[dict[str, Any]] = panel.get("targets", [])
        assert targets, f"{where} has no query"
        for target in targets:
            assert target.get("expr", "").strip(), f"{where} has an empty query"
            assert target.get("datasource", {}).get("uid") == "prometheus", where
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, where

    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            assert variable["datasource"]["uid"] == "prometheus", variable["name"]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses PromQL offline when the expressions are recording rules.
    rules = []
    for i, query in enumerate(dashboard_queries(load_dashboard())):
        expr = label_values_metric(query) or as_promql(query)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", path)
