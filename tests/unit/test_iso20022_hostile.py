"""Hostile XML: every document here is refused quickly with its reason, nothing is fetched or
expanded, and the refusal repeats none of the document's values."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stopper.adapters.institutions.iso20022 import (
    MAX_DOCUMENT_BYTES,
    Message,
    message_of,
    parse_document,
)
from stopper.errors import XmlRefusal, XmlRefused

EXAMPLES = Path(__file__).parents[1] / "data" / "iso20022"
RECALL = (EXAMPLES / "camt.056.001.08_fraud-recall.xml").read_bytes()
NS = Message.CAMT_056.namespace


class Listener:
    """A TCP port that counts who connects to it (and answers nothing)."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self._socket.settimeout(0.05)
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


def refused(body: bytes) -> tuple[XmlRefused, float]:
    started = time.perf_counter()
    with pytest.raises(XmlRefused) as caught:
        parse_document(body)
    return caught.value, time.perf_counter() - started


def with_doctype(doctype: str, content: str = "&x;") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}\n'
        f'<Document xmlns="{NS}"><FIToFIPmtCxlReq>{content}</FIToFIPmtCxlReq></Document>'
    ).encode()


def test_an_external_file_entity_is_refused_and_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the-secret-content")
    error, took = refused(with_doctype(f'<!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]>'))

    assert error.reason is XmlRefusal.ENTITIES
    assert "the-secret-content" not in error.detail
    assert took < 0.5


def test_an_external_http_entity_is_refused_and_nothing_is_fetched(listener: Listener) -> None:
    url = f"http://127.0.0.1:{listener.port}/entity"
    error, took = refused(with_doctype(f'<!DOCTYPE d [<!ENTITY x SYSTEM "{url}">]>'))
    external_dtd, _ = refused(with_doctype(f'<!DOCTYPE d SYSTEM "{url}">', ""))
    parameter, _ = refused(with_doctype(f'<!DOCTYPE d [<!ENTITY % p SYSTEM "{url}"> %p;]>', ""))

    time.sleep(0.2)  # a connection, had one been made, has been accepted by now
    assert listener.connections == 0
    assert {error.reason, external_dtd.reason, parameter.reason} == {XmlRefusal.ENTITIES}
    assert took < 0.5


def test_a_schema_location_pointing_elsewhere_is_not_fetched(listener: Listener) -> None:
    url = f"http://127.0.0.1:{listener.port}/other.xsd"
    pointed = RECALL.replace(
        f'<Document xmlns="{NS}">'.encode(),
        f'<Document xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{NS} {url}">'.encode(),
    )

    parse_document(pointed)  # still the official schema that decides: valid

    time.sleep(0.2)
    assert listener.connections == 0


def test_billion_laughs_is_refused_before_anything_is_expanded() -> None:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    error, took = refused(with_doctype(f"<!DOCTYPE d [{entities}]>", "&lol9;"))

    assert error.reason is XmlRefusal.ENTITIES
    assert took < 0.5


def test_a_plain_doctype_is_refused() -> None:
    error, _ = refused(with_doctype("<!DOCTYPE Document>", ""))
    assert error.reason is XmlRefusal.ENTITIES


def test_an_entity_reference_without_a_declaration_is_malformed() -> None:
    body = f'<Document xmlns="{NS}"><FIToFIPmtCxlReq>&x;</FIToFIPmtCxlReq></Document>'.encode()
    error, _ = refused(body)
    assert error.reason is XmlRefusal.MALFORMED


def test_a_doctype_hidden_in_another_encoding_is_refused() -> None:
    hidden = with_doctype('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>').decode()
    utf16 = hidden.replace("UTF-8", "UTF-16").encode("utf-16")
    declared = hidden.replace("UTF-8", "ISO-8859-1").encode("latin-1")

    assert refused(utf16)[0].reason is XmlRefusal.MALFORMED
    assert refused(declared)[0].reason is XmlRefusal.MALFORMED


def test_a_50_mb_document_is_refused_unread() -> None:
    padding = b"<!--" + b"x" * (50 * 1024 * 1024) + b"-->"
    error, took = refused(RECALL.replace(b"<FIToFIPmtCxlReq>", b"<FIToFIPmtCxlReq>" + padding))

    assert error.reason is XmlRefusal.TOO_LARGE
    assert str(MAX_DOCUMENT_BYTES) in error.detail
    assert took < 0.5


def test_a_document_just_under_the_limit_is_read() -> None:
    padding = b"<!--" + b"x" * (MAX_DOCUMENT_BYTES - len(RECALL) - 100) + b"-->"
    body = RECALL.replace(b"<FIToFIPmtCxlReq>", b"<FIToFIPmtCxlReq>" + padding)
    assert len(body) < MAX_DOCUMENT_BYTES
    root = parse_document(body)
    assert message_of(root) is Message.CAMT_056


def test_deep_nesting_is_refused_quickly() -> None:
    depth = 100_000
    body = f'<Document xmlns="{NS}">'.encode() + b"<a>" * depth + b"</a>" * depth + b"</Document>"
    error, took = refused(body)

    assert error.reason is XmlRefusal.MALFORMED
    assert took < 1.0


@pytest.mark.parametrize(
    "namespace",
    [
        "urn:iso:std:iso:20022:tech:xsd:camt.056.001.07",  # an older version
        "urn:iso:std:iso:20022:tech:xsd:camt.056.001.12",  # a newer one
        "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08",  # another message
        "",
    ],
)
def test_the_wrong_namespace_or_version_is_an_unknown_message(namespace: str) -> None:
    swapped = RECALL.replace(f'xmlns="{NS}"'.encode(), f'xmlns="{namespace}"'.encode())
    error, _ = refused(swapped)

    assert error.reason is XmlRefusal.UNKNOWN_MESSAGE
    assert "camt.056.001.08" in error.detail  # says what it reads


def test_a_root_that_is_not_a_document_is_an_unknown_message() -> None:
    error, _ = refused(f'<Other xmlns="{NS}"/>'.encode())
    assert error.reason is XmlRefusal.UNKNOWN_MESSAGE


@pytest.mark.parametrize(
    "body",
    [b"", b"not xml at all", b"<Document", RECALL[: len(RECALL) // 2], b"\xff\xfe\x00<"],
)
def test_malformed_xml_is_refused(body: bytes) -> None:
    assert refused(body)[0].reason is XmlRefusal.MALFORMED


def test_a_schema_error_names_the_element_and_rule_but_no_value() -> None:
    bad_reason = RECALL.replace(b"<Cd>FRAD</Cd>", b"<Cd>FRAUDULENT</Cd>")
    error, _ = refused(bad_reason)

    assert error.reason is XmlRefusal.INVALID
    assert "/Document/FIToFIPmtCxlReq/Undrlyg/TxInf/CxlRsnInf/Rsn/Cd" in error.detail
    assert "FRAUDULENT" not in error.detail
    assert "urn:iso" not in error.detail  # namespaces left out: the path says enough


def test_a_missing_element_is_named() -> None:
    error, _ = refused(RECALL.replace(b"<CreDtTm>2025-06-01T10:15:00Z</CreDtTm>", b""))

    assert error.reason is XmlRefusal.INVALID
    assert "Assgnmt" in error.detail and "CreDtTm" in error.detail


def test_an_account_number_in_a_bad_uetr_does_not_leak() -> None:
    leaky = RECALL.replace(b"8a562c67-ca16-48ba-b074-65581be6f011", b"6222111122223333")
    error, _ = refused(leaky)

    assert error.reason is XmlRefusal.INVALID
    assert "6222111122223333" not in error.detail


ANSWER = (EXAMPLES / "camt.029.001.09_rejected-AC04.xml").read_bytes()


@pytest.mark.parametrize(
    ("document", "old", "new"),
    [
        (RECALL, b">4550.00<", b">S3CR3T's 4550<"),  # not a decimal
        (RECALL, b">4550.00<", b">4550.123456<"),  # too many decimals (the value itself)
        (RECALL, b'Ccy="EUR"', b'Ccy="S3CR3T\'s"'),  # an attribute's pattern
        (RECALL, b"<NbOfTxs>1</NbOfTxs>", b"<NbOfTxs>S3CR3T</NbOfTxs>"),  # a pattern
        (RECALL, b">2025-06-01</OrgnlIntrBkSttlmDt>", b">S3CR3T</OrgnlIntrBkSttlmDt>"),  # a date
        (ANSWER, b"<TxCxlSts>RJCR</TxCxlSts>", b"<TxCxlSts>S3CR</TxCxlSts>"),  # an enumeration
    ],
)
def test_no_schema_message_repeats_the_value(document: bytes, old: bytes, new: bytes) -> None:
    error, _ = refused(document.replace(old, new, 1))

    assert error.reason is XmlRefusal.INVALID
    assert "S3CR" not in error.detail and "4550.123456" not in error.detail
    assert error.detail.startswith("/Document/")
