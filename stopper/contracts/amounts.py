"""Amounts on the wire: one convention for every JSON interface (README: "Amounts").

Stopper counts money in minor units (integers: fen, cents). In every JSON body it writes or
reads (reports, the API's answers, stop, freeze and return requests to institutions and their
answers, callbacks, webhooks and `stopper.case-events`) an amount is a **decimal string** in
the currency's major unit with the currency's minor digits: ``"45540.00"`` CNY is 4,554,000
fen. Writers give exactly the minor digits; readers take at most that many decimals
(``"45540"``, ``"45540.5"``), no sign, exponent or spaces. ISO 20022 says the same in XML.

Why strings: a JSON number is a binary float to most parsers (JavaScript's, and Python's for a
number with a point), which holds 0.10 only approximately and cannot count every cent of an
amount above 2^53; integers of minor units are exact, but each reader must know each
currency's exponent, and a slip is a silent factor of 100 in an evidence record. A decimal
string is exact in every language, reads the same to a person and a program, and is what the
reports always took and the case view always answered.

Every currency Stopper takes (`SUPPORTED_CURRENCIES` of `reports`) has two minor digits (ISO
4217), so the contracts convert with two; `MINOR_DIGITS` lists them, and a currency with other
digits needs the conversion to be told the currency first (tests/unit/test_amounts.py holds
the two lists together).

A transition (issue 17): the forms read before stay readable for integrators already
connected, each with its old meaning, and are counted (`LegacyForms`, the metric
`stopper_legacy_amounts_total`): a JSON *integer* in an institution's answer or callback is
minor units (``125000`` is ``"1250.00"``); a JSON *number* in a report is major units (as it
always was). Since the convention is a string, an old form is never mistaken for a new one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)

MINOR_DIGITS: Final = {"CNY": 2, "HKD": 2, "USD": 2, "EUR": 2, "GBP": 2}
WIRE_DIGITS: Final = 2
_SCALE: Final = 10**WIRE_DIGITS
# At most 15 digits before the point: ten trillion and more, with room to spare in an int64.
_DECIMAL: Final = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,2}))?")
NOT_AN_AMOUNT: Final = 'an amount is a decimal string with at most 2 decimals, e.g. "1250.00"'
LEGACY_KEY: Final = "legacy_amounts"

# What the OpenAPI and AsyncAPI documents say of an amount: the convention, without the
# transition's old forms (a generated client should never send those).
AMOUNT_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": r"^[0-9]{1,15}(\.[0-9]{1,2})?$",
    "examples": ["1250.00"],
}
WRITTEN_AMOUNT_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": r"^[0-9]{1,15}\.[0-9]{2}$",
    "examples": ["1250.00"],
}


def format_amount(minor: int) -> str:
    """Minor units as the wire's decimal string: 125000 -> ``"1250.00"``."""
    if minor < 0:
        raise ValueError("amounts on the wire are never negative")
    whole, part = divmod(minor, _SCALE)
    return f"{whole}.{part:0{WIRE_DIGITS}d}"


def parse_amount(text: str) -> int:
    """The wire's decimal string as minor units: ``"1250.5"`` -> 125050; ValueError for
    anything else (a sign, an exponent, more decimals than the currency has)."""
    found = _DECIMAL.fullmatch(text)
    if found is None:
        raise ValueError(NOT_AN_AMOUNT)
    whole, part = found.group(1), found.group(2) or ""
    return int(whole) * _SCALE + int(part.ljust(WIRE_DIGITS, "0"))


@dataclass
class LegacyForms:
    """Counts the amounts one validation read in a form of before the convention: pass
    ``context=forms.context()`` to ``model_validate_json``, then read `count`."""

    count: int = 0

    def context(self, **more: object) -> dict[str, object]:
        return {LEGACY_KEY: self, **more}


def note_legacy(info: ValidationInfo) -> None:
    """Count one old form, if the validation was given a `LegacyForms`."""
    forms = (info.context or {}).get(LEGACY_KEY)
    if isinstance(forms, LegacyForms):
        forms.count += 1


def _read(value: object, info: ValidationInfo) -> int:
    if isinstance(value, str):
        return parse_amount(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(NOT_AN_AMOUNT)
    if value < 0:
        raise ValueError("an amount is never negative")
    if info.mode == "json":
        note_legacy(info)  # the transition's integer of minor units
    return value  # in Python, an int is what Stopper counts in: minor units


def _positive(minor: int) -> int:
    if minor == 0:
        raise ValueError("the amount must be more than 0")
    return minor


# An amount of an institution contract or a case event: minor units in Python, a decimal
# string in JSON; never negative (`PositiveAmount`: more than 0). The bounds are the types'
# own, not `Field(gt=...)`, which a JSON schema of a string could not say.
Amount = Annotated[
    int,
    BeforeValidator(_read),
    PlainSerializer(format_amount, return_type=str, when_used="json"),
    WithJsonSchema(AMOUNT_SCHEMA, mode="validation"),
    WithJsonSchema(WRITTEN_AMOUNT_SCHEMA, mode="serialization"),
]
PositiveAmount = Annotated[Amount, AfterValidator(_positive)]

# An amount of the API's answers, already in major units (`cases.to_major`): a decimal string
# in JSON, as pydantic writes a Decimal.
DecimalAmount = Annotated[Decimal, WithJsonSchema(WRITTEN_AMOUNT_SCHEMA)]
