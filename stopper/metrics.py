"""Prometheus metrics. Labels never carry account numbers, names or case ids."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REPORTS_RECEIVED = Counter(
    "stopper_reports_received_total",
    "Fraud reports received over HTTP, by outcome (accepted, duplicate, conflict, rejected).",
    ["outcome"],
)
HTTP_INTAKE_DURATION = Histogram(
    "stopper_http_intake_duration_seconds",
    "Time to validate and publish one report posted over HTTP.",
    buckets=_LATENCY_BUCKETS,
)
CASES_OPENED = Counter(
    "stopper_cases_opened_total",
    "Cases opened by the intake consumer, by report source.",
    ["source"],
)
HOLDS_CREATED = Counter("stopper_holds_created_total", "Holds created in state requested.")
INTAKE_LATENCY = Histogram(
    "stopper_intake_latency_seconds",
    "Report accepted -> case and holds committed, by report source.",
    ["source"],
    buckets=_LATENCY_BUCKETS,
)
DEAD_LETTERS = Counter(
    "stopper_dead_letters_total",
    "Records sent to a dead-letter topic, by source topic.",
    ["topic"],
)
CONSUMER_ERRORS = Counter(
    "stopper_consumer_errors_total",
    "Batches a consumer failed to handle and will retry, by consumer.",
    ["consumer"],
)
