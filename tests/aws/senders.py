"""What a Standard Webhooks sender does: make a secret, sign a body (helpers of the tests)."""

from __future__ import annotations

import base64
import json
import secrets
import time

from tests.conftest import register_secret
from workflow_retry.aws.webhooks import WebhookSecret


def new_webhook_secret() -> str:
    """A fresh ``whsec_...`` secret, known to the suite-wide secret scan."""
    value = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    register_secret(value)
    return value


def signed(
    payload: object, secret: str, *, webhook_id: str | None = None, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body (a payload as JSON, or bytes as given) and the headers a sender posts with it."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    webhook_id = webhook_id or f"msg_{secrets.token_hex(8)}"
    when = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "Webhook-Id": webhook_id,
        "Webhook-Timestamp": str(when),
        "Webhook-Signature": WebhookSecret.parse(secret).sign(webhook_id, when, body),
    }
    return body, headers
