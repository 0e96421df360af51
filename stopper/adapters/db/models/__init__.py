"""Tables. Amounts are integers in minor units; times are timezone-aware UTC.

The Alembic migrations in `migrations/` create exactly these; a test compares them.

One module per family: `columns` (shared types), `cases`, `plumbing`, `operations`.
"""

from stopper.adapters.db.models.cases import (
    AccountRow,
    CaseRow,
    DivergenceRow,
    HoldNoteRow,
    HoldRow,
    HoldSupplementRow,
    HoldTransitionRow,
    PayoutRow,
    TrailEdgeRow,
    TransferRow,
    VictimRow,
)
from stopper.adapters.db.models.columns import (
    NAMING,
    NAMING_PREDICATE,
    STOPPED_FIRST_LEVEL,
    Base,
    BigId,
    Timestamp,
    UtcTimestamp,
)
from stopper.adapters.db.models.operations import (
    ApprovalOrderRow,
    ReverificationRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)
from stopper.adapters.db.models.plumbing import (
    ApiKeyRow,
    BusOffsetRow,
    BusRecordRow,
    CallbackNonceRow,
    InstitutionHealthRow,
    Iso20022MessageRow,
    OutboxRow,
)

__all__ = [
    "NAMING",
    "NAMING_PREDICATE",
    "STOPPED_FIRST_LEVEL",
    "AccountRow",
    "ApiKeyRow",
    "ApprovalOrderRow",
    "Base",
    "BigId",
    "BusOffsetRow",
    "BusRecordRow",
    "CallbackNonceRow",
    "CaseRow",
    "DivergenceRow",
    "HoldNoteRow",
    "HoldRow",
    "HoldSupplementRow",
    "HoldTransitionRow",
    "InstitutionHealthRow",
    "Iso20022MessageRow",
    "OutboxRow",
    "PayoutRow",
    "ReverificationRow",
    "Timestamp",
    "TrailEdgeRow",
    "TransferRow",
    "UtcTimestamp",
    "VictimRow",
    "WebhookAttemptRow",
    "WebhookDeliveryRow",
    "WebhookSubscriptionRow",
]
