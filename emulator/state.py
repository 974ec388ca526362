"""The emulated project's data and its state machines: workflow executions, sessions (nonces) and RAW.

Nothing here knows about HTTP: each endpoint is a method that takes the parsed JSON body and returns
the JSON answer, or raises :class:`~emulator.errors.ApiError`.  Not thread-safe on its own: the
server holds one lock around every call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import os
import secrets
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from emulator.auth import AuthRegistry, Client
from emulator.errors import ApiError, bad_request, not_found

Json = dict[str, Any]

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
RAW_LIST_LIMIT_DEFAULT = 25
RAW_ROWS_LIMIT_MAX = 10_000
RAW_LIST_LIMIT_MAX = 1000


DEFAULT_RUN_MS = 60_000
"""A seeded execution without times was created this long ago and ran until now (its endTime is never in the future)."""


def now_ms() -> int:
    """Milliseconds since the Unix epoch, the unit of every CDF timestamp."""
    return int(time.time() * 1000)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars); much faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def new_uuid() -> str:
    """A random (version 4) UUID string, like CDF's execution and task ids."""
    return str(uuid.uuid4())


def new_uuids(n: int) -> list[str]:
    """``n`` version-4 UUID strings at once (several times faster than ``uuid.uuid4()`` in a loop)."""
    raw = bytearray(os.urandom(16 * n))
    for i in range(0, 16 * n, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
    h = raw.hex()
    return [
        f"{h[o : o + 8]}-{h[o + 8 : o + 12]}-{h[o + 12 : o + 16]}-{h[o + 16 : o + 20]}-{h[o + 20 : o + 32]}"
        for o in range(0, 32 * n, 32)
    ]


# --------------------------------------------------------------------------------------------------
# Small validation helpers for request bodies


def _expect_dict(value: Any, what: str) -> Json:
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object")
    return value


def _optional_str(obj: Json, key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{what}.{key} must be a string")
    return value


def _expect_str(obj: Json, key: str, what: str) -> str:
    value = _optional_str(obj, key, what)
    if value is None:
        raise bad_request(f"{what}.{key} is required")
    return value


def _expect_int(obj: Json, key: str, what: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{what}.{key} must be an integer")
    return value


def _reject_unknown(obj: Json, allowed: Iterable[str], what: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise bad_request(f"Unrecognized field(s) in {what}: {', '.join(unknown)}")


def _encode_cursor(payload: Json) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> Json:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise bad_request("Invalid cursor") from None
    if not isinstance(payload, dict) or payload.get("k") != kind:
        raise bad_request("Invalid cursor")
    return payload


def validate_metadata(metadata: Any) -> dict[str, str]:
    """CDF's limits on execution metadata: string to string, keys <= 32, values <= 255, at most 10 pairs."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be an object of strings")
    if len(metadata) > 10:
        raise bad_request("metadata can have at most 10 key-value pairs")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise bad_request(f"metadata value for {key!r} must be a string")
        if len(key) > 32:
            raise bad_request(f"metadata key {key!r} is longer than 32 characters")
        if len(value) > 255:
            raise bad_request(f"metadata value for {key!r} is longer than 255 characters")
    return dict(metadata)


# --------------------------------------------------------------------------------------------------
# Workflow executions


@dataclass(frozen=True)
class WorkflowDefinition:
    """The definition an execution runs: shared by the executions of one seed call."""

    hash: str
    description: str
    tasks: tuple[Json, ...]
    optional_tasks: frozenset[str]

    def to_json(self) -> Json:
        return {"hash": self.hash, "description": self.description, "tasks": copy_json(list(self.tasks))}


def _default_task_specs(status: str, reason: str | None) -> list[Json]:
    last = _DEFAULT_LAST_TASK_STATUS[status]
    specs: list[Json] = [
        {"externalId": "task-1", "status": "COMPLETED"},
        {"externalId": "task-2", "status": last, "dependsOn": ["task-1"]},
    ]
    if last in RETRYABLE_TASK_STATUSES and reason:
        specs[1]["reasonForIncompletion"] = reason
    return specs


def _definition_from_specs(specs: list[Json], description: str) -> WorkflowDefinition:
    tasks: list[Json] = []
    optional: set[str] = set()
    for spec in specs:
        xid = spec["externalId"]
        on_failure = spec.get("onFailure", "abortWorkflow")
        if on_failure == "skipTask":
            optional.add(xid)
        if spec.get("parentTaskExternalId"):
            continue  # nested tasks of dynamic tasks/subworkflows are not part of the top-level definition
        task_type = spec.get("taskType", "function")
        task: Json = {
            "externalId": xid,
            "type": task_type,
            "parameters": copy_json(spec.get("input", _default_task_input(task_type, xid))),
            "retries": spec.get("retries", 3),
            "timeout": spec.get("timeout", 3600),
            "onFailure": on_failure,
        }
        if spec.get("dependsOn"):
            task["dependsOn"] = [{"externalId": dep} for dep in spec["dependsOn"]]
        tasks.append(task)
    digest = hashlib.sha256(json.dumps(tasks, sort_keys=True).encode()).hexdigest()[:32].upper()
    return WorkflowDefinition(digest, description, tuple(tasks), frozenset(optional))


def _default_task_input(task_type: str, xid: str) -> Json:
    if task_type == "function":
        return {"function": {"externalId": f"fn-{xid}", "data": {}}, "isAsyncComplete": False}
    if task_type == "transformation":
        return {"transformation": {"externalId": f"tr-{xid}", "concurrencyPolicy": "fail"}}
    return {}


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
            "input": copy_json(spec.get("input", _default_task_input(task_type, xid))),
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

    def __init__(self) -> None:
        self.by_id: dict[str, Execution] = {}
        self._keys: list[tuple[int, int]] = []
        self._ids: list[str] = []
        self._seq = itertools.count(1)
        self.definitions: dict[tuple[str, str], WorkflowDefinition] = {}
        self.unknown_execution_status = 404
        self.auto_fail_after_retry = False

    def clear(self) -> None:
        """Forget every execution and definition, and restore the knobs to their defaults."""
        self.by_id.clear()
        self._keys.clear()
        self._ids.clear()
        self.definitions.clear()
        self.unknown_execution_status = 404
        self.auto_fail_after_retry = False

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

    @staticmethod
    def _task_specs(tasks: list[Json] | None, status: str, reason: str | None) -> list[Json]:
        if tasks is None:
            return _default_task_specs(status, reason)
        specs = []
        for i, task in enumerate(tasks, start=1):
            spec = dict(task)
            spec.setdefault("externalId", f"task-{i}")
            specs.append(spec)
        return specs

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
        specs = self._task_specs(tasks, status, reason)
        definition = _definition_from_specs(specs, f"{workflow_external_id} v{version}")
        self.definitions.setdefault((workflow_external_id, version), definition)
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
        specs = self._task_specs(tasks, status, reason)
        definition = _definition_from_specs(specs, f"{workflow_external_id} v{version}")
        self.definitions.setdefault((workflow_external_id, version), definition)
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
        flt = _expect_dict(raw if raw is not None else {}, "filter")
        _reject_unknown(flt, ("workflowFilters", "createdTimeStart", "createdTimeEnd", "status"), "filter")
        workflows: set[tuple[str, str]] = set()
        any_version: set[str] = set()
        wf_filters = flt.get("workflowFilters")
        if wf_filters is not None:
            if not isinstance(wf_filters, list):
                raise bad_request("filter.workflowFilters must be a list")
            for item in wf_filters:
                item = _expect_dict(item, "filter.workflowFilters[]")
                _reject_unknown(item, ("externalId", "version"), "filter.workflowFilters[]")
                xid = _expect_str(item, "externalId", "filter.workflowFilters[]")
                ver = _optional_str(item, "version", "filter.workflowFilters[]")
                if ver is None:
                    any_version.add(xid)
                else:
                    workflows.add((xid, ver))
        statuses: frozenset[str] | None = None
        raw_statuses = flt.get("status")
        if raw_statuses is not None:
            if not isinstance(raw_statuses, list) or not all(isinstance(s, str) for s in raw_statuses):
                raise bad_request("filter.status must be a list of strings")
            upper = frozenset(s.upper() for s in raw_statuses)
            if bad := sorted(upper - EXECUTION_STATUSES):
                raise bad_request(f"filter.status has unknown status(es): {', '.join(bad)}")
            statuses = upper
        start = _expect_int(flt, "createdTimeStart", "filter")
        end = _expect_int(flt, "createdTimeEnd", "filter")
        for name, value in (("createdTimeStart", start), ("createdTimeEnd", end)):
            if value is not None and value < 0:
                raise bad_request(f"filter.{name} must be >= 0")
        return _ListFilter(workflows, any_version, statuses, start, end)

    def list_page(self, body: Json) -> Json:
        """``POST /workflows/executions/list``: newest first, ``limit`` per page, key-based cursor."""
        _reject_unknown(body, ("filter", "limit", "cursor"), "request body")
        flt = self._parse_filter(body.get("filter"))
        limit = _expect_int(body, "limit", "request")
        limit = LIST_LIMIT_DEFAULT if limit is None else limit
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise bad_request(f"limit must be between 1 and {LIST_LIMIT_MAX}")
        cursor = _optional_str(body, "cursor", "request")

        start = 0
        if cursor is not None:
            payload = _decode_cursor(cursor, "wx")
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
            out["nextCursor"] = _encode_cursor({"k": "wx", "p": [last[0], last[1]]})
        return out

    # --- state changes --------------------------------------------------------------------------

    def check_retryable(self, execution: Execution) -> None:
        """Raise the 400 for an execution that is not FAILED, TIMED_OUT or TERMINATED."""
        if execution.status not in RETRYABLE_EXECUTION_STATUSES:
            raise bad_request(f"Execution {execution.id} cannot be retried: status is {execution.status}")

    def apply_retry(self, execution: Execution) -> Json:
        """Restart the execution's failed, non-optional tasks; the answer shows it RUNNING.

        With ``auto_fail_after_retry`` the stored execution fails again right after.
        """
        now = now_ms()
        optional = execution.definition.optional_tasks
        for task in execution.tasks():
            if task["status"] in RETRYABLE_TASK_STATUSES and task["externalId"] not in optional:
                task["status"] = "IN_PROGRESS"
                task["startTime"] = now
                task.pop("endTime", None)
                task.pop("reasonForIncompletion", None)
        execution.status = "RUNNING"
        execution.end_time = None
        execution.reason = None
        execution.retries += 1
        answer = execution.summary_json()
        if self.auto_fail_after_retry:
            self.fail(execution, "task failed again after retry", "FAILED")
        return answer

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
        definition = self.definitions.get((workflow_external_id, version))
        if definition is None:
            specs = _default_task_specs("RUNNING", None)
            definition = _definition_from_specs(specs, f"{workflow_external_id} v{version}")
            self.definitions[(workflow_external_id, version)] = definition
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


# --------------------------------------------------------------------------------------------------
# Sessions


@dataclass
class _Nonce:
    session_id: int
    client_id: str
    created: float
    used: bool = False


class SessionStore:
    """Sessions and their single-use nonces, which expire ``nonce_ttl`` seconds after creation."""

    TYPES = ("CLIENT_CREDENTIALS", "TOKEN_EXCHANGE", "ONESHOT_TOKEN_EXCHANGE")

    def __init__(self) -> None:
        self._nonces: dict[str, _Nonce] = {}
        self._ids = itertools.count(1)
        self.issued_nonces: list[str] = []
        self.nonce_ttl = 60.0

    def clear(self) -> None:
        """Forget every nonce (the list of issued nonces is kept for leak scans)."""
        self._nonces.clear()
        self.nonce_ttl = 60.0

    def create(self, body: Json, caller: Client, auth: AuthRegistry) -> Json:
        """``POST /sessions``: one session (and nonce) per item."""
        _reject_unknown(body, ("items",), "request body")
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise bad_request("items must be a non-empty list")
        if len(items) > 1000:
            raise bad_request("at most 1000 items per request")
        out = []
        for item in items:
            item = _expect_dict(item, "items[]")
            if item.get("tokenExchange") is True and len(item) == 1:
                out.append(self._new("TOKEN_EXCHANGE", caller.client_id))
            elif item.get("oneshotTokenExchange") is True and len(item) == 1:
                out.append(self._new("ONESHOT_TOKEN_EXCHANGE", caller.client_id))
            elif "clientId" in item or "clientSecret" in item:
                _reject_unknown(item, ("clientId", "clientSecret"), "items[]")
                client_id = _expect_str(item, "clientId", "items[]")
                secret = _expect_str(item, "clientSecret", "items[]")
                if auth.check_credentials(client_id, secret) is None:
                    raise bad_request(f"Could not create session: invalid client credentials for {client_id}")
                session = self._new("CLIENT_CREDENTIALS", client_id)
                session["clientId"] = client_id
                out.append(session)
            else:
                raise bad_request(
                    "Each item must have clientId and clientSecret, tokenExchange: true or oneshotTokenExchange: true"
                )
        return {"items": out}

    def _new(self, session_type: str, client_id: str) -> Json:
        session_id = next(self._ids)
        nonce = secrets.token_urlsafe(32)
        self._nonces[nonce] = _Nonce(session_id, client_id, time.monotonic())
        self.issued_nonces.append(nonce)
        return {"id": session_id, "type": session_type, "status": "READY", "nonce": nonce}

    def validate(self, nonce: Any) -> _Nonce:
        """The 400s for a missing, unknown, expired or reused nonce; does not use it up."""
        if not isinstance(nonce, str) or not nonce:
            raise bad_request("authentication.nonce is required")
        entry = self._nonces.get(nonce)
        if entry is None or time.monotonic() - entry.created > self.nonce_ttl:
            raise bad_request("Invalid or expired nonce")
        if entry.used:
            raise bad_request("Nonce has already been used")
        return entry

    def consume(self, nonce: Any) -> _Nonce:
        """Bind a nonce: the 400s for unknown, expired and reused nonces."""
        entry = self.validate(nonce)
        entry.used = True
        return entry

    @staticmethod
    def nonce_of(body: Json) -> Any:
        """``body["authentication"]["nonce"]``, with 400s for a malformed body."""
        auth = body.get("authentication")
        if not isinstance(auth, dict):
            raise bad_request("authentication.nonce is required")
        return auth.get("nonce")


# --------------------------------------------------------------------------------------------------
# RAW


@dataclass
class RawRow:
    """One RAW row."""

    columns: Json
    last_updated_time: int


@dataclass
class RawTable:
    """A RAW table: rows by key, in insertion order."""

    created_time: int
    rows: dict[str, RawRow] = field(default_factory=dict)


@dataclass
class RawDatabase:
    """A RAW database: tables by name."""

    created_time: int
    tables: dict[str, RawTable] = field(default_factory=dict)


def _names(body: Json, what: str) -> list[str]:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise bad_request("items must be a non-empty list")
    names = []
    for item in items:
        item = _expect_dict(item, "items[]")
        name = _expect_str(item, "name", "items[]")
        if not name or len(name) > 32:
            raise bad_request(f"{what} name must be 1 to 32 characters")
        names.append(name)
    return names


def _query_int(query: dict[str, list[str]], key: str) -> int | None:
    values = query.get(key)
    if not values:
        return None
    try:
        return int(values[-1])
    except ValueError:
        raise bad_request(f"query parameter {key} must be an integer") from None


def _query_bool(query: dict[str, list[str]], key: str) -> bool:
    values = query.get(key)
    return values is not None and bool(values) and values[-1].lower() == "true"


def _page(total: int, query: dict[str, list[str]], kind: str, max_limit: int) -> tuple[int, int, int]:
    """(limit, start offset, end offset) of a RAW list page from ``limit`` and ``cursor``."""
    limit = _query_int(query, "limit")
    limit = RAW_LIST_LIMIT_DEFAULT if limit is None else limit
    if not 1 <= limit <= max_limit:
        raise bad_request(f"limit must be between 1 and {max_limit}")
    start, end = 0, total
    cursor = query.get("cursor")
    if cursor and cursor[-1]:
        payload = _decode_cursor(cursor[-1], kind)
        s, e = payload.get("o"), payload.get("e")
        if not isinstance(s, int) or not (e is None or isinstance(e, int)) or s < 0:
            raise bad_request("Invalid cursor")
        start, end = s, (total if e is None else min(e, total))
    return limit, start, end


class RawStore:
    """CDF RAW: databases, tables and rows, with the errors the SDK expects."""

    def __init__(self) -> None:
        self.dbs: dict[str, RawDatabase] = {}

    def clear(self) -> None:
        """Drop every database."""
        self.dbs.clear()

    def _db(self, name: str) -> RawDatabase:
        db = self.dbs.get(name)
        if db is None:
            raise not_found("Following databases not found", missing=[{"name": name}])
        return db

    def _table(self, db_name: str, table_name: str) -> RawTable:
        table = self._db(db_name).tables.get(table_name)
        if table is None:
            raise not_found("Following tables not found", missing=[{"name": table_name}])
        return table

    @staticmethod
    def _listing(created: dict[str, int], query: dict[str, list[str]], kind: str) -> Json:
        limit, start, end = _page(len(created), query, kind, RAW_LIST_LIMIT_MAX)
        stop = min(start + limit, end)
        items = [
            {"name": name, "createdTime": created_time}
            for name, created_time in itertools.islice(created.items(), start, stop)
        ]
        out: Json = {"items": items}
        if stop < end:
            out["nextCursor"] = _encode_cursor({"k": kind, "o": stop, "e": None})
        return out

    def list_dbs(self, query: dict[str, list[str]]) -> Json:
        """``GET /raw/dbs``."""
        return self._listing({n: d.created_time for n, d in self.dbs.items()}, query, "rawdb")

    def create_dbs(self, body: Json) -> Json:
        """``POST /raw/dbs``."""
        names = _names(body, "Database")
        if dup := [n for n in names if n in self.dbs]:
            raise bad_request("Following databases already exist", duplicated=[{"name": n} for n in dup])
        now = now_ms()
        for name in names:
            self.dbs[name] = RawDatabase(now)
        return {"items": [{"name": n, "createdTime": now} for n in names]}

    def delete_dbs(self, body: Json) -> Json:
        """``POST /raw/dbs/delete`` (``recursive`` to delete non-empty ones)."""
        names = _names(body, "Database")
        recursive = body.get("recursive", False) is True
        if missing := [n for n in names if n not in self.dbs]:
            raise not_found("Following databases not found", missing=[{"name": n} for n in missing])
        if not recursive and (non_empty := [n for n in names if self.dbs[n].tables]):
            raise bad_request(f"Databases are not empty, use recursive=true to delete them: {', '.join(non_empty)}")
        for name in names:
            del self.dbs[name]
        return {}

    def list_tables(self, db_name: str, query: dict[str, list[str]]) -> Json:
        """``GET /raw/dbs/{db}/tables``."""
        tables = self._db(db_name).tables
        return self._listing({n: t.created_time for n, t in tables.items()}, query, "rawtable")

    def create_tables(self, db_name: str, body: Json, query: dict[str, list[str]]) -> Json:
        """``POST /raw/dbs/{db}/tables`` (``?ensureParent=true`` creates the database)."""
        names = _names(body, "Table")
        now = now_ms()
        if _query_bool(query, "ensureParent"):
            self.dbs.setdefault(db_name, RawDatabase(now))
        db = self._db(db_name)
        if dup := [n for n in names if n in db.tables]:
            raise bad_request("Following tables already exist", duplicated=[{"name": n} for n in dup])
        for name in names:
            db.tables[name] = RawTable(now)
        return {"items": [{"name": n, "createdTime": now} for n in names]}

    def delete_tables(self, db_name: str, body: Json) -> Json:
        """``POST /raw/dbs/{db}/tables/delete``."""
        names = _names(body, "Table")
        db = self._db(db_name)
        if missing := [n for n in names if n not in db.tables]:
            raise not_found("Following tables not found", missing=[{"name": n} for n in missing])
        for name in names:
            del db.tables[name]
        return {}

    def insert_rows(self, db_name: str, table_name: str, body: Json, query: dict[str, list[str]]) -> Json:
        """``POST /raw/dbs/{db}/tables/{t}/rows``: upsert (a row is replaced whole)."""
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise bad_request("items must be a non-empty list")
        if len(items) > 10_000:
            raise bad_request("at most 10000 rows per request")
        rows: list[tuple[str, Json]] = []
        for item in items:
            item = _expect_dict(item, "items[]")
            key = _expect_str(item, "key", "items[]")
            if not key:
                raise bad_request("row key must not be empty")
            columns = _expect_dict(item.get("columns"), "items[].columns")
            rows.append((key, columns))
        now = now_ms()
        if _query_bool(query, "ensureParent"):
            db = self.dbs.setdefault(db_name, RawDatabase(now))
            db.tables.setdefault(table_name, RawTable(now))
        table = self._table(db_name, table_name)
        for key, columns in rows:
            table.rows[key] = RawRow(copy_json(columns), now)
        return {}

    def delete_rows(self, db_name: str, table_name: str, body: Json) -> Json:
        """``POST /raw/dbs/{db}/tables/{t}/rows/delete`` (unknown keys are ignored)."""
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise bad_request("items must be a non-empty list")
        table = self._table(db_name, table_name)
        for item in items:
            key = _expect_str(_expect_dict(item, "items[]"), "key", "items[]")
            table.rows.pop(key, None)
        return {}

    def retrieve_row(self, db_name: str, table_name: str, key: str) -> Json:
        """``GET /raw/dbs/{db}/tables/{t}/rows/{key}``: 404 (-> None in the SDK) when missing."""
        table = self._table(db_name, table_name)
        row = table.rows.get(key)
        if row is None:
            raise not_found("Row not found", missing=[{"key": key}])
        return {"key": key, "columns": copy_json(row.columns), "lastUpdatedTime": row.last_updated_time}

    @staticmethod
    def _time_filter(query: dict[str, list[str]]) -> tuple[int | None, int | None]:
        return _query_int(query, "minLastUpdatedTime"), _query_int(query, "maxLastUpdatedTime")

    def list_rows(self, db_name: str, table_name: str, query: dict[str, list[str]]) -> Json:
        """``GET /raw/dbs/{db}/tables/{t}/rows``: ``limit``, ``cursor``, ``columns``, time filters."""
        table = self._table(db_name, table_name)
        limit, start, end = _page(len(table.rows), query, "rawrow", RAW_ROWS_LIMIT_MAX)
        min_t, max_t = self._time_filter(query)
        wanted: list[str] | None = None
        cols = query.get("columns")
        if cols and cols[-1]:  # "a,b" selects columns, "," only keys; absent or empty means all
            wanted = [c for c in cols[-1].split(",") if c]
        items: list[Json] = []
        pos = start
        for key, row in itertools.islice(table.rows.items(), start, end):
            if len(items) == limit:
                break
            pos += 1
            if min_t is not None and row.last_updated_time <= min_t:
                continue
            if max_t is not None and row.last_updated_time > max_t:
                continue
            columns = row.columns if wanted is None else {c: row.columns[c] for c in wanted if c in row.columns}
            items.append({"key": key, "columns": copy_json(columns), "lastUpdatedTime": row.last_updated_time})
        out: Json = {"items": items}
        if pos < end:
            out["nextCursor"] = _encode_cursor({"k": "rawrow", "o": pos, "e": end})
        return out

    def cursors(self, db_name: str, table_name: str, query: dict[str, list[str]]) -> Json:
        """``GET /raw/dbs/{db}/tables/{t}/cursors``: cursors that split the rows into disjoint ranges."""
        table = self._table(db_name, table_name)
        n = _query_int(query, "numberOfCursors") or 10
        if not 1 <= n <= 10_000:
            raise bad_request("numberOfCursors must be between 1 and 10000")
        total = len(table.rows)
        n = max(1, min(n, total))
        step, extra = divmod(total, n)
        bounds = []
        offset = 0
        for i in range(n):
            size = step + (1 if i < extra else 0)
            bounds.append((offset, offset + size))
            offset += size
        return {"items": [_encode_cursor({"k": "rawrow", "o": s, "e": e}) for s, e in bounds]}


# --------------------------------------------------------------------------------------------------


class EmulatorState:
    """Everything the emulated project holds: identities, executions, sessions and RAW."""

    def __init__(self) -> None:
        self.auth = AuthRegistry()
        self.executions = ExecutionStore()
        self.sessions = SessionStore()
        self.raw = RawStore()

    def reset(self) -> None:
        """Clear executions, sessions and RAW, and restore the knobs; identities and tokens stay."""
        self.executions.clear()
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
        _reject_unknown(body, ("authentication",), "request body")
        nonce = self.sessions.nonce_of(body)
        execution = self.executions.require(execution_id)
        self.sessions.validate(nonce)
        self.executions.check_retryable(execution)
        self.sessions.consume(nonce)
        return self.executions.apply_retry(execution)

    def run(self, workflow_external_id: str, version: str, body: Json) -> Json:
        """``POST /workflows/{xid}/versions/{v}/run``."""
        _reject_unknown(body, ("authentication", "input", "metadata"), "request body")
        nonce = self.sessions.nonce_of(body)
        input = body.get("input")
        if input is not None and not isinstance(input, dict):
            raise bad_request("input must be a JSON object")
        metadata = validate_metadata(body.get("metadata"))
        self.sessions.consume(nonce)
        return self.executions.run(workflow_external_id, version, dict(input or {}), metadata)

    def cancel(self, execution_id: str, body: Json) -> Json:
        """``POST /workflows/executions/{id}/cancel``."""
        _reject_unknown(body, ("reason",), "request body")
        reason = _optional_str(body, "reason", "request")
        return self.executions.cancel(self.executions.require(execution_id), reason)
