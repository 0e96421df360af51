"""Report documents for tests, with unique ids so tests never depend on each other, and the
hold decisions several store tests make."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from stopper.app.ports import HoldDecision, HoldRecord, HoldUpdate
from stopper.domain.holds import HoldEvent
from stopper.domain.messages import OnwardTransfer
from stopper.domain.trail import TrailNode, TrailPlan, plan_trail
from stopper.registry import load_registry


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


def fresh_account(institution_code: str = "BK01") -> tuple[str, str]:
    """An account no other test names (institution code, account number)."""
    return institution_code, f"6222{uuid.uuid4().int % 10**12:012d}"


def naming_doc(*accounts: tuple[str, str], **overrides: Any) -> dict[str, Any]:
    """A report of one victim who paid each of `accounts` (institution code, number) 150.00."""
    doc = report_doc(**overrides)
    template = doc["transfers"][0]
    doc["victims"] = [{"victim_id": "V1"}]
    doc["transfers"] = [
        dict(
            template,
            amount="150.00",
            receiving_account={"institution_code": code, "account_number": number},
        )
        for code, number in accounts
    ]
    return doc


def stop_and_follow(onward: Sequence[OnwardTransfer], moved_on: int, at: datetime) -> HoldDecision:
    """A hold sent and stopped with `moved_on` missing, the money trail followed along `onward`
    in the same change (as an institution's answer with onward transfers does)."""

    def decide(record: HoldRecord) -> HoldUpdate:
        hold = record.hold
        moves = [
            hold.apply(HoldEvent.REQUEST_SENT, cause="test", actor="test", at=at),
            hold.apply(
                HoldEvent.STOP_CONFIRMED,
                cause="test",
                actor="test",
                at=at,
                amount=hold.amount_asked - moved_on,
            ),
        ]

        def follow(nodes: Sequence[TrailNode]) -> TrailPlan:
            return plan_trail(
                parent=next(n for n in nodes if n.hold_id == hold.id),
                moved_on=moved_on,
                onward=onward,
                case_id=hold.case_id,
                case_nodes=nodes,
                known_institutions=load_registry(),
                max_depth=5,
                at=at,
            )

        return HoldUpdate(at=at, transitions=moves, follow=follow)

    return decide
