"""The HTTP side of the CDF emulator: a real server on loopback that the real cognite-sdk talks to.

:class:`CdfEmulator` runs a ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive) in a daemon thread, routes
``/oauth2/token``, ``/api/v1/token/inspect`` and ``/api/v1/projects/{project}/...`` to the state in
:mod:`emulator.state` (one module per API resource), records every request, and applies the injected
:class:`~emulator.faults.Fault`s and latency.  One lock guards all state; sleeps for latency happen outside it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import itemgetter
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote

from emulator.auth import (
    DEFAULT_CAPABILITIES,
    EXTPIPES_READ,
    EXTPIPES_WRITE,
    EXTRACTION_RUNS_READ,
    EXTRACTION_RUNS_WRITE,
    RAW_READ,
    RAW_WRITE,
    SESSIONS_CREATE,
    WORKFLOW_READ,
    WORKFLOW_WRITE,
    Client,
)
from emulator.errors import ApiError, error_body
from emulator.faults import DROP, Fault, FaultAction
from emulator.ratelimit import RateLimit, RateLimiter
from emulator.state import EmulatorState, Json, copy_json
from emulator.workflows import default_task_input

logger = logging.getLogger(__name__)

_PROJECTS_PREFIX = "/api/v1/projects/"
_TOKEN_PATH = "/oauth2/token"
_INSPECT_PATH = "/api/v1/token/inspect"
_PROJECT_PATH_RE = re.compile(r"^/api/v1/projects/[^/]*")

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received, as the test sees it afterwards.

    ``path`` is exactly as received (no query string, not URL-decoded); ``body`` is the parsed JSON
    (after gunzip), the form dict for the token endpoint, the raw text when it was not valid JSON,
    or None when empty; ``status`` is what was answered (0 when the connection was dropped); ``time``
    is ``time.monotonic()`` when the request arrived; ``client_id`` is the authenticated caller, if any.
    """

    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int
    time: float
    client_id: str | None = None


@dataclass
class _Ctx:
    """What a route handler gets: the authenticated client, path parameters, query and JSON body."""

    client: Client
    params: list[str]
    query: dict[str, list[str]]
    body: Json
    from_session: bool = False
    """Whether the caller's bearer token was issued for a session (chained sessions are refused)."""


@dataclass
class _Answer:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)
    client_id: str | None = None
    reset: bool = False


_Handler = Callable[[EmulatorState, _Ctx], tuple[int, Json]]


@dataclass(frozen=True)
class _Route:
    pattern: tuple[str | None, ...]  # literal segment, or None for a parameter
    method: str
    capability: str
    handler: _Handler

    def match(self, segments: list[str]) -> list[str] | None:
        if len(segments) != len(self.pattern):
            return None
        params = []
        for want, got in zip(self.pattern, segments, strict=True):
            if want is None:
                params.append(got)
            elif want != got:
                return None
        return params


def _routes() -> list[_Route]:
    """The project-scoped endpoints: literal routes first so ``.../delete`` wins over a name."""
    ex, raw = "executions", "raw"

    def r(pattern: tuple[str | None, ...], method: str, capability: str, handler: _Handler) -> _Route:
        return _Route(pattern, method, capability, handler)

    return [
        r(
            ("sessions",),
            "POST",
            SESSIONS_CREATE,
            lambda s, c: (200, s.sessions.create(c.body, c.client, s.auth, from_session=c.from_session)),
        ),
        r(("workflows", "versions"), "POST", WORKFLOW_WRITE, lambda s, c: (200, s.versions.upsert(c.body))),
        r(("workflows", "versions", "byids"), "POST", WORKFLOW_READ, lambda s, c: (200, s.versions.by_ids(c.body))),
        r(("workflows", "versions", "list"), "POST", WORKFLOW_READ, lambda s, c: (200, s.versions.list_page(c.body))),
        r(
            ("workflows", None, "versions", None),
            "GET",
            WORKFLOW_READ,
            lambda s, c: (200, s.versions.retrieve(c.params[0], c.params[1])),
        ),
        r(("workflows", ex, "list"), "POST", WORKFLOW_READ, lambda s, c: (200, s.executions.list_page(c.body))),
        r(
            ("workflows", ex, None),
            "GET",
            WORKFLOW_READ,
            lambda s, c: (200, s.executions.require(c.params[0]).detailed_json()),
        ),
        r(("workflows", ex, None, "retry"), "POST", WORKFLOW_WRITE, lambda s, c: (200, s.retry(c.params[0], c.body))),
        r(
            ("workflows", ex, None, "cancel"),
            "POST",
            WORKFLOW_WRITE,
            lambda s, c: (200, s.cancel(c.params[0], c.body)),
        ),
        r(
            ("workflows", None, "versions", None, "run"),
            "POST",
            WORKFLOW_WRITE,
            lambda s, c: (202, s.run(c.params[0], c.params[1], c.body)),
        ),
        r(("extpipes",), "POST", EXTPIPES_WRITE, lambda s, c: (201, s.extpipes.create(c.body))),
        r(("extpipes", "byids"), "POST", EXTPIPES_READ, lambda s, c: (200, s.extpipes.by_ids(c.body))),
        r(("extpipes", "runs"), "POST", EXTRACTION_RUNS_WRITE, lambda s, c: (201, s.extpipes.create_runs(c.body))),
        r(("extpipes", "runs"), "GET", EXTRACTION_RUNS_READ, lambda s, c: (200, s.extpipes.list_runs_get(c.query))),
        r(("extpipes", "runs", "list"), "POST", EXTRACTION_RUNS_READ, lambda s, c: (200, s.extpipes.list_runs(c.body))),
        r((raw, "dbs"), "GET", RAW_READ, lambda s, c: (200, s.raw.list_dbs(c.query))),
        r((raw, "dbs"), "POST", RAW_WRITE, lambda s, c: (201, s.raw.create_dbs(c.body))),
        r((raw, "dbs", "delete"), "POST", RAW_WRITE, lambda s, c: (200, s.raw.delete_dbs(c.body))),
        r(
            (raw, "dbs", None, "tables", "delete"),
            "POST",
            RAW_WRITE,
            lambda s, c: (200, s.raw.delete_tables(c.params[0], c.body)),
        ),
        r((raw, "dbs", None, "tables"), "GET", RAW_READ, lambda s, c: (200, s.raw.list_tables(c.params[0], c.query))),
        r(
            (raw, "dbs", None, "tables"),
            "POST",
            RAW_WRITE,
            lambda s, c: (201, s.raw.create_tables(c.params[0], c.body, c.query)),
        ),
        r(
            (raw, "dbs", None, "tables", None, "rows", "delete"),
            "POST",
            RAW_WRITE,
            lambda s, c: (200, s.raw.delete_rows(c.params[0], c.params[1], c.body)),
        ),
        r(
            (raw, "dbs", None, "tables", None, "rows"),
            "GET",
            RAW_READ,
            lambda s, c: (200, s.raw.list_rows(c.params[0], c.params[1], c.query)),
        ),
        r(
            (raw, "dbs", None, "tables", None, "rows"),
            "POST",
            RAW_WRITE,
            lambda s, c: (201, s.raw.insert_rows(c.params[0], c.params[1], c.body, c.query)),
        ),
        r(
            (raw, "dbs", None, "tables", None, "rows", None),
            "GET",
            RAW_READ,
            lambda s, c: (200, s.raw.retrieve_row(c.params[0], c.params[1], c.params[2])),
        ),
        r(
            (raw, "dbs", None, "tables", None, "cursors"),
            "GET",
            RAW_READ,
            lambda s, c: (200, s.raw.cursors(c.params[0], c.params[1], c.query)),
        ),
    ]


_ROUTES = _routes()


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its emulator and can cut its open keep-alive connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], emulator: CdfEmulator) -> None:
        self.emulator = emulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection error from %s", client_address, exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    """Reads one request, lets the emulator answer it, writes the answer (or drops the connection)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms delayed-ACK stalls
    server_version = "cdf-emulator"
    sys_version = ""
    timeout = 120
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(65537).split(b";", 1)[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        arrived = time.monotonic()
        try:
            data = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(400, error_body(400, "Invalid request framing"), {})
            return
        emulator = self.server.emulator
        emulator._enter_request()
        try:
            answer = emulator._serve(self.command, self.path, dict(self.headers.items()), data, arrived)
        except Exception:  # a bug in the emulator must still produce an answer, never a hung client
            logger.exception("emulator failed on %s %s", self.command, self.path.partition("?")[0])
            answer = _Answer(500, error_body(500, "Internal emulator error"))
        finally:
            emulator._leave_request()
        if answer.status == DROP:
            self.close_connection = True
            if answer.reset:
                # SO_LINGER 0: closing sends RST (the client sees "connection reset") instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            return
        self._write(answer.status, answer.payload, answer.headers)

    def _write(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status, _REASONS.get(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", uuid.uuid4().hex)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class CdfEmulator:
    """A CDF API emulator for tests, the demo and benchmarks: see the package docstring.

    ``CdfEmulator(project=...)`` is not started; ``start()`` (or ``with CdfEmulator() as emu``) binds a
    free loopback port.  Knobs for one test: ``latency``, ``add_fault``, ``set_rate_limit``,
    ``auto_fail_after_retry``, ``enforce_task_capabilities``, ``max_running_executions``, ``unknown_execution_status``,
    ``nonce_ttl``; ``reset()`` puts them back.
    """

    def __init__(self, project: str = "test-project", *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.project = project
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._state = EmulatorState()
        self._faults: list[Fault] = []
        self._requests: list[tuple[int, RecordedRequest]] = []
        self._request_seq = 0
        self._generation = 0
        """Counts resets: a request that arrived before the last one is answered without touching the
        state or the records of whatever runs after it (a slow request of an earlier test)."""
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.latency: float = 0.0
        """Seconds added to every request (slept in the handler thread, outside the lock)."""
        self._rate_limiter: RateLimiter | None = None
        self._in_flight = 0
        self.max_in_flight = 0
        """The most requests being answered at the same time since the last reset (shows concurrency)."""

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> CdfEmulator:
        """Bind the port and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _HTTPServer((self._host, self._port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="cdf-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port and every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CdfEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after ``start()``)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``ClientConfig(base_url=...)``."""
        return f"http://{self._host}:{self.port}"

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint, for ``OAuthClientCredentials(token_url=...)``."""
        return f"{self.base_url}{_TOKEN_PATH}"

    # --- identities -----------------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
        scopes: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Register a client (service principal) with capabilities like ``"sessionsACL:CREATE"``.

        ``scopes`` maps an ACL to its scope in CDF's shape (``{"rawAcl": {"tableScope": {...}}}``);
        the default is ``{"all": {}}``.  Scopes show in ``/token/inspect`` and are not enforced.
        """
        with self._lock:
            self._state.auth.add_client(client_id, client_secret, capabilities, scopes)

    def grant_capabilities(self, client_id: str, capabilities: Iterable[str]) -> None:
        """Give a registered client more capabilities; tokens and sessions already issued see them."""
        with self._lock:
            self._state.auth.grant(client_id, capabilities)

    def revoke_capabilities(self, client_id: str, capabilities: Iterable[str]) -> None:
        """Take capabilities (either ACL spelling) from a registered client, effective at once."""
        with self._lock:
            self._state.auth.revoke(client_id, capabilities)

    def set_capability_scope(self, client_id: str, acl: str, scope: dict[str, Any] | None) -> None:
        """Set the scope of one ACL of a client (``{"datasetScope": {"ids": [1]}}``; None = all)."""
        with self._lock:
            self._state.auth.set_scope(client_id, acl, scope)

    def issue_token(self, client_id: str) -> str:
        """A valid bearer token for a registered client, without the OAuth round trip."""
        with self._lock:
            return self._state.auth.issue_token(client_id)

    def issue_session_token(self, client_id: str) -> str:
        """A bearer token issued *for a session* of a registered client: what a Cognite Function started
        by a workflow or a schedule holds.  It works for every endpoint, but cannot create a
        token-exchange session (403, chained sessions are limited to one level); client-credentials
        sessions made with it still work."""
        with self._lock:
            return self._state.auth.issue_token(client_id, for_session=True)

    @property
    def issued_tokens(self) -> list[str]:
        """Every access token ever issued (for leak scans)."""
        with self._lock:
            return list(self._state.auth.issued_tokens)

    @property
    def issued_nonces(self) -> list[str]:
        """Every session nonce ever issued (for leak scans)."""
        with self._lock:
            return list(self._state.sessions.issued_nonces)

    # --- executions -----------------------------------------------------------------------------

    def seed_execution(
        self,
        workflow_external_id: str = "wf",
        version: str = "1",
        status: str = "FAILED",
        *,
        tasks: list[dict[str, Any]] | None = None,
        reason: str | None = "task failed",
        created_time: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        metadata: dict[str, str] | None = None,
        execution_id: str | None = None,
        input: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add an execution and return its detailed JSON, as ``GET /workflows/executions/{id}`` would.

        ``tasks``: executed-task specs, each a dict with ``externalId`` (default ``task-N``), ``status``
        (default COMPLETED), and optionally ``taskType`` (default "function"), ``onFailure``
        ("skipTask" makes the task optional), ``dependsOn`` (list of external ids), ``input``,
        ``output``, ``reasonForIncompletion``, ``startTime``, ``endTime``, ``parentTaskExternalId``.
        Without ``tasks``: ``task-1`` COMPLETED and ``task-2`` in the status matching the execution.
        """
        with self._lock:
            execution = self._state.executions.seed(
                workflow_external_id,
                version,
                status,
                tasks=tasks,
                reason=reason,
                created_time=created_time,
                start_time=start_time,
                end_time=end_time,
                metadata=metadata,
                execution_id=execution_id,
                input=input,
            )
            return execution.detailed_json()

    def seed_many(self, n: int, **kwargs: Any) -> list[str]:
        """Add ``n`` executions quickly (one index sort); same keyword arguments as ``seed_execution``
        except ``execution_id``.  Without ``created_time`` they are 1 ms apart, the last one created a
        minute ago and ended now."""
        with self._lock:
            return self._state.executions.seed_many(n, **kwargs)

    def add_workflow_version(
        self, workflow_external_id: str, version: str, tasks: list[dict[str, Any]], description: str = ""
    ) -> dict[str, Any]:
        """Create or replace a workflow version, as ``POST /workflows/versions`` would; returns its JSON.

        ``tasks`` in the API's shape: ``externalId``, ``type`` (function, transformation, cdf,
        simulation, subworkflow, dynamic) and optionally ``parameters`` (default: valid ones for the
        type), ``retries``, ``timeout``, ``onFailure``, ``dependsOn`` (``[{"externalId": ...}]``).
        Executions seeded afterwards without ``tasks`` run this definition.
        """
        filled = []
        for task in tasks:
            full = dict(task)
            if "parameters" not in full and isinstance(full.get("type"), str):
                full["parameters"] = default_task_input(full["type"], str(full.get("externalId")))
            filled.append(full)
        body = {
            "items": [
                {
                    "workflowExternalId": workflow_external_id,
                    "version": version,
                    "workflowDefinition": {"description": description, "tasks": filled},
                }
            ]
        }
        with self._lock:
            try:
                items: list[dict[str, Any]] = self._state.versions.upsert(body)["items"]
            except ApiError as e:
                raise ValueError(e.message) from None
            return items[0]

    def get_workflow_version(self, workflow_external_id: str, version: str) -> dict[str, Any] | None:
        """The workflow version's JSON (a copy), or None."""
        with self._lock:
            entry = self._state.versions.get(workflow_external_id, version)
            return None if entry is None else entry.to_json()

    @property
    def enforce_task_capabilities(self) -> bool:
        """When True, a retried task whose type needs a capability that the retry session's principal
        lacks (``functionsAcl:RUN`` for a function task, ...; see ``emulator.workflows.TASK_CAPABILITIES``)
        fails again at once, its ``reasonForIncompletion`` naming the capability.  Off by default."""
        return self._state.executions.enforce_task_capabilities

    @enforce_task_capabilities.setter
    def enforce_task_capabilities(self, value: bool) -> None:
        with self._lock:
            self._state.executions.enforce_task_capabilities = value

    def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        """The detailed execution JSON (a copy), or None."""
        with self._lock:
            execution = self._state.executions.get(execution_id)
            return None if execution is None else execution.detailed_json()

    def _execution(self, execution_id: str) -> Any:
        execution = self._state.executions.get(execution_id)
        if execution is None:
            raise KeyError(f"unknown execution {execution_id}")
        return execution

    def fail_execution(
        self,
        execution_id: str,
        reason: str = "task failed",
        task_status: str = "FAILED",
        engine_execution_id: str | None = None,
    ) -> None:
        """Make a RUNNING execution FAILED again; its unfinished tasks get ``task_status``.

        ``engine_execution_id``: the engine run that failed had this ID (CDF does not document whether a
        retry starts a run with a new one; the emulator keeps the ID unless a test sets it here).
        """
        with self._lock:
            execution = self._execution(execution_id)
            self._state.executions.fail(execution, reason, task_status)
            if engine_execution_id is not None:
                execution.engine_execution_id = engine_execution_id

    def leave_out_version(self, execution_id: str) -> None:
        """Answer the execution without its ``version`` from now on, as CDF may: the SDK reads it as optional."""
        with self._lock:
            self._execution(execution_id).answers_version = False

    def complete_execution(self, execution_id: str) -> None:
        """Make an execution COMPLETED (all unfinished tasks complete)."""
        with self._lock:
            self._state.executions.complete(self._execution(execution_id))

    def retry_count(self, execution_id: str) -> int:
        """How many retries were applied (state changed) to the execution."""
        with self._lock:
            return int(self._execution(execution_id).retries)

    @property
    def execution_count(self) -> int:
        """How many executions the project holds."""
        with self._lock:
            return len(self._state.executions)

    @property
    def auto_fail_after_retry(self) -> bool:
        """When True, an applied retry answers RUNNING but leaves the execution FAILED right after."""
        return self._state.executions.auto_fail_after_retry

    @auto_fail_after_retry.setter
    def auto_fail_after_retry(self, value: bool) -> None:
        with self._lock:
            self._state.executions.auto_fail_after_retry = value

    @property
    def running_count(self) -> int:
        """How many executions are RUNNING now."""
        with self._lock:
            return self._state.executions.running_count()

    @property
    def max_running_executions(self) -> int | None:
        """At most this many executions RUNNING at once: a retry or run past it is answered 429 (None: no
        limit, the default; CDF's is 50 per project). See ``ExecutionStore.check_room_to_run``."""
        return self._state.executions.max_running

    @max_running_executions.setter
    def max_running_executions(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError("max_running_executions must be at least 1")
        with self._lock:
            self._state.executions.max_running = value

    @property
    def unknown_execution_status(self) -> int:
        """Status answered for an unknown execution id (404, or 400 as the real API has been seen to)."""
        return self._state.executions.unknown_execution_status

    @unknown_execution_status.setter
    def unknown_execution_status(self, value: int) -> None:
        with self._lock:
            self._state.executions.unknown_execution_status = value

    @property
    def nonce_ttl(self) -> float:
        """Seconds a session nonce stays valid (60 by default)."""
        return self._state.sessions.nonce_ttl

    @nonce_ttl.setter
    def nonce_ttl(self, value: float) -> None:
        with self._lock:
            self._state.sessions.nonce_ttl = value

    # --- extraction pipelines -------------------------------------------------------------------

    def add_extraction_pipeline(
        self, external_id: str, name: str | None = None, data_set_id: int = 1, **fields: Any
    ) -> dict[str, Any]:
        """Create an extraction pipeline, as ``POST /extpipes`` would (``fields`` in the API's camelCase:
        ``schedule``, ``contacts``, ``notificationConfig``, ...); returns its JSON."""
        item = {"externalId": external_id, "name": name or external_id, "dataSetId": data_set_id, **fields}
        with self._lock:
            try:
                items: list[dict[str, Any]] = self._state.extpipes.create({"items": [item]})["items"]
            except ApiError as e:
                raise ValueError(e.message) from None
            return items[0]

    def extraction_pipeline_runs(self, external_id: str) -> list[dict[str, Any]]:
        """The runs reported for a pipeline, oldest first (copies); KeyError for an unknown pipeline."""
        with self._lock:
            pipeline = self._state.extpipes.by_xid.get(external_id)
            if pipeline is None:
                raise KeyError(f"unknown extraction pipeline {external_id!r}")
            return [copy_json(run) for run in pipeline.runs]

    # --- RAW inspection -------------------------------------------------------------------------

    def raw_rows(self, db_name: str, table_name: str) -> dict[str, dict[str, Any]]:
        """The columns of every row of a RAW table by key (a copy; empty when the table does not exist)."""
        with self._lock:
            db = self._state.raw.dbs.get(db_name)
            table = None if db is None else db.tables.get(table_name)
            if table is None:
                return {}
            return {key: copy_json(row.columns) for key, row in table.rows.items()}

    def seed_raw_rows(self, db_name: str, table_name: str, rows: dict[str, dict[str, Any]]) -> None:
        """Write rows (columns by key) as ``POST .../rows?ensureParent=true`` would, without a request."""
        items = [{"key": key, "columns": columns} for key, columns in rows.items()]
        with self._lock:
            for start in range(0, len(items), 10_000):
                body = {"items": items[start : start + 10_000]}
                self._state.raw.insert_rows(db_name, table_name, body, {"ensureParent": ["true"]})

    def age_raw_rows(self, db_name: str, table_name: str, by_ms: int) -> None:
        """Move every row's ``lastUpdatedTime`` back by ``by_ms``, as if RAW had written them that long ago."""
        with self._lock:
            for row in self._state.raw.dbs[db_name].tables[table_name].rows.values():
                row.last_updated_time -= by_ms

    # --- recording ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order of arrival (a snapshot)."""
        with self._lock:
            entries = list(self._requests)
        entries.sort(key=itemgetter(0))
        return [rec for _, rec in entries]

    def requests_matching(self, method: str | None = None, path_regex: str | None = None) -> list[RecordedRequest]:
        """Recorded requests with this method (None = any) whose full path ``re.search``-matches."""
        pattern = re.compile(path_regex) if path_regex is not None else None
        return [
            rec
            for rec in self.requests
            if (method is None or rec.method == method.upper())
            and (pattern is None or pattern.search(rec.path) is not None)
        ]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Clear executions, sessions, RAW, requests, faults, the rate limit and latency; keep clients and
        their tokens.

        Requests still in flight (sleeping their latency) are then dropped unapplied and unrecorded.
        """
        with self._lock:
            self._generation += 1
            self._state.reset()
            self._requests.clear()
            self._faults.clear()
            self._rate_limiter = None
            self.latency = 0.0
            self.max_in_flight = 0

    def _enter_request(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave_request(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # --- faults ---------------------------------------------------------------------------------

    def set_rate_limit(
        self,
        requests_per_second: float | None = None,
        *,
        burst: int | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        """Throttle the project's API like CDF under load: more than ``requests_per_second`` (a bucket of
        ``burst``, default one second's worth) or more than ``max_concurrent`` requests at once get a
        429 with ``Retry-After``.  Off by default; call with no limits (or ``reset()``) to switch it
        off.  See :mod:`emulator.ratelimit`."""
        limit = RateLimit(requests_per_second, burst, max_concurrent)
        with self._lock:
            off = requests_per_second is None and max_concurrent is None
            self._rate_limiter = None if off else RateLimiter(limit)

    @property
    def rate_limited_in_flight(self) -> int:
        """Requests admitted by the rate limit and still being answered (0 without a limit)."""
        with self._lock:
            return 0 if self._rate_limiter is None else self._rate_limiter.active

    @property
    def throttled_count(self) -> int:
        """How many requests the rate limit answered 429 since it was set."""
        with self._lock:
            return 0 if self._rate_limiter is None else self._rate_limiter.throttled

    def add_fault(self, fault: Fault) -> Fault:
        """Activate a fault (after the ones already active); returns it, to inspect ``applied`` later."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Deactivate every fault."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> FaultAction | None:
        for fault in self._faults:
            if fault.matches(method, path):
                action = fault.take()
                if action is not None:
                    return action
        return None

    # --- serving (called from handler threads) --------------------------------------------------

    def _serve(self, method: str, raw_path: str, raw_headers: dict[str, str], data: bytes, arrived: float) -> _Answer:
        """Answer one request: faults and latency, then routing; records it before it is answered."""
        path, _, query_string = raw_path.partition("?")
        query = parse_qs(query_string, keep_blank_values=True)
        headers = {k.lower(): v for k, v in raw_headers.items()}
        body, body_error = self._parse_body(path, headers, data)
        fault_path = _PROJECT_PATH_RE.sub("", path, count=1) if path.startswith(_PROJECTS_PREFIX) else path
        limiter: RateLimiter | None = None
        throttled: float | None = None
        with self._lock:
            self._request_seq += 1
            seq = self._request_seq
            generation = self._generation
            if self._rate_limiter is not None and path.startswith(_PROJECTS_PREFIX):
                throttled = self._rate_limiter.admit(time.monotonic())
                limiter = self._rate_limiter if throttled is None else None
            action = self._take_fault(method, fault_path) if throttled is None else None
        try:
            return self._serve_admitted(
                method, raw_path, path, query, headers, body, body_error, arrived, seq, generation, action, throttled
            )
        finally:
            if limiter is not None:
                with self._lock:
                    limiter.release()

    def _serve_admitted(
        self,
        method: str,
        raw_path: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        body_error: str | None,
        arrived: float,
        seq: int,
        generation: int,
        action: FaultAction | None,
        throttled: float | None,
    ) -> _Answer:
        delay = self.latency + (action.latency if action is not None else 0.0)
        if delay > 0:
            time.sleep(delay)

        answer: _Answer | None = None
        if throttled is not None:
            answer = _Answer(
                429,
                error_body(429, "Too many requests: the project's rate limit was exceeded"),
                {"Retry-After": f"{throttled:g}"},
            )
        elif action is None or not action.fails or action.apply_then_fail:
            try:
                with self._lock:
                    if generation != self._generation:
                        return _Answer(DROP, None)  # from before a reset: neither applied nor recorded
                    answer = self._dispatch(method, path, query, headers, body, body_error)
            except Exception:
                logger.exception("emulator failed on %s %s", method, path)
                answer = _Answer(500, error_body(500, "Internal emulator error"))
        if action is not None and action.fails and action.status is not None:
            client_id = answer.client_id if answer is not None else None
            answer = self._fault_answer(action.status, action.retry_after)
            answer.reset = action.reset
            answer.client_id = client_id
        assert answer is not None

        record = RecordedRequest(
            method=method,
            path=path,
            raw_path=raw_path,
            query=query,
            headers=headers,
            body=body,
            status=answer.status,
            time=arrived,
            client_id=answer.client_id,
        )
        with self._lock:
            if generation == self._generation:
                self._requests.append((seq, record))
        return answer

    @staticmethod
    def _fault_answer(status: int, retry_after: float | None) -> _Answer:
        if status == DROP:
            return _Answer(DROP, None)
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        message = _REASONS.get(status, "Injected fault")
        return _Answer(status, error_body(status, f"{message} (injected fault)"), headers)

    @staticmethod
    def _parse_body(path: str, headers: dict[str, str], data: bytes) -> tuple[Any, str | None]:
        """(parsed body, error message); gunzips, parses the token form or JSON."""
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate") and data:
            try:
                data = gzip.decompress(data) if encoding != "deflate" else zlib.decompress(data)
            except (OSError, EOFError, zlib.error):
                return None, f"Request body is not valid {encoding}"
        if not data:
            return None, None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None, "Request body is not valid UTF-8"
        if path == _TOKEN_PATH:
            return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}, None
        try:
            return json.loads(text), None
        except (ValueError, RecursionError) as e:
            return text, f"Malformed JSON in request body: {e}"

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        body_error: str | None,
    ) -> _Answer:
        """Route one request (lock held)."""
        state = self._state
        if path == _TOKEN_PATH:
            if method != "POST":
                return _Answer(405, error_body(405, f"Method {method} not allowed"))
            return self._token(body)
        client: Client | None = None
        try:
            if path == _INSPECT_PATH:
                if method != "GET":
                    raise ApiError(405, f"Method {method} not allowed")
                client = state.auth.authenticate(headers.get("authorization"))
                return _Answer(200, state.auth.inspect(client, self.project), client_id=client.client_id)
            if not path.startswith(_PROJECTS_PREFIX):
                raise ApiError(404, f"Path not found: {path}")
            project_segment, _, rest = path[len(_PROJECTS_PREFIX) :].partition("/")
            client = state.auth.authenticate(headers.get("authorization"))
            if unquote(project_segment) != self.project:
                raise ApiError(403, f"No access to project {unquote(project_segment)!r}")
            segments = [unquote(s) for s in rest.split("/")]
            candidates = [(route, params) for route in _ROUTES if (params := route.match(segments)) is not None]
            chosen = next(((r, p) for r, p in candidates if r.method == method), None)
            if chosen is None:
                if candidates:
                    raise ApiError(405, f"Method {method} not allowed on {path}")
                raise ApiError(404, f"Path not found: {path}")
            route, params = chosen
            state.auth.require(client, route.capability)
            if route.method == "GET":
                json_body: Json = {}
            else:
                if body_error is not None:
                    raise ApiError(400, body_error)
                if body is None:
                    body = {}
                if not isinstance(body, dict):
                    raise ApiError(400, "Request body must be a JSON object")
                json_body = body
            from_session = state.auth.is_session_token(headers.get("authorization"))
            status, payload = route.handler(state, _Ctx(client, params, query, json_body, from_session))
            return _Answer(status, payload, client_id=client.client_id)
        except ApiError as e:
            return _Answer(e.status, e.body(), client_id=client.client_id if client else None)

    def _token(self, form: Any) -> _Answer:
        if not isinstance(form, dict):
            return _Answer(400, {"error": "invalid_request", "error_description": "form body required"})
        if form.get("grant_type") != "client_credentials":
            return _Answer(
                400,
                {"error": "unsupported_grant_type", "error_description": "only client_credentials is supported"},
            )
        client = self._state.auth.check_credentials(str(form.get("client_id", "")), str(form.get("client_secret", "")))
        if client is None:
            return _Answer(401, {"error": "invalid_client", "error_description": "Invalid client id or secret"})
        token = self._state.auth.issue_token(client.client_id)
        return _Answer(
            200,
            {"access_token": token, "expires_in": 3600, "token_type": "Bearer"},
            client_id=client.client_id,
        )
