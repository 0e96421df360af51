"""Report documents for tests, with unique ids so tests never depend on each other."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def report_doc(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    doc: dict[str, Any] = {
        "report_id": f"T-{uuid.uuid4().hex}",
        "agency": {"code": "PSB-TEST", "name": "Test Anti-Fraud Centre"},
        "reported_at": (now - timedelta(minutes=1)).isoformat(),
        "victims": [{"victim_id": "V1", "name": "Wang Wei"}, {"victim_id": "V2"}],
        "transfers": [
            {
                "victim_id": "V1",
                "victim_account": {
                    "institution_code": "BK02",
                    "account_number": "6222000000000001",
                },
                "receiving_account": {
                    "institution_code": "BK01",
                    "account_number": "6222111122223333",
                    "name": "Li Na",
                },
                "amount": "15000.00",
                "currency": "CNY",
                "transferred_at": (now - timedelta(minutes=30)).isoformat(),
                "channel": "mobile_banking",
                "reference": "fake investment platform",
            },
            {
                "victim_id": "V2",
                "victim_account": {
                    "institution_code": "BK03",
                    "account_number": "6222000000000002",
                },
                "receiving_account": {
                    "institution_code": "BK01",
                    "account_number": "6222111122223333",
                },
                "amount": "5000.50",
                "currency": "CNY",
                "transferred_at": (now - timedelta(minutes=20)).isoformat(),
                "channel": "online_banking",
            },
            {
                "victim_id": "V2",
                "victim_account": {
                    "institution_code": "BK03",
                    "account_number": "6222000000000002",
                },
                "receiving_account": {"institution_code": "PI04", "account_number": "880012345678"},
                "amount": "820.00",
                "currency": "CNY",
                "transferred_at": (now - timedelta(minutes=10)).isoformat(),
                "channel": "third_party_payment",
            },
        ],
    }
    doc.update(overrides)
    return doc
