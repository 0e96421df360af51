"""Realistic fraud reports, reproducible from a seed.

Victims of one scam campaign pay into a shared pool of mule accounts, so several reports (and
several victims of one report) name the same receiving account, as in real cases.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from stopper.registry import InstitutionKind, Registry

AGENCIES = [
    ("PSB-ANTIFRAUD-01", "Municipal Anti-Fraud Centre"),
    ("PSB-DISTRICT-03", "Riverside District Public Security Bureau"),
    ("PSB-DISTRICT-07", "Old Town District Public Security Bureau"),
]
CHANNELS = ["mobile_banking", "online_banking", "third_party_payment", "bank_transfer", "counter"]
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu"]
GIVEN = ["Wei", "Fang", "Na", "Min", "Jing", "Lei", "Qiang", "Yan", "Jun", "Hui", "Xin", "Tao"]
SCAMS = [
    "fake investment platform",
    "impersonated police officer",
    "online shopping refund",
    "part-time job task",
    "fake loan fee",
    "romance scam",
]


class ReportFactory:
    def __init__(self, registry: Registry, seed: int = 7, mule_pool: int = 400) -> None:
        self._rng = random.Random(seed)
        self._registry = registry
        banks = registry.of_kind(InstitutionKind.BANK)
        payment = registry.of_kind(InstitutionKind.PAYMENT_INSTITUTION)
        self._mules = [
            (
                self._rng.choice(banks if self._rng.random() < 0.7 else payment).code,
                self._account_number(),
                self._name(),
            )
            for _ in range(mule_pool)
        ]
        self._banks = [b.code for b in banks]
        self._serial = 0

    def report(self, reported_at: datetime) -> dict[str, Any]:
        """One report as the JSON document an intake system would post."""
        rng = self._rng
        self._serial += 1
        agency = rng.choice(AGENCIES)
        victims = [
            {"victim_id": f"V{n + 1}", "name": self._name()}
            for n in range(1 if rng.random() < 0.8 else rng.randint(2, 3))
        ]
        transfers = []
        for victim in victims:
            own = (rng.choice(self._banks), self._account_number())
            start = reported_at - timedelta(minutes=rng.randint(45, 600))
            for k in range(rng.choices([1, 2, 3, 4, 6], weights=[40, 30, 15, 10, 5])[0]):
                code, number, holder = rng.choice(self._mules)
                transfers.append(
                    {
                        "victim_id": victim["victim_id"],
                        "victim_account": {"institution_code": own[0], "account_number": own[1]},
                        "receiving_account": {
                            "institution_code": code,
                            "account_number": number,
                            "name": holder,
                        },
                        "amount": str(self._amount()),
                        "currency": "CNY",
                        "transferred_at": (start + timedelta(minutes=7 * k)).isoformat(),
                        "channel": rng.choice(CHANNELS),
                        "reference": rng.choice(SCAMS),
                    }
                )
        return {
            "report_id": f"{agency[0]}-{reported_at:%Y%m%d}-{rng.randrange(16**8):08x}"
            f"-{self._serial:05d}",
            "agency": {"code": agency[0], "name": agency[1]},
            "reported_at": reported_at.isoformat(),
            "victims": victims,
            "transfers": transfers,
        }

    def _amount(self) -> Decimal:
        # Most scams take a few thousand; a few take hundreds of thousands.
        yuan = min(500_000.0, self._rng.lognormvariate(8.5, 1.2))
        return Decimal(f"{max(100.0, yuan):.2f}")

    def _account_number(self) -> str:
        return "62" + "".join(self._rng.choice("0123456789") for _ in range(15))

    def _name(self) -> str:
        return f"{self._rng.choice(SURNAMES)} {self._rng.choice(GIVEN)}"
