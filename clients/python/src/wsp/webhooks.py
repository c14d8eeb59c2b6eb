"""Checking a lifecycle webhook delivery on the receiving side (Standard Webhooks 1.0 signatures).

>>> event = wsp.verify_webhook(secret, request.headers, request.body)   # raises ValueError if forged
>>> if event["id"] not in seen: handle(event)                           # at least once: de-duplicate
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Dict, Mapping, Optional, Union

__all__ = ["verify_webhook"]


def _key(secret: str) -> bytes:
    # `whsec_<base64>` is read as Standard Webhooks libraries read it; any other secret is its UTF-8 bytes.
    return base64.b64decode(secret[len("whsec_") :]) if secret.startswith("whsec_") else secret.encode()


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: Union[bytes, str],
    *,
    tolerance: float = 300.0,
    now: Optional[float] = None,
) -> Dict[str, Any]:
    """The delivered event (parsed body) once its signature and timestamp check out; ValueError otherwise.

    ``headers``: the request's (names in any case); ``body``: its raw bytes, unparsed — the signature
    covers them exactly. A timestamp more than ``tolerance`` seconds from now is refused (replays).
    The event's ``id`` (also ``webhook-id``) is the same on every retry: de-duplicate on it.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, timestamp, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not msg_id or not timestamp or not signatures or not timestamp.isdigit():
        raise ValueError("missing or malformed webhook-id / webhook-timestamp / webhook-signature")
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        raise ValueError("webhook timestamp outside the tolerance")
    raw = body if isinstance(body, bytes) else body.encode()
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split(" ")):
        raise ValueError("webhook signature does not match")
    return dict(json.loads(raw))
