"""What the measured processes hold: the client a user's script builds, the Function's secrets, a Lambda context.

Only the standard library is imported at module level: cold-start children import this module
before anything is timed, so it must not load the SDK for them.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cognite.client import CogniteClient


def user_client() -> CogniteClient:
    """The client a user's script builds: client credentials from the Toolkit variables, SDK defaults."""
    from cognite.client import ClientConfig, CogniteClient, global_config
    from cognite.client.credentials import OAuthClientCredentials

    global_config.disable_pypi_version_check = True  # no network but loopback
    return CogniteClient(
        ClientConfig(
            client_name="bench-user-script",
            project=os.environ["CDF_PROJECT"],
            base_url=os.environ["CDF_URL"],
            credentials=OAuthClientCredentials(
                token_url=os.environ["IDP_TOKEN_URL"],
                client_id=os.environ["IDP_CLIENT_ID"],
                client_secret=os.environ["IDP_CLIENT_SECRET"],
                scopes=os.environ["IDP_SCOPES"].split(),
            ),
        )
    )


def function_secrets() -> dict[str, str]:
    """The Cognite Function's secrets: client credentials for the retry sessions."""
    return {"client-id": os.environ["IDP_CLIENT_ID"], "client-secret": os.environ["IDP_CLIENT_SECRET"]}


class BenchLambdaContext:
    """The attributes of AWS's Lambda context object that handlers and Powertools read."""

    function_name = "workflow-retry-bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:workflow-retry-bench"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/workflow-retry-bench"
    log_stream_name = "bench"

    def __init__(self, timeout_seconds: float = 300.0) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """What the bench needs of a ``handle`` result: counts, IDs that come back, whether the cap held.

    ``transient``: IDs that failed retryably (a queue delivers them again soon); ``deferred``: IDs
    told to come back after a wait (cooling down, or a retry request of theirs still in its window).
    """
    results = result.get("results") or []
    transient = [r["executionId"] for r in results if (r.get("error") or {}).get("retryable") is True]
    deferred = {r["executionId"]: r.get("reason") for r in results if r.get("outcome") == "deferred"}
    return {
        "counts": {k: v for k, v in (result.get("counts") or {}).items() if v},
        "transient": transient,
        "deferred": deferred,
        "cap_enforced": all(r.get("capEnforced", True) for r in results),
        "sweep": result.get("sweep"),
        "sample_reason": results[0].get("reason") if results else None,
    }
