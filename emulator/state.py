"""The emulated project: identities and one store per API resource, and the endpoints that span them.

Each resource lives in its own module, the way CDF's API reference is laid out:
:mod:`emulator.workflows` (workflow versions), :mod:`emulator.executions` (workflow executions),
:mod:`emulator.sessions`, :mod:`emulator.raw` and :mod:`emulator.extpipes` (extraction pipelines);
identities and capabilities are in :mod:`emulator.auth`.  Nothing here knows about HTTP.  Not
thread-safe on its own: the server holds one lock around every call.
"""

from __future__ import annotations

import json

from emulator.auth import AuthRegistry
from emulator.common import Json, copy_json, optional_str, reject_unknown, validate_metadata
from emulator.errors import bad_request
from emulator.executions import ExecutionStore
from emulator.extpipes import ExtractionPipelineStore
from emulator.raw import RawStore
from emulator.sessions import SessionStore
from emulator.workflows import WorkflowVersionStore, check_identifier

MAX_INPUT_BYTES = 100 * 1024
"""A run's input: "limited to 100KB in size" (API reference, "Run a workflow")."""
MAX_CANCEL_REASON = 500
"""A cancellation's reason: at most 500 characters (API reference, "Cancel a workflow execution")."""

__all__ = ["EmulatorState", "Json", "copy_json"]


class EmulatorState:
    """Everything the emulated project holds: identities, executions, sessions and RAW."""

    def __init__(self) -> None:
        self.auth = AuthRegistry()
        self.versions = WorkflowVersionStore()
        self.executions = ExecutionStore(self.versions)
        self.sessions = SessionStore()
        self.raw = RawStore()
        self.extpipes = ExtractionPipelineStore()

    def reset(self) -> None:
        """Clear executions, sessions and RAW, and restore the knobs; identities and tokens stay."""
        self.executions.clear()
        self.versions.clear()
        self.sessions.clear()
        self.raw.clear()
        self.extpipes.clear()

    # --- endpoint operations that span stores ---------------------------------------------------

    def retry(self, execution_id: str, body: Json) -> Json:
        """``POST /workflows/executions/{id}/retry``.

        Checks, in order: body shape (400), execution exists (404), nonce is valid and unused (400),
        status is retryable (400), room under the running limit (429, when one is set); then applies the
        retry and consumes the nonce. The real API's order is
        not documented; authenticating the request (the nonce) before looking at the state is assumed,
        so a repeated POST after a lost answer is refused for its used nonce.
        """
        reject_unknown(body, ("authentication",), "request body")
        nonce = self.sessions.nonce_of(body)
        execution = self.executions.require(execution_id)
        self.sessions.validate(nonce)
        self.executions.check_retryable(execution)
        self.executions.check_room_to_run()
        session = self.sessions.consume(nonce)
        return self.executions.apply_retry(execution, self.auth.client(session.client_id))

    def run(self, workflow_external_id: str, version: str, body: Json) -> Json:
        """``POST /workflows/{xid}/versions/{v}/run`` (answered 202 by the server).

        Checks, in order: body shape and identifiers (400), the workflow version exists (404), input
        at most 100 KB and metadata limits (400), the nonce (400), room under the running limit (429, when
        one is set); only then is the nonce used up.
        """
        reject_unknown(body, ("authentication", "input", "metadata"), "request body")
        check_identifier(workflow_external_id, "workflowExternalId")
        check_identifier(version, "version")
        nonce = self.sessions.nonce_of(body)
        self.versions.require(workflow_external_id, version)
        input = body.get("input")
        if input is not None and not isinstance(input, dict):
            raise bad_request("input must be a JSON object")
        if input is not None and len(json.dumps(input, separators=(",", ":")).encode()) > MAX_INPUT_BYTES:
            raise bad_request("input is limited to 100 KB")
        metadata = validate_metadata(body.get("metadata"))
        self.sessions.validate(nonce)
        self.executions.check_room_to_run()
        self.sessions.consume(nonce)
        return self.executions.run(workflow_external_id, version, dict(input or {}), metadata)

    def cancel(self, execution_id: str, body: Json) -> Json:
        """``POST /workflows/executions/{id}/cancel``: ``reason`` at most 500 characters."""
        reject_unknown(body, ("reason",), "request body")
        reason = optional_str(body, "reason", "request")
        if reason is not None and len(reason) > MAX_CANCEL_REASON:
            raise bad_request(f"reason must be at most {MAX_CANCEL_REASON} characters")
        return self.executions.cancel(self.executions.require(execution_id), reason)
