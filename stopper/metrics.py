"""Prometheus metrics. Labels never carry account numbers, names or case ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

# Fan-out. `institution` is an institution code from the registry, never an account.
_RACE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
REPORT_TO_STOP_REQUEST = Histogram(
    "stopper_report_to_stop_request_seconds",
    "Report accepted -> first stop request handed to the adapter, first-level holds.",
    ["institution_kind", "institution"],
    buckets=_RACE_BUCKETS,
)
REPORT_TO_STOP_CONFIRMED = Histogram(
    "stopper_report_to_stop_confirmed_seconds",
    "Report accepted -> the institution confirmed the stop, first-level holds.",
    ["institution_kind", "institution"],
    buckets=_RACE_BUCKETS,
)
STOP_ATTEMPTS = Counter(
    "stopper_stop_attempts_total",
    "Stop request attempts by institution and outcome (stopped, not_found, rejected, accepted, "
    "timeout, unavailable, malformed, refused, breaker_open).",
    ["institution", "outcome"],
)
STOP_RETRIES = Counter(
    "stopper_stop_retries_total", "Attempts after the first, by institution.", ["institution"]
)
STOP_TIMEOUTS = Counter(
    "stopper_stop_timeouts_total", "Attempts that timed out, by institution.", ["institution"]
)
HOLDS_FAILED = Counter(
    "stopper_holds_failed_total",
    "Holds given up on (deadline passed or request refused): a person must act.",
    ["institution"],
)
BREAKER_STATE = Gauge(
    "stopper_breaker_state",
    "Circuit breaker per institution: 0 closed, 1 half-open, 2 open.",
    ["institution"],
)
EVENT_LOOP_LAG = Histogram(
    "stopper_event_loop_lag_seconds",
    "How late this process's event loop woke a task due every 50 ms (0: on time): a process "
    "short of CPU, or a long stretch of work between two awaits.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CALLS_EXCUSED = Counter(
    "stopper_institution_calls_excused_total",
    "Failed calls to an institution not counted against its breaker: this process's event loop "
    "stalled for a good part of the institution's timeout while the call was out.",
    ["institution"],
)
BREAKER_TRIPS = Counter(
    "stopper_breaker_trips_total", "Times a breaker opened, by institution.", ["institution"]
)
CALLBACKS = Counter(
    "stopper_callbacks_total",
    "Institution callbacks by outcome (applied, repeated, conflict; pending for an ISO 20022 "
    "answer that says so) or refusal reason (bad_signature, stale, replayed, not_sent_here, "
    "unknown_institution, invalid; an ISO 20022 document's: malformed, too_large, entities, "
    "unknown_message). A camt.029 counts once per answer it carries.",
    ["institution", "outcome"],
)
CALLBACKS_PREVIOUS_SECRET = Counter(
    "stopper_callbacks_previous_secret_total",
    "Callbacks whose signature was verified by the institution's previous secret (a rotation "
    "under way): once it stops rising, the previous secret can be removed.",
    ["institution"],
)
LEGACY_AMOUNTS = Counter(
    "stopper_legacy_amounts_total",
    "Messages read with amounts in a form of before the decimal-string convention (README: "
    "Amounts), still read during the transition: a report with a JSON number (interface "
    "report), an institution's answer or callback with an integer of minor units (answer, "
    "callback; by institution). Once it stays at 0, the old forms can go.",
    ["interface", "institution"],
)
AMOUNT_STOPPED = Counter(
    "stopper_amount_stopped_total",
    "Money held by confirmed stops, in currency units.",
    ["currency"],
)
TRAIL_HOLDS = Counter(
    "stopper_trail_holds_total", "Holds opened by following the money trail, by layer.", ["layer"]
)
SUPPLEMENTS = Counter(
    "stopper_supplements_total",
    "Supplements (the extra a trail merge asked of a hold whose request was out), by outcome: "
    "sent, accepted, stopped, not_found, rejected, failed (given up while the hold's own stop "
    "stands: a person must act), cancelled (no longer to be asked).",
    ["institution", "outcome"],
)
TRAIL_EDGES = Counter(
    "stopper_trail_edges_total",
    "Onward transfers reported by institutions, by what the trail did (followed, merged, cycle, "
    "depth_limit, unrecoverable, unknown_institution, nothing_left).",
    ["outcome"],
)
HOLDS_EXPIRING_SOON = Gauge(
    "stopper_holds_expiring_soon",
    "Emergency stops that lapse within the lead time unless frozen first.",
    ["within"],
)
# The alert's metric: its lead time is the jurisdiction profile's last warning (2 h in cn,
# 24 h in sg), so the rule needs no label of a particular profile.
STOPS_LAPSING_UNFROZEN = Gauge(
    "stopper_stops_lapsing_unfrozen",
    "Emergency stops that lapse within the last warning's lead time unless frozen first.",
    ["within"],
)
EXPIRY_WARNINGS = Counter(
    "stopper_expiry_warnings_total", "Lapse warnings sent, by lead time.", ["warning"]
)
LAPSES = Counter("stopper_lapses_total", "Emergency stops that lapsed without a freeze.")
SILENT_LAPSES = Counter(
    "stopper_silent_lapses_total",
    "Lapses whose warnings had not gone out ahead of them (must stay 0).",
)
FREEZE_ATTEMPTS = Counter(
    "stopper_freeze_attempts_total",
    "Formal freeze requests by institution and outcome (frozen, rejected, error).",
    ["institution", "outcome"],
)
HOLDS = Gauge("stopper_holds", "Holds by state (refreshed every few seconds).", ["state"])
RETURN_ATTEMPTS = Counter(
    "stopper_return_attempts_total",
    "Return requests by institution and outcome (returned, rejected, error).",
    ["institution", "outcome"],
)
RELEASE_ATTEMPTS = Counter(
    "stopper_release_attempts_total",
    "Release requests by institution and outcome (released, rejected, error).",
    ["institution", "outcome"],
)
INTAKE_WAITS = Counter(
    "stopper_intake_waits_total",
    "Times intake (or the stop-request consumer) waited because this process had "
    "STOPPER_DISPATCH_MAX_QUEUED stop attempts under way: the process is behind as a whole.",
)
ORDERS_LEFT = Counter(
    "stopper_orders_left_total",
    "Orders after the stop (freeze, return, release) left for a person: nothing more is sent "
    "until one acts, by order and outcome (refused by the institution, gave_up: its attempts "
    "ran out or the institution could not take it).",
    ["order", "outcome"],
)
RELEASES = Counter(
    "stopper_releases_total",
    "Releases asked for, per hold, by ground (report_withdrawn, account_cleared) and outcome "
    "(ordered, cancelled: nothing had been sent, already_ordered, resent, not_allowed).",
    ["ground", "outcome"],
)
AMOUNT_RETURNED = Counter(
    "stopper_amount_returned_total",
    "Frozen funds the institutions confirmed paid back to victims, in currency units.",
    ["currency"],
)
CONSUMER_LAG = Gauge(
    "stopper_consumer_lag",
    "Records on this instance's partitions not yet read, by consumer (intake, dispatch).",
    ["consumer"],
)
OUTBOX_PENDING = Gauge(
    "stopper_outbox_pending", "Outbox rows written but not yet published to the bus."
)
PRUNED = Counter(
    "stopper_pruned_total",
    "Rows deleted once their retention passed: published outbox rows, old callback nonces.",
    ["table"],
)
AUTH_REFUSED = Counter(
    "stopper_auth_refused_total",
    "API calls refused: missing or invalid key, not an operator, another agency's report.",
    ["reason"],
)

# Requests the institutions accepted, and reconciliation with their records.
STATUS_INQUIRIES = Counter(
    "stopper_status_inquiries_total",
    "Status inquiries about accepted stop requests, by institution and outcome (answered, "
    "pending, unknown, timeout, unavailable, malformed, refused, breaker_open).",
    ["institution", "outcome"],
)
STATUS_REFUSED = Counter(
    "stopper_status_answers_refused_total",
    "Status answers refused and not applied, by institution and reason (other_request, "
    "other_hold, contradicts_final, malformed).",
    ["institution", "reason"],
)
RECONCILED = Counter(
    "stopper_reconciled_total",
    "Holds reconciliation asked an institution about, by outcome: applied (Stopper's state "
    "diverged and was moved to the institution's), matched, pending, resent, unknown, or a "
    "refusal reason.",
    ["outcome"],
)
REVERIFIED = Counter(
    "stopper_reverified_total",
    "Stopped first-level holds a re-verification asked about, by outcome (confirmed; lifted: "
    "the institution no longer holds the stop, the hold moved to expired; amount_differs; "
    "moved: the hold changed meanwhile; pending, unanswered, unreachable; or why the status "
    "was refused).",
    ["outcome"],
)
REVERIFY_REMAINING = Gauge(
    "stopper_reverify_remaining",
    "Holds the running re-verification (of this worker) has still to ask about (0 when none runs).",
)
HOLDS_UNCONFIRMED_OVERDUE = Gauge(
    "stopper_holds_unconfirmed_overdue",
    "Holds whose stop request the institution accepted and has not confirmed for longer "
    "than STOPPER_DISPATCH_UNCONFIRMED_ALERT_S.",
)
STOP_HEDGES = Counter(
    "stopper_stop_hedges_total",
    "Stop attempts slower than the institution's usual answer, sent once more with the same key, "
    "by institution and which answered first (first, hedge, neither).",
    ["institution", "winner"],
)
ISO20022_MESSAGES = Counter(
    "stopper_iso20022_messages_total",
    "ISO 20022 messages sent to institutions, by institution and message (camt.056.001.08).",
    ["institution", "message"],
)
ISO20022_HOLDS_PER_MESSAGE = Histogram(
    "stopper_iso20022_holds_per_message",
    "Holds one camt.056 carried (the batching of stop requests to ISO 20022 institutions).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
ISO20022_REFUSED = Counter(
    "stopper_iso20022_answers_refused_total",
    "Answers in ISO 20022 documents from institutions that Stopper could not read, at once or "
    "by callback, by institution and reason: the document's (malformed, too_large, entities, "
    "unknown_message, invalid) or one answer's (unknown_reason_code, no_reason, no_status, "
    "no_amount, bad_amount, not_ours, bad_onward, missing: a request the answer left out).",
    ["institution", "reason"],
)

# Agencies' webhooks. `agency` is an agency code; URLs and accounts never appear.
WEBHOOK_ATTEMPTS = Counter(
    "stopper_webhook_attempts_total",
    "Webhook delivery attempts by agency and outcome (delivered, http_error, redirect, "
    "timeout, unreachable, error).",
    ["agency", "outcome"],
)
WEBHOOK_GAVE_UP = Counter(
    "stopper_webhook_gave_up_total",
    "Webhook deliveries given up (not delivered within the retry period), by agency.",
    ["agency"],
)
WEBHOOK_DELIVERIES_OWED = Counter(
    "stopper_webhook_deliveries_owed_total",
    "Webhook deliveries recorded from case events (one per event and subscription).",
)

# The mule-account registry. No account appears in any label.
MULE_STOP_REQUESTS = Counter(
    "stopper_mule_stop_requests_total",
    "Stop attempts started for an account named in two or more cases (a known mule; they go "
    "first and say so), by institution.",
    ["institution"],
)
ACCOUNT_LOOKUPS = Counter(
    "stopper_account_lookups_total",
    "Operators' look-ups of an account in the registry, by outcome (flagged, named: in one "
    "case only, none: in no case).",
    ["outcome"],
)
