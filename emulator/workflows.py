"""Workflow versions: upsert, retrieve and list (CDF API reference: "Workflow versions").

A version is a workflow definition (its tasks) kept per ``(workflowExternalId, version)``.  Executions
point at the definition they ran; seeding an execution registers its version, or reuses the one that
exists, so the versions endpoints and the executions agree.

Also here: which capability a *task* needs when it runs (:data:`TASK_CAPABILITIES`), which the
executions store checks against the session principal of a retry when asked to.

Not thread-safe on its own: the server holds one lock around every call.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from emulator.common import (
    Json,
    copy_json,
    decode_cursor,
    encode_cursor,
    expect_dict,
    expect_int,
    expect_items,
    expect_str,
    now_ms,
    optional_str,
    parse_workflow_filters,
    reject_unknown,
)
from emulator.errors import bad_request, not_found

TASK_TYPES = ("function", "transformation", "cdf", "simulation", "subworkflow", "dynamic")

TASK_CAPABILITIES: dict[str, tuple[str, ...]] = {
    # "Call a function" in the API reference: Required capabilities functionsAcl:RUN
    # (https://docs.cognite.com/20230101/function-calls/call-a-function-asynchronously).
    "function": ("functionsAcl:RUN",),
    # Running a transformation is a write on transformations (transformationsAcl has READ and WRITE only).
    "transformation": ("transformationsAcl:WRITE",),
    # simulatorsAcl has a RUN action (cognite-sdk 8.22 data_classes/capabilities.py, SimulatorsAcl).
    "simulation": ("simulatorsAcl:RUN",),
    # A cdf task needs whatever its request needs, subworkflow and dynamic tasks what their nested
    # tasks need: nothing that the emulator can name in advance.
    "cdf": (),
    "subworkflow": (),
    "dynamic": (),
}
"""Capabilities the principal of an execution's session needs for a task of each type to run."""

MAX_TASKS = 200
"""Tasks per workflow definition (CDF's data workflows limits)."""

VERSION_LIST_LIMIT_DEFAULT = 100
VERSION_LIST_LIMIT_MAX = 1000
_ON_FAILURE = ("abortWorkflow", "skipTask")


@dataclass(frozen=True)
class WorkflowDefinition:
    """The definition an execution runs and a version holds."""

    hash: str
    description: str
    tasks: tuple[Json, ...]
    optional_tasks: frozenset[str]

    def to_json(self) -> Json:
        return {"hash": self.hash, "description": self.description, "tasks": copy_json(list(self.tasks))}

    def task_type(self, external_id: str) -> str | None:
        """The type of the top-level task ``external_id``, if the definition has it."""
        return next((t["type"] for t in self.tasks if t["externalId"] == external_id), None)


def default_task_input(task_type: str, xid: str) -> Json:
    """Parameters of a task of this type that cognite-sdk can load (``WorkflowTaskParameters``)."""
    if task_type == "function":
        return {"function": {"externalId": f"fn-{xid}", "data": {}}, "isAsyncComplete": False}
    if task_type == "transformation":
        return {"transformation": {"externalId": f"tr-{xid}", "concurrencyPolicy": "fail"}}
    if task_type == "cdf":
        return {"cdfRequest": {"resourcePath": "/timeseries", "method": "GET"}}
    if task_type == "simulation":
        return {"simulation": {"routineExternalId": f"routine-{xid}"}}
    if task_type == "subworkflow":
        return {"subworkflow": {"workflowExternalId": f"wf-{xid}", "version": "1"}}
    if task_type == "dynamic":
        return {"dynamic": {"tasks": "${previous.output.tasks}"}}
    return {}


def make_definition(tasks: list[Json], description: str) -> WorkflowDefinition:
    """A definition from API-shaped tasks (``externalId``, ``type``, ``parameters``, ...); its hash
    is derived from the tasks, like CDF's."""
    optional = frozenset(t["externalId"] for t in tasks if t.get("onFailure") == "skipTask")
    digest = hashlib.sha256(json.dumps(tasks, sort_keys=True).encode()).hexdigest()[:32].upper()
    return WorkflowDefinition(digest, description, tuple(tasks), optional)


def definition_from_specs(specs: list[Json], description: str) -> WorkflowDefinition:
    """A definition from executed-task specs of a seed (``taskType``, ``input``, ``dependsOn`` as ids)."""
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
            "parameters": copy_json(spec.get("input", default_task_input(task_type, xid))),
            "retries": spec.get("retries", 3),
            "timeout": spec.get("timeout", 3600),
            "onFailure": on_failure,
        }
        if spec.get("dependsOn"):
            task["dependsOn"] = [{"externalId": dep} for dep in spec["dependsOn"]]
        tasks.append(task)
    definition = make_definition(tasks, description)
    return WorkflowDefinition(definition.hash, description, definition.tasks, frozenset(optional))


def check_identifier(value: Any, what: str) -> str:
    """CDF's rule for ``workflowExternalId`` and ``version``: 1 to 255 characters, no leading or
    trailing white space, no null characters (400 otherwise)."""
    if not isinstance(value, str) or not value:
        raise bad_request(f"{what} is required and must be a non-empty string")
    if len(value) > 255 or value != value.strip() or "\x00" in value:
        raise bad_request(f"{what} must be at most 255 characters, without leading or trailing white space")
    return value


def _parse_task(raw: Any, where: str) -> Json:
    task = expect_dict(raw, where)
    reject_unknown(
        task,
        ("externalId", "type", "name", "description", "parameters", "retries", "timeout", "onFailure", "dependsOn"),
        where,
    )
    xid = check_identifier(task.get("externalId"), f"{where}.externalId")
    task_type = expect_str(task, "type", where)
    if task_type not in TASK_TYPES:
        raise bad_request(f"{where}.type must be one of {', '.join(TASK_TYPES)}")
    parameters = expect_dict(task.get("parameters"), f"{where}.parameters")
    key = "cdfRequest" if task_type == "cdf" else task_type
    if not isinstance(parameters.get(key), dict):
        raise bad_request(f"{where}.parameters.{key} is required for a {task_type} task")
    retries = expect_int(task, "retries", where)
    if retries is not None and not 0 <= retries <= 10:
        raise bad_request(f"{where}.retries must be between 0 and 10")
    timeout = expect_int(task, "timeout", where)
    if timeout is not None and timeout < 1:
        raise bad_request(f"{where}.timeout must be a positive number of seconds")
    on_failure = optional_str(task, "onFailure", where) or "abortWorkflow"
    if on_failure not in _ON_FAILURE:
        raise bad_request(f"{where}.onFailure must be abortWorkflow or skipTask")
    out: Json = {
        "externalId": xid,
        "type": task_type,
        "parameters": copy_json(parameters),
        "retries": 3 if retries is None else retries,
        "timeout": 3600 if timeout is None else timeout,
        "onFailure": on_failure,
    }
    for key in ("name", "description"):
        if (value := optional_str(task, key, where)) is not None:
            out[key] = value
    depends = task.get("dependsOn")
    if depends is not None:
        if not isinstance(depends, list):
            raise bad_request(f"{where}.dependsOn must be a list of {{externalId}}")
        out["dependsOn"] = [
            {"externalId": expect_str(expect_dict(d, f"{where}.dependsOn[]"), "externalId", where)} for d in depends
        ]
    return out


def parse_tasks(raw: Any, where: str = "workflowDefinition.tasks") -> list[Json]:
    """API-shaped tasks, validated: types, parameters, retries 0-10, unique ids, known dependencies."""
    if not isinstance(raw, list):
        raise bad_request(f"{where} must be a list")
    if len(raw) > MAX_TASKS:
        raise bad_request(f"{where} can have at most {MAX_TASKS} tasks")
    tasks = [_parse_task(item, f"{where}[{i}]") for i, item in enumerate(raw)]
    ids = [t["externalId"] for t in tasks]
    if dup := sorted({x for x in ids if ids.count(x) > 1}):
        raise bad_request(f"Task external ids must be unique within a workflow definition: {', '.join(dup)}")
    for task in tasks:
        for dep in task.get("dependsOn", []):
            if dep["externalId"] not in ids:
                raise bad_request(f"Task {task['externalId']} depends on unknown task {dep['externalId']}")
    return tasks


@dataclass
class WorkflowVersion:
    """One workflow version: its definition and when it was created and last replaced."""

    workflow_external_id: str
    version: str
    definition: WorkflowDefinition
    created_time: int
    last_updated_time: int

    def to_json(self) -> Json:
        return {
            "workflowExternalId": self.workflow_external_id,
            "version": self.version,
            "workflowDefinition": self.definition.to_json(),
            "createdTime": self.created_time,
            "lastUpdatedTime": self.last_updated_time,
        }


class WorkflowVersionStore:
    """Workflow versions by ``(workflowExternalId, version)``, in creation order."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], WorkflowVersion] = {}

    def clear(self) -> None:
        """Forget every version."""
        self.by_key.clear()

    def get(self, workflow_external_id: str, version: str) -> WorkflowVersion | None:
        """The version, or None."""
        return self.by_key.get((workflow_external_id, version))

    def put(self, workflow_external_id: str, version: str, definition: WorkflowDefinition) -> WorkflowVersion:
        """Create or replace a version (replacing keeps its createdTime)."""
        now = now_ms()
        existing = self.by_key.get((workflow_external_id, version))
        created = existing.created_time if existing is not None else now
        entry = WorkflowVersion(workflow_external_id, version, definition, created, now)
        self.by_key[(workflow_external_id, version)] = entry
        return entry

    def register(self, workflow_external_id: str, version: str, definition: WorkflowDefinition) -> WorkflowVersion:
        """The existing version, or a new one with ``definition`` (what seeding an execution does)."""
        existing = self.by_key.get((workflow_external_id, version))
        return existing if existing is not None else self.put(workflow_external_id, version, definition)

    def require(self, workflow_external_id: str, version: str) -> WorkflowVersion:
        """The version, or the 404 of ``GET /workflows/{xid}/versions/{v}``."""
        entry = self.by_key.get((workflow_external_id, version))
        if entry is None:
            raise not_found(
                f"Workflow version not found: {workflow_external_id} version {version}",
                missing=[{"workflowExternalId": workflow_external_id, "version": version}],
            )
        return entry

    # --- endpoints ------------------------------------------------------------------------------

    def upsert(self, body: Json) -> Json:
        """``POST /workflows/versions``: create or replace each item's definition."""
        reject_unknown(body, ("items",), "request body")
        items = body.get("items")
        if not isinstance(items, list) or len(items) != 1:
            # cognite-sdk 8.22 sends one version per request (``_CREATE_LIMIT = 1``, api/workflows/versions.py).
            raise bad_request("items must hold exactly one workflow version")
        parsed: list[tuple[str, str, WorkflowDefinition]] = []
        for i, raw in enumerate(items):
            item = expect_dict(raw, f"items[{i}]")
            reject_unknown(item, ("workflowExternalId", "version", "workflowDefinition"), f"items[{i}]")
            xid = check_identifier(item.get("workflowExternalId"), f"items[{i}].workflowExternalId")
            version = check_identifier(item.get("version"), f"items[{i}].version")
            definition = expect_dict(item.get("workflowDefinition"), f"items[{i}].workflowDefinition")
            reject_unknown(definition, ("description", "tasks", "input"), f"items[{i}].workflowDefinition")
            tasks = parse_tasks(definition.get("tasks"), f"items[{i}].workflowDefinition.tasks")
            description = optional_str(definition, "description", f"items[{i}].workflowDefinition") or ""
            parsed.append((xid, version, make_definition(tasks, description)))
        return {"items": [self.put(xid, version, d).to_json() for xid, version, d in parsed]}

    def retrieve(self, workflow_external_id: str, version: str) -> Json:
        """``GET /workflows/{xid}/versions/{v}`` (what cognite-sdk's ``versions.retrieve`` calls)."""
        return self.require(workflow_external_id, version).to_json()

    def by_ids(self, body: Json) -> Json:
        """``POST /workflows/versions/byids``: every item must exist (400 with ``missing`` otherwise)."""
        reject_unknown(body, ("items",), "request body")
        items = expect_items(body)
        keys: list[tuple[str, str]] = []
        for i, raw in enumerate(items):
            item = expect_dict(raw, f"items[{i}]")
            reject_unknown(item, ("workflowExternalId", "version"), f"items[{i}]")
            keys.append(
                (
                    check_identifier(item.get("workflowExternalId"), f"items[{i}].workflowExternalId"),
                    check_identifier(item.get("version"), f"items[{i}].version"),
                )
            )
        if missing := [k for k in keys if k not in self.by_key]:
            raise bad_request(
                "Workflow versions not found",
                missing=[{"workflowExternalId": x, "version": v} for x, v in missing],
            )
        return {"items": [self.by_key[k].to_json() for k in dict.fromkeys(keys)]}

    def list_page(self, body: Json) -> Json:
        """``POST /workflows/versions/list``: ``filter.workflowFilters`` (externalId, optional version),
        ``limit`` 1-1000 (default 100) and ``cursor``."""
        reject_unknown(body, ("filter", "limit", "cursor"), "request body")
        flt = expect_dict(body.get("filter") if body.get("filter") is not None else {}, "filter")
        reject_unknown(flt, ("workflowFilters",), "filter")
        exact, any_version = parse_workflow_filters(flt)
        limit = expect_int(body, "limit", "request")
        limit = VERSION_LIST_LIMIT_DEFAULT if limit is None else limit
        if not 1 <= limit <= VERSION_LIST_LIMIT_MAX:
            raise bad_request(f"limit must be between 1 and {VERSION_LIST_LIMIT_MAX}")
        start = 0
        cursor = optional_str(body, "cursor", "request")
        if cursor is not None:
            offset = decode_cursor(cursor, "wv").get("o")
            if not isinstance(offset, int) or offset < 0:
                raise bad_request("Invalid cursor")
            start = offset
        matching = [
            v for key, v in self.by_key.items() if not (exact or any_version) or key in exact or key[0] in any_version
        ]
        page = matching[start : start + limit]
        out: Json = {"items": [v.to_json() for v in page]}
        if start + limit < len(matching):
            out["nextCursor"] = encode_cursor({"k": "wv", "o": start + limit})
        return out
