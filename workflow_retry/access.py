"""The access check (``python -m workflow_retry check-access``): can each retried workflow's tasks run?

A retry binds a session of the tool's principal (or of the credential set the workflow is mapped to,
:mod:`workflow_retry.identity`), and CDF runs the execution's remaining tasks with that session. A task
that needs a capability the principal lacks fails again on every attempt. This module finds such gaps
before the first retry:

1. :func:`task_needs` says, per task type, which capabilities a task needs (subworkflows are followed;
   ``cdf`` and ``dynamic`` tasks cannot be known ahead and are reported as not checked);
2. :func:`check_access` compares those needs with what each principal holds (``GET /token/inspect``)
   and returns an :class:`AccessReport`: pure, no I/O;
3. :func:`read_and_check` does the reads through an :class:`AccessReader` (the SDK adapter is
   :class:`SdkAccessReader`) and calls 2.

The capabilities per task type and where they are documented: docs/identity-and-access.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

from cognite.client import AsyncCogniteClient, CogniteClient
from cognite.client.exceptions import CogniteAuthError, CogniteException

from workflow_retry.cdf import as_request_error
from workflow_retry.errors import CdfRequestError
from workflow_retry.identity import WorkflowCredentialsMap
from workflow_retry.policy import WorkflowSelector

DEFAULT_PRINCIPAL_NAME = "default"
MAX_SUBWORKFLOW_DEPTH = 10
_VERSIONS_PAGE = 100
_MAX_VERSION_PAGES = 100

CALL_FUNCTION_DOC = "https://docs.cognite.com/20230101/function-calls/call-a-function-asynchronously"
RUN_TRANSFORMATION_DOC = "https://docs.cognite.com/20230101/transformations/run-a-transformation"
SIMULATORS_ACL_DOC = (
    "https://hub.cognite.com/simulator-integration-388/"
    "important-update-new-access-control-requirements-for-simulator-integration-service-4313"
)
RETRY_DOC = "https://docs.cognite.com/20230101/workflow-executions/retry-workflow-execution"
SESSIONS_DOC = "https://docs.cognite.com/20230101/sessions/create-sessions"


@dataclass(frozen=True, order=True)
class Capability:
    """One action of one ACL, spelled as ``GET /token/inspect`` and Toolkit groups do: ``functionsAcl:RUN``."""

    acl: str
    action: str

    @classmethod
    def of(cls, acl: str, action: str) -> Capability:
        """Normalised: ``workflowOrchestrationACL`` (the API reference's spelling) becomes ``...Acl``."""
        name = acl[:-3] + "Acl" if acl.endswith("ACL") else acl
        return cls(name, action.upper())

    def __str__(self) -> str:
        return f"{self.acl}:{self.action}"


@dataclass(frozen=True)
class Need:
    """A capability something needs, why, and where that is documented."""

    capability: Capability
    why: str
    source: str


TOOL_NEEDS: tuple[Need, ...] = (
    Need(Capability("workflowOrchestrationAcl", "READ"), "reads executions and workflow versions", RETRY_DOC),
    Need(Capability("workflowOrchestrationAcl", "WRITE"), "retries executions", RETRY_DOC),
    Need(Capability("sessionsAcl", "CREATE"), "creates each retry's session", SESSIONS_DOC),
)
"""What the tool's own principal needs, whatever the workflows hold."""


@dataclass(frozen=True)
class TaskNeeds:
    """What one task of a workflow version needs; ``not_checked`` says why it cannot be known ahead."""

    task: str
    task_type: str
    needs: tuple[Need, ...] = ()
    not_checked: str | None = None


def task_needs(
    task: Mapping[str, Any],
    versions: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]] | None = None,
    *,
    prefix: str = "",
    depth: int = 0,
) -> list[TaskNeeds]:
    """The needs of one task definition (a ``workflowDefinition.tasks`` item), its nested tasks included.

    ``versions`` holds the tasks of workflow versions a subworkflow task may refer to, by
    (externalId, version); a reference not in it is reported as not checked.
    """
    name = prefix + str(task.get("externalId") or "?")
    task_type = str(task.get("type") or "?")
    given = task.get("parameters")
    parameters: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    match task_type:
        case "function":
            target = _external_id(parameters.get("function"))
            need = Need(Capability("functionsAcl", "RUN"), f"calls function {target}", CALL_FUNCTION_DOC)
            return [TaskNeeds(name, task_type, (need,))]
        case "transformation":
            details = parameters.get("transformation")
            target = _external_id(details)
            why = f"runs transformation {target}"
            own_credentials = isinstance(details, Mapping) and details.get("useTransformationCredentials") is True
            if not own_credentials:
                why += " (and reads and writes its data as this principal: not checked)"
            return [
                TaskNeeds(
                    name, task_type, (Need(Capability("transformationsAcl", "WRITE"), why, RUN_TRANSFORMATION_DOC),)
                )
            ]
        case "simulation":
            details = parameters.get("simulation")
            routine = details.get("routineExternalId") if isinstance(details, Mapping) else None
            need = Need(Capability("simulatorsAcl", "RUN"), f"runs simulation routine '{routine}'", SIMULATORS_ACL_DOC)
            return [TaskNeeds(name, task_type, (need,))]
        case "cdf":
            request = parameters.get("cdfRequest")
            what = (
                f"{request.get('method', '?')} {request.get('resourcePath', '?')}"
                if isinstance(request, Mapping)
                else "a request"
            )
            return [
                TaskNeeds(name, task_type, not_checked=f"calls the CDF API ({what}): needs that endpoint's capability")
            ]
        case "dynamic":
            return [TaskNeeds(name, task_type, not_checked="its tasks are decided while the workflow runs")]
        case "subworkflow":
            return _subworkflow_needs(name, parameters.get("subworkflow"), versions or {}, depth)
        case _:
            return [TaskNeeds(name, task_type, not_checked=f"unknown task type '{task_type}'")]


def _subworkflow_needs(
    name: str, details: object, versions: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]], depth: int
) -> list[TaskNeeds]:
    if not isinstance(details, Mapping) or depth >= MAX_SUBWORKFLOW_DEPTH:
        return [TaskNeeds(name, "subworkflow", not_checked="subworkflow nested too deep or malformed")]
    tasks = details.get("tasks")
    if tasks is None and "workflowExternalId" in details:
        key = (str(details["workflowExternalId"]), str(details.get("version")))
        tasks = versions.get(key)
        if tasks is None:
            return [TaskNeeds(name, "subworkflow", not_checked=f"workflow {key[0]}:{key[1]} could not be read")]
    if not isinstance(tasks, Sequence) or isinstance(tasks, str):
        return [TaskNeeds(name, "subworkflow", not_checked="its tasks are not a list")]
    out: list[TaskNeeds] = []
    for inner in tasks:
        if isinstance(inner, Mapping):
            out += task_needs(inner, versions, prefix=f"{name}/", depth=depth + 1)
    return out


def subworkflow_references(tasks: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """The (workflow, version) pairs the subworkflow tasks of ``tasks`` refer to (inline ones followed)."""
    found: set[tuple[str, str]] = set()
    for task in tasks:
        parameters = task.get("parameters")
        details = parameters.get("subworkflow") if isinstance(parameters, Mapping) else None
        if task.get("type") != "subworkflow" or not isinstance(details, Mapping):
            continue
        if "workflowExternalId" in details:
            found.add((str(details["workflowExternalId"]), str(details.get("version"))))
        elif isinstance(details.get("tasks"), list):
            found |= subworkflow_references(t for t in details["tasks"] if isinstance(t, Mapping))
    return found


@dataclass(frozen=True)
class HeldCapabilities:
    """What a principal holds in the project, read from the body of ``GET /api/v1/token/inspect``.

    ``scoped`` are the capabilities held only for some resources (data sets, IDs, ...): counted as held,
    since whether the scope covers a task's resource cannot be read from the workflow definition.
    """

    subject: str | None
    capabilities: frozenset[Capability]
    scoped: frozenset[Capability] = frozenset()

    @classmethod
    def from_inspect(cls, body: Mapping[str, Any], project: str) -> HeldCapabilities:
        everywhere: set[Capability] = set()
        somewhere: set[Capability] = set()
        for item in body.get("capabilities") or ():
            if not isinstance(item, Mapping) or not _in_project(item.get("projectScope"), project):
                continue
            for acl, grant in item.items():
                if acl == "projectScope" or not isinstance(grant, Mapping):
                    continue
                scope = grant.get("scope")
                whole = not isinstance(scope, Mapping) or "all" in scope
                for action in grant.get("actions") or ():
                    (everywhere if whole else somewhere).add(Capability.of(acl, str(action)))
        subject = body.get("subject")
        return cls(
            subject if isinstance(subject, str) else None,
            frozenset(everywhere | somewhere),
            frozenset(somewhere - everywhere),
        )

    def holds(self, capability: Capability) -> bool:
        return capability in self.capabilities


def _in_project(project_scope: object, project: str) -> bool:
    if not isinstance(project_scope, Mapping):
        return True  # the shape the Toolkit writes: the group lives in this project
    if "allProjects" in project_scope:
        return True
    projects = project_scope.get("projects")
    return isinstance(projects, list) and project in projects


@dataclass(frozen=True)
class Principal:
    """A principal retries run as: ``default`` (the tool's own) or a credential set's name."""

    name: str
    client_id: str | None
    held: HeldCapabilities | None = None
    error: str | None = None
    """Why its capabilities could not be read (no token, 401, 403): everything it needs counts as missing."""

    def label(self) -> str:
        return f"{self.name} ({self.client_id})" if self.client_id else self.name


Status = Literal["held", "held (scoped)", "missing", "not checked"]


@dataclass(frozen=True)
class Check:
    """One need of one task (or of the tool itself, ``workflow`` None) against the principal it runs as."""

    principal: str
    workflow: str | None
    version: str | None
    task: str | None
    task_type: str | None
    capability: Capability | None
    status: Status
    why: str
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "workflow": self.workflow,
            "version": self.version,
            "task": self.task,
            "taskType": self.task_type,
            "capability": self.capability.acl if self.capability else None,
            "action": self.capability.action if self.capability else None,
            "status": self.status,
            "why": self.why,
            "source": self.source,
        }


@dataclass(frozen=True)
class AccessReport:
    """Every check, and the problems that stopped a check from being made (listing failures)."""

    principals: tuple[Principal, ...]
    checks: tuple[Check, ...]
    workflow_versions: int
    problems: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "missing")

    @property
    def ok(self) -> bool:
        return not self.missing and not self.problems and all(p.error is None for p in self.principals)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "principals": [
                {
                    "name": p.name,
                    "clientId": p.client_id,
                    "subject": p.held.subject if p.held else None,
                    "error": p.error,
                }
                for p in self.principals
            ],
            "workflowVersions": self.workflow_versions,
            "missing": [c.to_dict() for c in self.missing],
            "checks": [c.to_dict() for c in self.checks],
            "problems": list(self.problems),
        }


def check_access(
    principals: Mapping[str, Principal],
    workflow_versions: Sequence[Mapping[str, Any]],
    mapping: WorkflowCredentialsMap,
    referenced: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]] | None = None,
    problems: Sequence[str] = (),
) -> AccessReport:
    """Compare what each workflow version's tasks need with what the principal its retries use holds.

    ``principals`` holds ``default`` and every credential set ``mapping`` names. ``referenced`` holds the
    tasks of the workflow versions that subworkflow tasks refer to.
    """
    default = principals[DEFAULT_PRINCIPAL_NAME]
    checks = [_check(default, None, None, None, None, need) for need in TOOL_NEEDS]
    for version in workflow_versions:
        workflow = str(version.get("workflowExternalId"))
        number = str(version.get("version"))
        principal = principals.get(mapping.set_for(workflow) or DEFAULT_PRINCIPAL_NAME, default)
        for task in _tasks_of(version):
            for needs in task_needs(task, referenced):
                if needs.not_checked is not None:
                    checks.append(
                        Check(
                            principal.name,
                            workflow,
                            number,
                            needs.task,
                            needs.task_type,
                            None,
                            "not checked",
                            needs.not_checked,
                        )
                    )
                for need in needs.needs:
                    checks.append(_check(principal, workflow, number, needs.task, needs.task_type, need))
    return AccessReport(tuple(principals.values()), tuple(checks), len(workflow_versions), tuple(problems))


def _check(
    principal: Principal,
    workflow: str | None,
    version: str | None,
    task: str | None,
    task_type: str | None,
    need: Need,
) -> Check:
    status: Status
    if principal.held is None or not principal.held.holds(need.capability):
        status = "missing"
    elif need.capability in principal.held.scoped:
        status = "held (scoped)"
    else:
        status = "held"
    return Check(principal.name, workflow, version, task, task_type, need.capability, status, need.why, need.source)


def _tasks_of(version: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    definition = version.get("workflowDefinition")
    tasks = definition.get("tasks") if isinstance(definition, Mapping) else None
    return [t for t in tasks or () if isinstance(t, Mapping)]


def _version_key(version: Mapping[str, Any]) -> tuple[str, str]:
    return str(version.get("workflowExternalId")), str(version.get("version"))


def _external_id(details: object) -> str:
    external_id = details.get("externalId") if isinstance(details, Mapping) else None
    return f"'{external_id}'" if external_id else "(unnamed)"


# -- reads --------------------------------------------------------------------------------------------


class AccessReader(Protocol):
    """The reads of the access check; each raises :class:`CdfRequestError` on failure."""

    async def inspect_token(self) -> dict[str, Any]:
        """The body of ``GET /api/v1/token/inspect`` for this reader's principal."""
        ...

    async def list_workflow_versions(self, selectors: Sequence[WorkflowSelector]) -> list[dict[str, Any]]:
        """Every workflow version matching the selectors (all of them when there are none)."""
        ...


class SdkAccessReader:
    """:class:`AccessReader` over a cognite-sdk client (raw get/post: the API's JSON as it is)."""

    def __init__(self, client: CogniteClient | AsyncCogniteClient) -> None:
        self._client = client.get_async_client() if isinstance(client, CogniteClient) else client
        self._api = f"/api/v1/projects/{quote(self._client.config.project, safe='')}"

    @property
    def project(self) -> str:
        return self._client.config.project

    async def inspect_token(self) -> dict[str, Any]:
        try:
            response = await self._client.get("/api/v1/token/inspect")
        except CogniteAuthError as exc:
            # The IdP's answer stays out of the message: it is not ours to repeat.
            raise CdfRequestError(None, f"no token from the identity provider ({type(exc).__name__})", False) from None
        except CogniteException as exc:
            raise as_request_error(exc) from None
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def list_workflow_versions(self, selectors: Sequence[WorkflowSelector]) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "filter": {"workflowFilters": [s.as_filter() for s in selectors]},
            "limit": _VERSIONS_PAGE,
        }
        versions: list[dict[str, Any]] = []
        for _ in range(_MAX_VERSION_PAGES):
            try:
                response = await self._client.post(f"{self._api}/workflows/versions/list", json=body)
            except CogniteException as exc:
                raise as_request_error(exc) from None
            answer = response.json()
            page = answer if isinstance(answer, dict) else {}
            versions += [item for item in page.get("items") or () if isinstance(item, dict)]
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
            body["cursor"] = cursor
        return versions


@dataclass
class PrincipalReader:
    """A principal to check and the reader that talks to CDF as it (None: it could not sign in)."""

    name: str
    client_id: str | None
    reader: AccessReader | None
    error: str | None = None


async def read_and_check(
    default: AccessReader,
    project: str,
    principals: Sequence[PrincipalReader],
    mapping: WorkflowCredentialsMap,
    selectors: Sequence[WorkflowSelector],
) -> AccessReport:
    """Read every principal's capabilities and the workflow versions in scope, then :func:`check_access`.

    ``principals`` holds ``default`` first and one entry per credential set the mapping names; the
    versions are read as ``default`` (the principal that reads executions).
    """

    async def inspect(entry: PrincipalReader) -> Principal:
        if entry.reader is None:
            return Principal(entry.name, entry.client_id, error=entry.error or "no credentials")
        try:
            body = await entry.reader.inspect_token()
        except CdfRequestError as exc:
            return Principal(entry.name, entry.client_id, error=f"reading its capabilities failed: {exc.message}")
        return Principal(entry.name, entry.client_id, held=HeldCapabilities.from_inspect(body, project))

    inspected = await asyncio.gather(*(inspect(entry) for entry in principals))
    by_name = {p.name: p for p in inspected}
    problems: list[str] = []
    try:
        versions = await default.list_workflow_versions(selectors)
    except CdfRequestError as exc:
        versions = []
        problems.append(f"listing the workflow versions failed: {exc.message}")
    referenced = {_version_key(v): _tasks_of(v) for v in versions}
    in_scope = set(referenced)
    wanted = set().union(*(subworkflow_references(_tasks_of(v)) for v in versions)) - in_scope
    for _ in range(MAX_SUBWORKFLOW_DEPTH):
        if not wanted:
            break
        selectors_of_references = [WorkflowSelector(external_id=w, version=v) for w, v in sorted(wanted)]
        try:
            extra = await default.list_workflow_versions(selectors_of_references)
        except CdfRequestError as exc:
            problems.append(f"reading the workflows that subworkflow tasks refer to failed: {exc.message}")
            break
        for version in extra:
            referenced[_version_key(version)] = _tasks_of(version)
        found = set().union(*(subworkflow_references(_tasks_of(v)) for v in extra)) if extra else set()
        wanted = found - set(referenced)
    return check_access(by_name, versions, mapping, referenced, problems)
