"""How institutions sign callbacks: HMAC-SHA256 over the timestamp, the nonce and the body.

X-Stopper-Timestamp: <unix seconds>
X-Stopper-Nonce:     <unique per callback, 8-64 characters>
X-Stopper-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<nonce>." + body)>
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Stopper-Timestamp"
NONCE_HEADER = "X-Stopper-Nonce"
SIGNATURE_HEADER = "X-Stopper-Signature"


def sign(secret: str, timestamp: int, nonce: str, body: bytes) -> str:
    message = f"{timestamp}.{nonce}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_matches(secret: str, timestamp: int, nonce: str, body: bytes, given: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, nonce, body), given)


def signed_headers(secret: str, timestamp: int, nonce: str, body: bytes) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(secret, timestamp, nonce, body),
        "content-type": "application/json",
    }
