"""`SqlStore`: every aggregate's storage on one database (PostgreSQL or SQLite), for wiring.

Each use case asks only for the narrow port it needs (`stopper.app.ports`, `stopper.app.queries`,
...); one `SqlStore` implements them all, so `stopper.runtime` builds one and hands it around.
Where each aggregate is stored:

    intake.py          opened cases, their holds claimed as they are born
    holds.py           the hold's unit of work (locked, decided, written once), nonces, leases
    supplements.py     supplements, decided on with their hold locked; the ones due
    trail.py           the money trail followed inside that unit of work
    returns.py         a case's funds and its return orders
    sweeps.py          what the sweepers find due, and the gauges' counts
    releases.py        releases due, and a case's holds (a withdrawn report releases them)
    reconciliation.py  holds whose outcome is unknown, divergences found
    reverifications.py re-verification jobs, and the stopped first-level holds they ask about
    outbox.py          the transactional outbox's relay
    retention.py       pruning published outbox rows and old callback nonces
    queries.py         read models for the API and the console
    activity.py        a case's timeline and the last hour's activity, for the console
    health.py          database readiness, institutions' health
    keys.py            API keys
    messages.py        ISO 20022 messages sent, and the payments their stop requests name
    notes.py           people's notes on holds ("handled"), beside the holds' audit
    case_events.py     case events, written into the outbox with the changes that cause them
    webhooks.py        agencies' webhook subscriptions, their deliveries and attempts
    approvals.py       orders waiting for a second operator (four eyes)
    mules.py           the mule-account registry: the cases naming an account (read, not kept)
    dialects/          what differs between PostgreSQL and SQLite
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from stopper.adapters.db.activity import ActivityReadModels
from stopper.adapters.db.approvals import ApprovalStorage
from stopper.adapters.db.dialects import database_for
from stopper.adapters.db.health import HealthStorage
from stopper.adapters.db.intake import IntakeStorage
from stopper.adapters.db.keys import KeyStorage
from stopper.adapters.db.messages import MessageStorage
from stopper.adapters.db.mules import MuleStorage
from stopper.adapters.db.notes import NoteStorage
from stopper.adapters.db.outbox import OutboxStorage
from stopper.adapters.db.queries import CaseReadModels
from stopper.adapters.db.reconciliation import ReconcileStorage
from stopper.adapters.db.releases import ReleaseStorage
from stopper.adapters.db.retention import RetentionStorage
from stopper.adapters.db.returns import ReturnStorage
from stopper.adapters.db.reverifications import ReverificationStorage
from stopper.adapters.db.supplements import SupplementStorage
from stopper.adapters.db.sweeps import SweepQueries
from stopper.adapters.db.webhooks import WebhookStorage


class SqlStore(
    IntakeStorage,
    ReturnStorage,
    ReleaseStorage,
    SupplementStorage,
    SweepQueries,
    ReconcileStorage,
    ReverificationStorage,
    OutboxStorage,
    RetentionStorage,
    CaseReadModels,
    ActivityReadModels,
    HealthStorage,
    KeyStorage,
    MessageStorage,
    NoteStorage,
    WebhookStorage,
    ApprovalStorage,
    MuleStorage,
):
    def __init__(
        self,
        engine: AsyncEngine,
        stop_request_topic: str,
        case_events_topic: str = "stopper.case-events",
    ) -> None:
        super().__init__(database_for(engine), stop_request_topic, case_events_topic)
