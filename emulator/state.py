"""The emulated project: identities and one store per API resource, and the endpoints that span them.

Each resource lives in its own module, the way CDF's API reference is laid out:
:mod:`emulator.executions` (workflow executions), :mod:`emulator.sessions` and :mod:`emulator.raw`;
identities and capabilities are in :mod:`emulator.auth`.  Nothing here knows about HTTP.  Not
thread-safe on its own: the server holds one lock around every call.
"""

from __future__ import annotations

from emulator.auth import AuthRegistry
from emulator.common import Json, copy_json, optional_str, reject_unknown, validate_metadata
from emulator.errors import bad_request
from emulator.executions import ExecutionStore
from emulator.raw import RawStore
from emulator.sessions import SessionStore
from emulator.workflows import WorkflowVersionStore

__all__ = ["EmulatorState", "Json", "copy_json"]


class EmulatorState:
    """Everything the emulated project holds: identities, executions, sessions and RAW."""

    def __init__(self) -> None:
        self.auth = AuthRegistry()
        self.versions = WorkflowVersionStore()
        self.executions = ExecutionStore(self.versions)
        self.sessions = SessionStore()
        self.raw = RawStore()

    def reset(self) -> None:
        """Clear executions, sessions and RAW, and restore the knobs; identities and tokens stay."""
        self.executions.clear()
        self.versions.clear()
        self.sessions.clear()
        self.raw.clear()

    # --- endpoint operations that span stores ---------------------------------------------------

    def retry(self, execution_id: str, body: Json) -> Json:
        """``POST /workflows/executions/{id}/retry``.

        Checks, in order: body shape (400), execution exists (404), nonce is valid and unused (400),
        status is retryable (400); then applies the retry and consumes the nonce. The real API's order is
        not documented; authenticating the request (the nonce) before looking at the state is assumed,
        so a repeated POST after a lost answer is refused for its used nonce.
        """
        reject_unknown(body, ("authentication",), "request body")
        nonce = self.sessions.nonce_of(body)
        execution = self.executions.require(execution_id)
        self.sessions.validate(nonce)
        self.executions.check_retryable(execution)
        session = self.sessions.consume(nonce)
        return self.executions.apply_retry(execution, self.auth.client(session.client_id))

    def run(self, workflow_external_id: str, version: str, body: Json) -> Json:
        """``POST /workflows/{xid}/versions/{v}/run``."""
        reject_unknown(body, ("authentication", "input", "metadata"), "request body")
        nonce = self.sessions.nonce_of(body)
        input = body.get("input")
        if input is not None and not isinstance(input, dict):
            raise bad_request("input must be a JSON object")
        metadata = validate_metadata(body.get("metadata"))
        self.sessions.consume(nonce)
        return self.executions.run(workflow_external_id, version, dict(input or {}), metadata)

    def cancel(self, execution_id: str, body: Json) -> Json:
        """``POST /workflows/executions/{id}/cancel``."""
        reject_unknown(body, ("reason",), "request body")
        reason = optional_str(body, "reason", "request")
        return self.executions.cancel(self.executions.require(execution_id), reason)
