"""The small pieces every message shares: amounts, times, identifiers, parties, narrative lines,
and the mapping between Stopper's idempotency keys and the 35-character ISO identifiers.

Messages are written as text from these pieces (about ten times faster than building an lxml
tree and serialising it: thousands of holds a second leave this way); the tests validate what
they write against the official schemas. They are read with lxml, after `parse_document`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from uuid import UUID

from lxml import etree

from stopper.adapters.institutions.iso20022.codes import DEFAULT_MINOR_DIGITS, MINOR_DIGITS
from stopper.domain.supplements import supplement_key_for, supplement_of_key
from stopper.errors import XmlRefusal, XmlRefused

# --- Stopper's keys in 35 characters ------------------------------------------------------------

_STOP_KEY = re.compile(r"^stopper-([0-9a-f-]{36})-(\d{1,2})$")
_CXL_ID = re.compile(r"^([0-9a-f]{32})-(\d{1,2})$")
# A supplement's: `stopper-<hold id>-s<number>` as the hold id's 32 hex digits, `S`, the number.
_SUPPLEMENT_CXL_ID = re.compile(r"^([0-9a-f]{32})S([1-9]\d?)$")
MAX_GENERATION = 99  # two digits: Stopper re-applies a stop at most twice


def cxl_id_for(idempotency_key: str) -> str:
    """`stopper-<hold id>-<generation>` (46+ characters) as a CxlId (at most 35): the hold id's
    32 hex digits, a dash, the generation. A supplement's key `stopper-<hold id>-s<number>` is
    the 32 hex digits, `S`, the number (1 to 99: `...f011S1`). `key_for_cxl_id` and
    `stop_key_for_cxl_id` give the key back."""
    match = _STOP_KEY.match(idempotency_key)
    if match is not None:
        return f"{UUID(match.group(1)).hex}-{int(match.group(2))}"
    supplement = supplement_of_key(idempotency_key)
    if supplement is not None:
        return f"{supplement[0].hex}S{supplement[1]}"
    raise ValueError(
        "not a stop request's idempotency key (stopper-<uuid>-<generation>, or -s<number>)"
    )


def stop_key_for_cxl_id(cxl_id: str) -> tuple[str, UUID] | None:
    """The idempotency key and hold a CxlId stands for, a first request's or a supplement's;
    None if not Stopper's."""
    first = key_for_cxl_id(cxl_id)
    if first is not None:
        return first[0], first[1]
    match = _SUPPLEMENT_CXL_ID.match(cxl_id)
    if match is None:
        return None
    hold_id = UUID(hex=match.group(1))
    return supplement_key_for(hold_id, int(match.group(2))), hold_id


def key_for_cxl_id(cxl_id: str) -> tuple[str, UUID, int] | None:
    """The idempotency key, hold id and generation a CxlId stands for; None if not Stopper's."""
    match = _CXL_ID.match(cxl_id)
    if match is None:
        return None
    hold_id = UUID(hex=match.group(1))
    generation = int(match.group(2))
    if str(generation) != match.group(2):  # "01" is not a CxlId Stopper writes
        return None
    return f"stopper-{hold_id}-{generation}", hold_id, generation


def payout_ref(hold_id: UUID, index: int) -> str:
    """The CxlId of payout `index` (1 to 999) of a return instruction: the hold id's 32 hex
    digits and the payout's place in three (a report names at most 100 victims)."""
    if not 1 <= index <= 999:
        raise ValueError("a return instruction carries 1 to 999 payouts")
    return f"{hold_id.hex}{index:03d}"


# --- values ---------------------------------------------------------------------------------

_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NEEDS_WORK = re.compile('[&<>"\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"})


def text(value: str) -> str:
    """`value` as XML character data (also fit for a quoted attribute). Characters XML 1.0
    cannot carry become U+FFFD; a carriage return is kept as a reference (parsers turn a literal
    one into a newline)."""
    if _NEEDS_WORK.search(value) is None:  # codes, numbers, most references
        return value
    return _ILLEGAL_XML.sub("\ufffd", value).translate(_ESCAPES)


def minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency, DEFAULT_MINOR_DIGITS)


def amount_text(minor: int, currency: str) -> str:
    """Minor units as an ISO amount: 455000 EUR -> `4550.00`."""
    if minor < 0:
        raise ValueError("amounts are never negative")
    digits = minor_digits(currency)
    if digits == 0:
        return str(minor)
    whole, part = divmod(minor, 10**digits)
    return f"{whole}.{part:0{digits}d}"


def amount(element: etree._Element) -> tuple[int, str] | None:
    """An `...Amt Ccy="EUR"` element as (minor units, currency); None when it has more decimals
    than the currency."""
    currency = element.get("Ccy") or ""
    minor = minor_units(element.text or "", currency)
    return (minor, currency) if minor is not None else None


def minor_units(value: str, currency: str) -> int | None:
    """A decimal as minor units of `currency`; None when it is not one or is too precise."""
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    minor = number.scaleb(minor_digits(currency))
    if not minor.is_finite() or minor != minor.to_integral_value():
        return None
    return int(minor)


def datetime_text(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("times in ISO messages are aware")
    return at.isoformat()


def parse_datetime(value: str) -> datetime:
    """An ISODateTime, in UTC (one without an offset is taken as UTC). ValueError for one the
    schema allows but Python cannot hold (`24:00:00`, a five-digit or negative year)."""
    try:
        at = datetime.fromisoformat(value.strip())
        return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise ValueError("a date-time outside what Stopper reads") from e


def document_time(value: str | None, where: str) -> datetime:
    """A message's own time (CreDtTm): `invalid` when it cannot be read."""
    try:
        return parse_datetime(value or "")
    except ValueError as e:
        raise XmlRefused(XmlRefusal.INVALID, f"{where}: a date-time Stopper cannot read") from e


def date_text(at: datetime | date) -> str:
    return at.date().isoformat() if isinstance(at, datetime) else at.isoformat()


# --- parties --------------------------------------------------------------------------------


def agent(code: str) -> str:
    """A financial institution by its registry code (BranchAndFinancialInstitutionIdentification6):
    the codes are not BICs, so they go in `Othr/Id`."""
    return f"<FinInstnId><Othr><Id>{text(code)}</Id></Othr></FinInstnId>"


def account(number: str) -> str:
    """An account by its number (CashAccount38): `Id/Othr/Id`."""
    return f"<Id><Othr><Id>{text(number)}</Id></Othr></Id>"


def organisation(identifier: str) -> str:
    """A party that is not an institution (PartyIdentification135): `Id/OrgId/Othr/Id`."""
    return f"<Id><OrgId><Othr><Id>{text(identifier)}</Id></Othr></OrgId></Id>"


# --- narrative ------------------------------------------------------------------------------

ADDTL_INF_MAX = 105
_CONTINUED = "//"


def tagged_lines(tag: str, value: str) -> Iterator[str]:
    """`value` as AddtlInf lines (Max105Text): `/TAG/` and its start, then `//` and the rest,
    as many lines as it takes (the continuation of SWIFT narratives)."""
    head = f"/{tag}/"
    first = ADDTL_INF_MAX - len(head)
    yield head + value[:first]
    rest = value[first:]
    step = ADDTL_INF_MAX - len(_CONTINUED)
    for start in range(0, len(rest), step):
        yield _CONTINUED + rest[start : start + step]


def read_tagged_lines(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """The tagged values among AddtlInf lines (`tagged_lines`), and the other lines in order."""
    tagged: dict[str, str] = {}
    other: list[str] = []
    current: str | None = None
    for line in lines:
        match = _TAG.match(line)
        if match is not None:
            current = match.group(1)
            tagged[current] = tagged.get(current, "") + line[match.end() :]
        elif line.startswith(_CONTINUED) and current is not None:
            tagged[current] += line[len(_CONTINUED) :]
        else:
            current = None
            other.append(line)
    return tagged, other


_TAG = re.compile(r"^/([A-Z]{4})/")


def chunks(value: str, size: int = ADDTL_INF_MAX) -> list[str]:
    """Free text as AddtlInf lines, cut at `size` characters (read back by joining them)."""
    return [value[i : i + size] for i in range(0, len(value), size)] or []


# --- reading --------------------------------------------------------------------------------


class Reader:
    """Child lookups in one message's namespace: `r.find(el, "Assgnmt/Id")`.

    Each step is a C-level `iterchildren(tag)`: lxml's `find` with a path runs its ElementPath
    in Python, several microseconds a call, and a batch reads thousands of fields.
    """

    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self._steps: dict[str, tuple[str, ...]] = {}

    def _path(self, path: str) -> tuple[str, ...]:
        steps = self._steps.get(path)
        if steps is None:
            steps = tuple(f"{{{self.ns}}}{step}" for step in path.split("/"))
            self._steps[path] = steps
        return steps

    def find(self, element: etree._Element, path: str) -> etree._Element | None:
        found = element
        for step in self._path(path):
            child = next(found.iterchildren(step), None)
            if child is None:
                return None
            found = child
        return found

    def all(self, element: etree._Element, path: str) -> list[etree._Element]:
        *parents, last = self._path(path)
        level = [element]
        for step in parents:
            level = [c for e in level for c in e.iterchildren(step)]
        return [c for e in level for c in e.iterchildren(last)]

    def children(self, element: etree._Element) -> dict[str, etree._Element]:
        """`element`'s children by local name, the first of each (one pass over them)."""
        cut = len(self.ns) + 2
        found: dict[str, etree._Element] = {}
        for child in element:
            tag = child.tag
            if isinstance(tag, str):
                found.setdefault(tag[cut:], child)
        return found

    def text(self, element: etree._Element, path: str) -> str | None:
        found = self.find(element, path)
        return found.text if found is not None else None

    def texts(self, element: etree._Element, path: str) -> list[str]:
        return [e.text or "" for e in self.all(element, path)]

    def party(self, element: etree._Element | None) -> str:
        """Who a Party40Choice or an agent names: its BIC, other identifier, LEI or name."""
        if element is None:
            return ""
        agent = self.find(element, "Agt")
        institution = self.find(agent if agent is not None else element, "FinInstnId")
        if institution is not None:
            paths: tuple[str, ...] = ("BICFI", "Othr/Id", "LEI", "Nm")
        else:
            institution = self.find(element, "Pty")
            paths = ("Id/OrgId/AnyBIC", "Id/OrgId/Othr/Id", "Id/OrgId/LEI", "Nm")
        if institution is None:
            return ""
        for path in paths:
            found = self.text(institution, path)
            if found:
                return found
        return ""

    def account(self, element: etree._Element | None) -> str:
        """A CashAccount38's number: IBAN or other identifier."""
        if element is None:
            return ""
        return self.text(element, "Id/IBAN") or self.text(element, "Id/Othr/Id") or ""
