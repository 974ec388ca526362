"""Workflow executions: retrieve, list, retry, cancel and run (CDF API reference: "Workflow executions").

Nothing here knows about HTTP: each endpoint is a method that takes the parsed JSON body and returns
the JSON answer, or raises :class:`~emulator.errors.ApiError`.  Not thread-safe on its own: the
server holds one lock around every call.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any

from emulator.auth import Client
from emulator.common import (
    Json,
    copy_json,
    decode_cursor,
    encode_cursor,
    expect_dict,
    expect_int,
    new_uuid,
    new_uuids,
    now_ms,
    optional_str,
    parse_workflow_filters,
    reject_unknown,
    validate_metadata,
)
from emulator.errors import ApiError, bad_request
from emulator.workflows import (
    TASK_CAPABILITIES,
    WorkflowDefinition,
    WorkflowVersionStore,
    default_task_input,
    definition_from_specs,
)

EXECUTION_STATUSES = frozenset({"RUNNING", "COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"})
RETRYABLE_EXECUTION_STATUSES = frozenset({"FAILED", "TIMED_OUT", "TERMINATED"})
TASK_STATUSES = frozenset(
    {
        "IN_PROGRESS",
        "CANCELED",
        "FAILED",
        "FAILED_WITH_TERMINAL_ERROR",
        "COMPLETED",
        "COMPLETED_WITH_ERRORS",
        "TIMED_OUT",
        "SKIPPED",
        "SCHEDULED",
    }
)
RETRYABLE_TASK_STATUSES = frozenset({"FAILED", "FAILED_WITH_TERMINAL_ERROR", "CANCELED", "TIMED_OUT"})
UNFINISHED_TASK_STATUSES = frozenset({"IN_PROGRESS", "SCHEDULED"})

# The status the last default task gets for each execution status (the first one is COMPLETED).
_DEFAULT_LAST_TASK_STATUS = {
    "FAILED": "FAILED",
    "TIMED_OUT": "TIMED_OUT",
    "TERMINATED": "CANCELED",
    "RUNNING": "IN_PROGRESS",
    "COMPLETED": "COMPLETED",
}

LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000

DEFAULT_RUN_MS = 60_000
"""A seeded execution without times was created this long ago and ran until now (its endTime is never in the future)."""


def _default_task_specs(status: str, reason: str | None) -> list[Json]:
    last = _DEFAULT_LAST_TASK_STATUS[status]
    specs: list[Json] = [
        {"externalId": "task-1", "status": "COMPLETED"},
        {"externalId": "task-2", "status": last, "dependsOn": ["task-1"]},
    ]
    if last in RETRYABLE_TASK_STATUSES and reason:
        specs[1]["reasonForIncompletion"] = reason
    return specs


def _spec_of_task(task: Json, status: str) -> Json:
    """An executed-task spec from a definition's task (API shape)."""
    spec: Json = {
        "externalId": task["externalId"],
        "status": status,
        "taskType": task["type"],
        "input": copy_json(task["parameters"]),
        "onFailure": task.get("onFailure", "abortWorkflow"),
    }
    if task.get("dependsOn"):
        spec["dependsOn"] = [d["externalId"] for d in task["dependsOn"]]
    return spec


def _default_task_output(task_type: str) -> Json:
    if task_type == "function":
        return {"callId": None, "functionId": None, "response": None}
    return {}


def _task_template(spec: Json) -> Json:
    """An executed-task entry from a task spec, without the times derived from the execution's
    creation time (and without an id unless the spec gives one): see :func:`_materialize_task`."""
    status = spec.get("status", "COMPLETED").upper()
    if status not in TASK_STATUSES:
        raise ValueError(f"unknown task status {status!r}")
    task_type = spec.get("taskType", "function")
    xid = spec["externalId"]
    task: Json = {}
    if spec.get("id"):
        task["id"] = spec["id"]
    task.update(
        {
            "externalId": xid,
            "status": status,
            "taskType": task_type,
            "input": copy_json(spec.get("input", default_task_input(task_type, xid))),
            "output": copy_json(spec.get("output", _default_task_output(task_type))),
        }
    )
    if spec.get("parentTaskExternalId"):
        task["parentTaskExternalId"] = spec["parentTaskExternalId"]
    for key in ("startTime", "endTime"):
        if spec.get(key) is not None:
            task[key] = spec[key]
    reason = spec.get("reasonForIncompletion")
    if reason is None and status in RETRYABLE_TASK_STATUSES:
        reason = f"task {status.lower()}"
    if reason is not None:
        task["reasonForIncompletion"] = reason
    return task


def _materialize_task(template: Json, created_time: int) -> Json:
    """A fresh executed-task dict from a template: a new id, times defaulting to the creation time."""
    task: Json = {"id": template.get("id") or new_uuid()}
    task.update(copy_json(template))
    task.setdefault("startTime", created_time)
    if task["status"] not in UNFINISHED_TASK_STATUSES:
        task.setdefault("endTime", created_time + 1000)
    return task


@dataclass(slots=True)
class Execution:
    """One workflow execution with its executed tasks (task entries are JSON-shaped dicts)."""

    id: str
    workflow_external_id: str
    version: str
    status: str
    engine_execution_id: str
    created_time: int
    start_time: int | None
    end_time: int | None
    reason: str | None
    metadata: dict[str, str]
    input: Json
    definition: WorkflowDefinition
    task_templates: tuple[Json, ...]
    sort_key: tuple[int, int]
    retries: int = 0
    answers_version: bool = True
    """False: its answers leave ``version`` out (the SDK's ``WorkflowExecution`` reads it as optional)."""
    _tasks: list[Json] | None = None

    def tasks(self) -> list[Json]:
        """The executed tasks (made from the templates on first use, so bulk seeding stays cheap)."""
        if self._tasks is None:
            self._tasks = [_materialize_task(t, self.created_time) for t in self.task_templates]
        return self._tasks

    def summary_json(self) -> Json:
        """The non-detailed execution object (list, retry, cancel and run answers)."""
        out: Json = {
            "id": self.id,
            "workflowExternalId": self.workflow_external_id,
            "version": self.version,
            "status": self.status,
            "engineExecutionId": self.engine_execution_id,
            "createdTime": self.created_time,
            "metadata": dict(self.metadata),
        }
        if not self.answers_version:
            del out["version"]
        if self.start_time is not None:
            out["startTime"] = self.start_time
        if self.end_time is not None:
            out["endTime"] = self.end_time
        if self.reason is not None and self.status != "COMPLETED":
            out["reasonForIncompletion"] = self.reason
        return out

    def detailed_json(self) -> Json:
        """The detailed execution object of ``GET /workflows/executions/{id}``."""
        out = self.summary_json()
        out["input"] = copy_json(self.input)
        out["workflowDefinition"] = self.definition.to_json()
        out["executedTasks"] = copy_json(self.tasks())
        return out


@dataclass
class _ListFilter:
    workflows: set[tuple[str, str]]
    workflow_any_version: set[str]
    statuses: frozenset[str] | None
    created_start: int | None
    created_end: int | None

    def matches(self, execution: Execution) -> bool:
        if self.statuses is not None and execution.status not in self.statuses:
            return False
        if self.workflows or self.workflow_any_version:
            xid = execution.workflow_external_id
            if xid not in self.workflow_any_version and (xid, execution.version) not in self.workflows:
                return False
        return True


class ExecutionStore:
    """Executions by id (O(1)) plus an index sorted by createdTime descending for listing with cursors.

    The index key of an execution is ``(-createdTime, -sequence)``: newest first, and among equal
    creation times the one seeded last first.  A list cursor encodes the last key returned, so
    pages stay consistent while executions are added.
    """

    def __init__(self, versions: WorkflowVersionStore) -> None:
        self.versions = versions
        self.by_id: dict[str, Execution] = {}
        self._keys: list[tuple[int, int]] = []
        self._ids: list[str] = []
        self._seq = itertools.count(1)
        self.unknown_execution_status = 404
        self.auto_fail_after_retry = False
        self.enforce_task_capabilities = False
        self.max_running: int | None = None

    def clear(self) -> None:
        """Forget every execution, and restore the knobs to their defaults."""
        self.by_id.clear()
        self._keys.clear()
        self._ids.clear()
        self.unknown_execution_status = 404
        self.auto_fail_after_retry = False
        self.enforce_task_capabilities = False
        self.max_running = None

    # --- creation -------------------------------------------------------------------------------

    def _build(
        self,
        workflow_external_id: str,
        version: str,
        status: str,
        definition: WorkflowDefinition,
        task_templates: tuple[Json, ...],
        *,
        reason: str | None,
        created_time: int,
        start_time: int | None,
        end_time: int | None,
        metadata: dict[str, str],
        input: Json,
        execution_id: str | None,
        engine_execution_id: str | None = None,
    ) -> Execution:
        if status == "RUNNING":
            end_time = None
        elif end_time is None:
            # It ran for up to a minute and has ended by now (never in the future).
            end_time = min(created_time + DEFAULT_RUN_MS, now_ms())
        return Execution(
            id=execution_id or new_uuid(),
            workflow_external_id=workflow_external_id,
            version=version,
            status=status,
            engine_execution_id=engine_execution_id or new_uuid(),
            created_time=created_time,
            start_time=created_time if start_time is None else start_time,
            end_time=end_time,
            reason=None if status in ("COMPLETED", "RUNNING") else reason,
            metadata=metadata,
            input=input,
            definition=definition,
            task_templates=task_templates,
            sort_key=(-created_time, -next(self._seq)),
        )

    @staticmethod
    def _check_seed_args(workflow_external_id: str, version: str, status: str) -> str:
        status = status.upper()
        if status not in EXECUTION_STATUSES:
            raise ValueError(f"unknown execution status {status!r}")
        for name, value in (("workflow_external_id", workflow_external_id), ("version", version)):
            if not value or value != value.strip() or "\x00" in value or len(value) > 255:
                raise ValueError(f"invalid {name} {value!r}")
        return status

    def _specs_and_definition(
        self, workflow_external_id: str, version: str, tasks: list[Json] | None, status: str, reason: str | None
    ) -> tuple[list[Json], WorkflowDefinition]:
        """The executed-task specs of a seed and the definition it runs, registering its workflow version.

        Without ``tasks``, an existing version's tasks are executed (all COMPLETED but the last, which
        gets the status matching the execution); with no version either, ``task-1`` and ``task-2``.
        Given ``tasks`` define the execution's own definition; the version is registered from them
        when it does not exist yet (an existing version is kept, like a definition upserted after
        that execution ran).
        """
        existing = self.versions.get(workflow_external_id, version)
        if tasks is None and existing is not None and existing.definition.tasks:
            definition = existing.definition
            specs = [_spec_of_task(task, "COMPLETED") for task in definition.tasks]
            last = _DEFAULT_LAST_TASK_STATUS[status]
            specs[-1]["status"] = last
            if last in RETRYABLE_TASK_STATUSES and reason:
                specs[-1]["reasonForIncompletion"] = reason
            return specs, definition
        if tasks is None:
            specs = _default_task_specs(status, reason)
        else:
            specs = []
            for i, task in enumerate(tasks, start=1):
                spec = dict(task)
                spec.setdefault("externalId", f"task-{i}")
                specs.append(spec)
        definition = definition_from_specs(specs, f"{workflow_external_id} v{version}")
        registered = self.versions.register(workflow_external_id, version, definition)
        if registered.definition.hash == definition.hash:
            definition = registered.definition
        return specs, definition

    def seed(
        self,
        workflow_external_id: str = "wf",
        version: str = "1",
        status: str = "FAILED",
        *,
        tasks: list[Json] | None = None,
        reason: str | None = "task failed",
        created_time: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        metadata: dict[str, str] | None = None,
        execution_id: str | None = None,
        input: Json | None = None,
    ) -> Execution:
        """Add one execution (see ``CdfEmulator.seed_execution``)."""
        status = self._check_seed_args(workflow_external_id, version, status)
        if execution_id is not None and execution_id in self.by_id:
            raise ValueError(f"execution {execution_id} already exists")
        specs, definition = self._specs_and_definition(workflow_external_id, version, tasks, status, reason)
        execution = self._build(
            workflow_external_id,
            version,
            status,
            definition,
            tuple(_task_template(spec) for spec in specs),
            reason=reason,
            created_time=now_ms() - DEFAULT_RUN_MS if created_time is None else created_time,
            start_time=start_time,
            end_time=end_time,
            metadata=validate_metadata(metadata),
            input=copy_json(input or {}),
            execution_id=execution_id,
        )
        self._insert(execution)
        return execution

    def seed_many(
        self,
        n: int,
        workflow_external_id: str = "wf",
        version: str = "1",
        status: str = "FAILED",
        *,
        tasks: list[Json] | None = None,
        reason: str | None = "task failed",
        created_time: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        metadata: dict[str, str] | None = None,
        input: Json | None = None,
    ) -> list[str]:
        """Add ``n`` executions sharing one definition; without ``created_time`` they are 1 ms apart,
        the last one created DEFAULT_RUN_MS ago.  Sorts the index once; tasks are made on first use."""
        status = self._check_seed_args(workflow_external_id, version, status)
        specs, definition = self._specs_and_definition(workflow_external_id, version, tasks, status, reason)
        templates = tuple(_task_template(spec) for spec in specs)
        meta = validate_metadata(metadata)
        base = now_ms() - DEFAULT_RUN_MS - (n - 1) if created_time is None else created_time
        uuids = new_uuids(2 * n)
        new: list[Execution] = []
        for i in range(n):
            created = base + i if created_time is None else created_time
            execution = self._build(
                workflow_external_id,
                version,
                status,
                definition,
                templates,
                reason=reason,
                created_time=created,
                start_time=start_time,
                end_time=end_time,
                metadata=dict(meta),
                input=copy_json(input or {}),
                execution_id=uuids[2 * i],
                engine_execution_id=uuids[2 * i + 1],
            )
            self.by_id[execution.id] = execution
            new.append(execution)
        pairs = list(zip(self._keys, self._ids, strict=True))
        pairs.extend((e.sort_key, e.id) for e in new)
        pairs.sort()
        self._keys = [k for k, _ in pairs]
        self._ids = [i for _, i in pairs]
        return [e.id for e in new]

    def _insert(self, execution: Execution) -> None:
        self.by_id[execution.id] = execution
        pos = bisect_left(self._keys, execution.sort_key)
        self._keys.insert(pos, execution.sort_key)
        self._ids.insert(pos, execution.id)

    # --- lookups --------------------------------------------------------------------------------

    def get(self, execution_id: str) -> Execution | None:
        """The execution, or None."""
        return self.by_id.get(execution_id)

    def require(self, execution_id: str) -> Execution:
        """The execution, or the API's 404 (or ``unknown_execution_status``) error."""
        execution = self.by_id.get(execution_id)
        if execution is None:
            raise ApiError(self.unknown_execution_status, f"Workflow execution {execution_id} not found")
        return execution

    def __len__(self) -> int:
        return len(self.by_id)

    # --- list -----------------------------------------------------------------------------------

    @staticmethod
    def _parse_filter(raw: Any) -> _ListFilter:
        flt = expect_dict(raw if raw is not None else {}, "filter")
        reject_unknown(flt, ("workflowFilters", "createdTimeStart", "createdTimeEnd", "status"), "filter")
        workflows, any_version = parse_workflow_filters(flt)
        statuses: frozenset[str] | None = None
        raw_statuses = flt.get("status")
        if raw_statuses is not None:
            if not isinstance(raw_statuses, list) or not all(isinstance(s, str) for s in raw_statuses):
                raise bad_request("filter.status must be a list of strings")
            # The API's enum is upper case (cognite-sdk upper-cases what it is given before sending).
            given = frozenset(raw_statuses)
            if bad := sorted(given - EXECUTION_STATUSES):
                raise bad_request(f"filter.status has unknown status(es): {', '.join(bad)}")
            statuses = given
        start = expect_int(flt, "createdTimeStart", "filter")
        end = expect_int(flt, "createdTimeEnd", "filter")
        for name, value in (("createdTimeStart", start), ("createdTimeEnd", end)):
            if value is not None and value < 0:
                raise bad_request(f"filter.{name} must be >= 0")
        return _ListFilter(workflows, any_version, statuses, start, end)

    def list_page(self, body: Json) -> Json:
        """``POST /workflows/executions/list``: newest first, ``limit`` per page, key-based cursor."""
        reject_unknown(body, ("filter", "limit", "cursor"), "request body")
        flt = self._parse_filter(body.get("filter"))
        limit = expect_int(body, "limit", "request")
        limit = LIST_LIMIT_DEFAULT if limit is None else limit
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise bad_request(f"limit must be between 1 and {LIST_LIMIT_MAX}")
        cursor = optional_str(body, "cursor", "request")

        start = 0
        if cursor is not None:
            payload = decode_cursor(cursor, "wx")
            key = payload.get("p")
            if not (isinstance(key, list) and len(key) == 2 and all(isinstance(v, int) for v in key)):
                raise bad_request("Invalid cursor")
            start = bisect_right(self._keys, (key[0], key[1]))
        if flt.created_end is not None:
            # keys are (-createdTime, ...): createdTime <= end  <=>  -createdTime >= -end
            start = max(start, bisect_left(self._keys, (-flt.created_end, -(2**63))))
        stop_key = None if flt.created_start is None else -flt.created_start

        items: list[Execution] = []
        has_more = False
        by_id, keys, ids = self.by_id, self._keys, self._ids
        for pos in range(start, len(keys)):
            if stop_key is not None and keys[pos][0] > stop_key:
                break
            execution = by_id[ids[pos]]
            if not flt.matches(execution):
                continue
            if len(items) == limit:
                has_more = True
                break
            items.append(execution)
        out: Json = {"items": [e.summary_json() for e in items]}
        if has_more:
            last = items[-1].sort_key
            out["nextCursor"] = encode_cursor({"k": "wx", "p": [last[0], last[1]]})
        return out

    # --- state changes --------------------------------------------------------------------------

    def check_retryable(self, execution: Execution) -> None:
        """Raise the 400 for an execution that is not FAILED, TIMED_OUT or TERMINATED."""
        if execution.status not in RETRYABLE_EXECUTION_STATUSES:
            raise bad_request(f"Execution {execution.id} cannot be retried: status is {execution.status}")

    def running_count(self) -> int:
        """How many executions of the project are RUNNING now."""
        return sum(1 for execution in self.by_id.values() if execution.status == "RUNNING")

    def check_room_to_run(self) -> None:
        """Raise a 429 when ``max_running`` executions are RUNNING already (None: no limit).

        CDF runs at most 50 workflow executions at once per project (docs.cognite.com, data workflows,
        "Limits and restrictions"); what it answers to one more is not documented. The emulator assumes
        CDF's throttling answer (429, "too many concurrent requests", docs.cognite.com "Request
        throttling"), given before anything changes, so the nonce stays unused.
        """
        if self.max_running is not None and self.running_count() >= self.max_running:
            raise ApiError(
                429,
                f"Too many concurrent workflow executions: the project runs at most {self.max_running} at once",
            )

    def apply_retry(self, execution: Execution, principal: Client | None = None) -> Json:
        """Restart the execution's failed, non-optional tasks; the answer shows it RUNNING.

        With ``auto_fail_after_retry`` the stored execution fails again right after.  With
        ``enforce_task_capabilities``, a restarted task whose type needs a capability (see
        :data:`~emulator.workflows.TASK_CAPABILITIES`) that ``principal`` (the retry session's
        principal) lacks fails again at once, with a 403-like reason that names the capability.
        """
        now = now_ms()
        optional = execution.definition.optional_tasks
        forbidden: list[tuple[Json, str]] = []
        for task in execution.tasks():
            if task["status"] in RETRYABLE_TASK_STATUSES and task["externalId"] not in optional:
                task["status"] = "IN_PROGRESS"
                task["startTime"] = now
                task.pop("endTime", None)
                task.pop("reasonForIncompletion", None)
                if self.enforce_task_capabilities and principal is not None:
                    needed = TASK_CAPABILITIES.get(task.get("taskType", ""), ())
                    if missing := [cap for cap in needed if not principal.has(cap)]:
                        forbidden.append((task, missing[0]))
        execution.status = "RUNNING"
        execution.end_time = None
        execution.reason = None
        execution.retries += 1
        answer = execution.summary_json()
        if forbidden:
            self._fail_forbidden(execution, forbidden)
        elif self.auto_fail_after_retry:
            self.fail(execution, "task failed again after retry", "FAILED")
        return answer

    def _fail_forbidden(self, execution: Execution, forbidden: list[tuple[Json, str]]) -> None:
        """Fail the tasks whose principal lacks a capability, naming it; other restarted tasks are canceled."""
        now = now_ms()
        for task, capability in forbidden:
            task["status"] = "FAILED"
            task["endTime"] = now
            task["reasonForIncompletion"] = f"Forbidden: missing capability {capability} (403)"
        first_task, first_cap = forbidden[0]
        for task in execution.tasks():
            if task["status"] in UNFINISHED_TASK_STATUSES:
                task["status"] = "CANCELED"
                task["endTime"] = now
                task["reasonForIncompletion"] = "canceled: another task failed"
        execution.status = "FAILED"
        execution.end_time = now
        execution.reason = f"Task {first_task['externalId']} failed: Forbidden: missing capability {first_cap} (403)"

    def fail(self, execution: Execution, reason: str, task_status: str = "FAILED") -> None:
        """Make a RUNNING execution FAILED; its unfinished tasks get ``task_status``."""
        task_status = task_status.upper()
        if task_status not in TASK_STATUSES:
            raise ValueError(f"unknown task status {task_status!r}")
        if execution.status != "RUNNING":
            raise ValueError(f"execution {execution.id} is {execution.status}, not RUNNING")
        now = now_ms()
        for task in execution.tasks():
            if task["status"] in UNFINISHED_TASK_STATUSES:
                task["status"] = task_status
                task["endTime"] = now
                task["reasonForIncompletion"] = reason
        execution.status = "FAILED"
        execution.end_time = now
        execution.reason = reason

    def complete(self, execution: Execution) -> None:
        """Make an execution COMPLETED; every task that has not finished completes."""
        now = now_ms()
        for task in execution.tasks():
            if task["status"] not in ("COMPLETED", "COMPLETED_WITH_ERRORS", "SKIPPED"):
                task["status"] = "COMPLETED"
                task["endTime"] = now
                task.pop("reasonForIncompletion", None)
        execution.status = "COMPLETED"
        execution.end_time = now
        execution.reason = None

    def cancel(self, execution: Execution, reason: str | None) -> Json:
        """``POST .../cancel``: RUNNING -> TERMINATED, IN_PROGRESS tasks -> CANCELED."""
        if execution.status != "RUNNING":
            raise bad_request(f"Execution {execution.id} cannot be cancelled: status is {execution.status}")
        now = now_ms()
        reason = reason or "cancelled"
        for task in execution.tasks():
            if task["status"] in UNFINISHED_TASK_STATUSES:
                task["status"] = "CANCELED"
                task["endTime"] = now
                task["reasonForIncompletion"] = reason
        execution.status = "TERMINATED"
        execution.end_time = now
        execution.reason = reason
        return execution.summary_json()

    def run(self, workflow_external_id: str, version: str, input: Json, metadata: dict[str, str]) -> Json:
        """``POST /workflows/{xid}/versions/{v}/run``: a new RUNNING execution, its first task in progress."""
        definition = self.versions.require(workflow_external_id, version).definition
        first = definition.tasks[0] if definition.tasks else None
        templates = (
            (
                _task_template(
                    {
                        "externalId": first["externalId"],
                        "taskType": first["type"],
                        "input": first["parameters"],
                        "status": "IN_PROGRESS",
                    }
                ),
            )
            if first is not None
            else ()
        )
        execution = self._build(
            workflow_external_id,
            version,
            "RUNNING",
            definition,
            templates,
            reason=None,
            created_time=now_ms(),
            start_time=None,
            end_time=None,
            metadata=metadata,
            input=input,
            execution_id=None,
        )
        self._insert(execution)
        return execution.summary_json()
