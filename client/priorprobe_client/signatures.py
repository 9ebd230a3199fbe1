"""Webhook signatures: ``PriorProbe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``.

The server signs with ``sign``; a receiver checks with ``verify`` (same code, so both agree on the
format). The timestamp is inside the MAC, so a captured delivery cannot be replayed later than
``tolerance_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "PriorProbe-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """Whether ``header`` is a valid signature of ``body`` made within ``tolerance_s`` of ``now``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")
