"""Reading ISO 20022 documents safely, and checking them against their official schemas.

Every document Stopper (or its simulator) reads goes through `parse_document`: a size limit
before anything is parsed, UTF-8 only, no DOCTYPE at all (so no entity is ever declared,
fetched or expanded: XXE and "billion laughs" are refused before the parser sees them), a
parser with entity resolution, DTD loading and network access off and libxml2's huge-tree
limits kept, then validation against the official schema the root's namespace names. The
schemas are package data (`stopper/data/iso20022/`), compiled once per process, on first use.

A refusal is an `XmlRefused` whose detail names the rule and the element where it broke, never
a value from the document (schema messages quote values: those are blanked).
"""

from __future__ import annotations

import copy
import enum
import functools
import re
import threading
from importlib import resources
from typing import Any, cast

from lxml import etree

from stopper.errors import XmlRefusal, XmlRefused

# The biggest document read: a camt.029 answering a batch of 1,000 holds is about 1 MB.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


class Message(enum.StrEnum):
    """The message versions Stopper writes and reads, by their namespace's last part."""

    CAMT_056 = "camt.056.001.08"  # FIToFIPaymentCancellationRequestV08: the recall
    CAMT_029 = "camt.029.001.09"  # ResolutionOfInvestigationV09: the answer to it
    PACS_004 = "pacs.004.001.09"  # PaymentReturnV09: the money going back

    @property
    def namespace(self) -> str:
        return f"urn:iso:std:iso:20022:tech:xsd:{self.value}"

    @property
    def root(self) -> str:
        """The element under `Document`."""
        return _ROOTS[self]


_ROOTS = {
    Message.CAMT_056: "FIToFIPmtCxlReq",
    Message.CAMT_029: "RsltnOfInvstgtn",
    Message.PACS_004: "PmtRtr",
}
_BY_NAMESPACE = {m.namespace: m for m in Message}

# Stopper's own supplementary data (payments of a hold, onward transfers): one namespace, its
# schema beside the official ones.
STOPPER_NAMESPACE = "urn:stopper:iso20022:supplementary:1"
_STOPPER_SCHEMA = "stopper.supplementary.1.xsd"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,  # keep libxml2's limits on depth and text size
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


# An lxml parser must not be used by two threads at once: each thread gets its own.
_local = threading.local()


def _thread_parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _parser()
    return parser


@functools.cache
def schema(name: str) -> etree.XMLSchema:
    """The compiled schema of a message version (or of Stopper's supplementary data)."""
    filename = name if name.endswith(".xsd") else f"{name}.xsd"
    source = resources.files("stopper.data").joinpath("iso20022", filename).read_bytes()
    return etree.XMLSchema(etree.fromstring(source, _parser()))


def stopper_schema() -> etree.XMLSchema:
    return schema(_STOPPER_SCHEMA)


_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def parse_document(body: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> etree._Element:
    """The `Document` element of an ISO 20022 message, checked against its official schema.

    Raises `XmlRefused` (too_large, malformed, entities, unknown_message, invalid).
    """
    if len(body) > max_bytes:
        raise XmlRefused(XmlRefusal.TOO_LARGE, f"the document is larger than {max_bytes} bytes")
    _refuse_other_encodings(body)
    # XML allows a DOCTYPE only before the root element; refusing the bytes outright means no
    # entity declaration ever reaches the parser. (One inside a comment is refused too: safe.)
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise XmlRefused(XmlRefusal.ENTITIES, "a DOCTYPE or entity declaration is not accepted")
    try:
        root = etree.fromstring(body, _thread_parser())
    except etree.XMLSyntaxError as e:
        raise XmlRefused(XmlRefusal.MALFORMED, f"not well-formed XML: {_quiet(e.msg)}") from e
    if root is None:  # pragma: no cover - fromstring raises rather than return nothing
        raise XmlRefused(XmlRefusal.MALFORMED, "no root element")
    if root.getroottree().docinfo.internalDTD is not None:  # pragma: no cover - refused above
        raise XmlRefused(XmlRefusal.ENTITIES, "a DOCTYPE is not accepted")
    message = message_of(root)
    validate(root, schema(message.value))
    return root


def message_of(root: etree._Element) -> Message:
    """Which message a `Document` is, by its namespace (`unknown_message` otherwise)."""
    qname = etree.QName(root)
    message = _BY_NAMESPACE.get(qname.namespace or "")
    if message is None or qname.localname != "Document":
        raise XmlRefused(
            XmlRefusal.UNKNOWN_MESSAGE,
            f"not a message read here: {{{qname.namespace or ''}}}{qname.localname}; "
            f"expected a Document of {', '.join(m.value for m in Message)}",
        )
    return message


def validate(element: etree._Element, against: etree.XMLSchema) -> None:
    """`invalid` with the first schema error (path and rule), when `element` breaks the schema."""
    if against.validate(element):
        return
    entry: Any = cast(Any, against.error_log).last_error  # lxml-stubs leave the log untyped
    raise XmlRefused(
        XmlRefusal.INVALID, f"{_readable_path(element, entry.path)}: {_quiet(entry.message)}"
    )


def _refuse_other_encodings(body: bytes) -> None:
    # ISO 20022 messages are UTF-8; refusing the rest also keeps the DOCTYPE check above honest
    # (in UTF-16 "<!DOCTYPE" is not those bytes).
    if body.startswith(_UTF16_32_BOMS) or body[:2] in (b"<\x00", b"\x00<"):
        raise XmlRefused(XmlRefusal.MALFORMED, "only UTF-8 documents are read")
    declared = _DECLARED_ENCODING.match(body[:200])
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        raise XmlRefused(XmlRefusal.MALFORMED, "only UTF-8 documents are read")


_NAMESPACE = re.compile(r"\{(?:urn|https?):[^}]*\}")
# libxml2 quotes the offending value in these phrases (values may hold quotes themselves: the
# match runs to the phrase's last words). Element and attribute names are kept.
_VALUES = (
    (re.compile(r"The value '.*' (is|has) ", re.S), r"The value \1 "),
    (re.compile(r"': '.*' is not a valid value of ", re.S), "': the value is not valid for "),
)


def _quiet(message: str) -> str:
    """A parser or schema message without the document's values and without namespaces."""
    message = _NAMESPACE.sub("", message)
    for value, replacement in _VALUES:
        message = value.sub(replacement, message)
    return message.strip()


def _readable_path(element: etree._Element, path: str | None) -> str:
    """`/Document/FIToFIPmtCxlReq/Undrlyg/TxInf[2]/CxlId` for libxml2's `/*/*/*[4]/*[2]/*`.

    libxml2 validates a subtree as a document of its own: its paths start at `element`."""
    if not path:
        return _path_of(element)
    tree = etree.ElementTree(copy.deepcopy(element))
    try:
        found = tree.xpath(path)
    except etree.XPathError:
        return path
    if not isinstance(found, list) or not found or not isinstance(found[0], etree._Element):
        return path
    inside = _path_of(found[0])  # starts with element's own name
    parent = element.getparent()
    return (_path_of(parent) if parent is not None else "") + inside


def _path_of(node: etree._Element | None) -> str:
    parts: list[str] = []
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        parts.append(name)
        node = parent
    return "/" + "/".join(reversed(parts))
