"""Extraction pipelines and their runs (CDF API reference: "Extraction Pipelines", "Extraction
Pipelines Runs").

Enough for a tool that reports its own runs: create and retrieve pipelines, report runs
(``{"externalId", "status": success|failure|seen, "message" <= 1,000 characters, "createdTime"}``)
and list them newest first.
A run updates its pipeline's ``lastSuccess`` / ``lastFailure`` / ``lastSeen`` and ``lastMessage``.
Not modelled: the e-mails CDF sends to a pipeline's contacts, pipeline configs, updates and deletes.

Not thread-safe on its own: the server holds one lock around every call.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
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
    reject_unknown,
)
from emulator.errors import ApiError, bad_request

RUN_STATUSES = ("success", "failure", "seen")
MAX_RUN_MESSAGE = 1000
MAX_EXTERNAL_ID = 255
MAX_NAME = 140
MAX_DESCRIPTION = 500
RUNS_LIST_LIMIT_DEFAULT = 100
RUNS_LIST_LIMIT_MAX = 1000
CREATE_LIMIT = 1000
_PIPELINE_FIELDS = (
    "externalId",
    "name",
    "dataSetId",
    "description",
    "rawTables",
    "schedule",
    "contacts",
    "metadata",
    "source",
    "documentation",
    "notificationConfig",
    "createdBy",
)


@dataclass
class ExtractionPipeline:
    """A pipeline: its fields as given, and the runs reported for it (oldest first)."""

    id: int
    fields: Json
    created_time: int
    last_updated_time: int
    runs: list[Json] = field(default_factory=list)
    last: dict[str, int] = field(default_factory=dict)
    last_message: str | None = None

    @property
    def external_id(self) -> str:
        return str(self.fields["externalId"])

    def to_json(self) -> Json:
        out: Json = {"id": self.id, **copy_json(self.fields)}
        out["createdTime"] = self.created_time
        out["lastUpdatedTime"] = self.last_updated_time
        for status, key in (("success", "lastSuccess"), ("failure", "lastFailure"), ("seen", "lastSeen")):
            if status in self.last:
                out[key] = self.last[status]
        if self.last_message is not None:
            out["lastMessage"] = self.last_message
        return out


def _unknown_pipelines(external_ids: list[str]) -> ApiError:
    # The reference does not spell out this error; the emulator answers like CDF's other endpoints
    # that name unknown ids: 400 with "missing" (cognite-sdk raises CogniteNotFoundError for it).
    return bad_request(
        "Extraction pipeline(s) not found", missing=[{"externalId": x} for x in dict.fromkeys(external_ids)]
    )


class ExtractionPipelineStore:
    """Pipelines by external id, with their runs."""

    def __init__(self) -> None:
        self.by_xid: dict[str, ExtractionPipeline] = {}
        self._ids = itertools.count(1)
        self._run_ids = itertools.count(1)

    def clear(self) -> None:
        """Forget every pipeline and run."""
        self.by_xid.clear()

    # --- pipelines ------------------------------------------------------------------------------

    @staticmethod
    def _parse_pipeline(raw: Any, where: str) -> Json:
        item = expect_dict(raw, where)
        reject_unknown(item, _PIPELINE_FIELDS, where)
        xid = expect_str(item, "externalId", where)
        if not 1 <= len(xid) <= MAX_EXTERNAL_ID:
            raise bad_request(f"{where}.externalId must be 1 to {MAX_EXTERNAL_ID} characters")
        name = expect_str(item, "name", where)
        if not 1 <= len(name) <= MAX_NAME:
            raise bad_request(f"{where}.name must be 1 to {MAX_NAME} characters")
        data_set_id = expect_int(item, "dataSetId", where)
        if data_set_id is None or data_set_id < 1:
            raise bad_request(f"{where}.dataSetId is required and must be a positive integer")
        description = optional_str(item, "description", where)
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise bad_request(f"{where}.description must be at most {MAX_DESCRIPTION} characters")
        contacts = item.get("contacts")
        if contacts is not None and not isinstance(contacts, list):
            raise bad_request(f"{where}.contacts must be a list")
        return dict(copy_json(item))

    def create(self, body: Json) -> Json:
        """``POST /extpipes``: 409 with ``duplicated`` for an external id that exists."""
        reject_unknown(body, ("items",), "request body")
        items = expect_items(body, CREATE_LIMIT)
        parsed = [self._parse_pipeline(item, f"items[{i}]") for i, item in enumerate(items)]
        xids = [p["externalId"] for p in parsed]
        duplicated = [x for x in xids if x in self.by_xid] + [x for i, x in enumerate(xids) if x in xids[:i]]
        if duplicated:
            raise ApiError(
                409, "Duplicated external ids", duplicated=[{"externalId": x} for x in dict.fromkeys(duplicated)]
            )
        now = now_ms()
        created = []
        for fields in parsed:
            pipeline = ExtractionPipeline(next(self._ids), fields, now, now)
            self.by_xid[pipeline.external_id] = pipeline
            created.append(pipeline.to_json())
        return {"items": created}

    def by_ids(self, body: Json) -> Json:
        """``POST /extpipes/byids``: items of ``{"id"}`` or ``{"externalId"}``; ``ignoreUnknownIds``."""
        reject_unknown(body, ("items", "ignoreUnknownIds"), "request body")
        items = expect_items(body)
        by_id = {p.id: p for p in self.by_xid.values()}
        found: list[ExtractionPipeline] = []
        missing: list[Json] = []
        for i, raw in enumerate(items):
            item = expect_dict(raw, f"items[{i}]")
            reject_unknown(item, ("id", "externalId"), f"items[{i}]")
            if "id" in item:
                pid = expect_int(item, "id", f"items[{i}]")
                hit = by_id.get(pid) if pid is not None else None
            else:
                hit = self.by_xid.get(expect_str(item, "externalId", f"items[{i}]"))
            if hit is None:
                missing.append(dict(item))
            else:
                found.append(hit)
        if missing and body.get("ignoreUnknownIds") is not True:
            raise bad_request("Extraction pipeline(s) not found", missing=missing)
        return {"items": [p.to_json() for p in found]}

    # --- runs -----------------------------------------------------------------------------------

    def create_runs(self, body: Json) -> Json:
        """``POST /extpipes/runs``: every item names an existing pipeline (400 with ``missing`` otherwise)."""
        reject_unknown(body, ("items",), "request body")
        items = expect_items(body, CREATE_LIMIT)
        parsed: list[tuple[str, str, str | None, int | None]] = []
        for i, raw in enumerate(items):
            where = f"items[{i}]"
            item = expect_dict(raw, where)
            # The wire field is "externalId" (cognite-sdk 8.22 ExtractionPipelineRunWrite.dump renames its
            # extpipe_external_id to it); "extpipeExternalId" is the SDK's name only.
            reject_unknown(item, ("externalId", "status", "message", "createdTime"), where)
            xid = expect_str(item, "externalId", where)
            status = expect_str(item, "status", where)
            if status not in RUN_STATUSES:
                raise bad_request(f"{where}.status must be one of {', '.join(RUN_STATUSES)}")
            message = optional_str(item, "message", where)
            if message is not None and len(message) > MAX_RUN_MESSAGE:
                raise bad_request(f"{where}.message must be at most {MAX_RUN_MESSAGE} characters")
            created = expect_int(item, "createdTime", where)
            if created is not None and created < 0:
                raise bad_request(f"{where}.createdTime must be >= 0")
            parsed.append((xid, status, message, created))
        if unknown := [xid for xid, *_ in parsed if xid not in self.by_xid]:
            raise _unknown_pipelines(unknown)
        now = now_ms()
        out = []
        for xid, status, message, created in parsed:
            run: Json = {"id": next(self._run_ids), "externalId": xid, "status": status, "createdTime": created or now}
            if message is not None:
                run["message"] = message
            pipeline = self.by_xid[xid]
            pipeline.runs.append(run)
            pipeline.last[status] = max(pipeline.last.get(status, 0), run["createdTime"])
            if message is not None:
                pipeline.last_message = message
            pipeline.last_updated_time = now
            out.append(copy_json(run))
        return {"items": out}

    def _list_runs(
        self,
        xid: str,
        statuses: set[str] | None,
        substring: str | None,
        created: tuple[int | None, int | None],
        limit: int | None,
        cursor: str | None,
    ) -> Json:
        limit = RUNS_LIST_LIMIT_DEFAULT if limit is None else limit
        if not 1 <= limit <= RUNS_LIST_LIMIT_MAX:
            raise bad_request(f"limit must be between 1 and {RUNS_LIST_LIMIT_MAX}")
        pipeline = self.by_xid.get(xid)
        if pipeline is None:
            raise _unknown_pipelines([xid])
        start = 0
        if cursor:
            offset = decode_cursor(cursor, "xr").get("o")
            if not isinstance(offset, int) or offset < 0:
                raise bad_request("Invalid cursor")
            start = offset
        low, high = created
        runs = [
            r
            for r in sorted(pipeline.runs, key=lambda r: (r["createdTime"], r["id"]), reverse=True)
            if (statuses is None or r["status"] in statuses)
            and (substring is None or substring in r.get("message", ""))
            and (low is None or r["createdTime"] >= low)
            and (high is None or r["createdTime"] <= high)
        ]
        page = runs[start : start + limit]
        out: Json = {"items": copy_json(page)}
        if start + limit < len(runs):
            out["nextCursor"] = encode_cursor({"k": "xr", "o": start + limit})
        return out

    def list_runs_get(self, query: dict[str, list[str]]) -> Json:
        """``GET /extpipes/runs?externalId=...&limit=&cursor=`` (what cognite-sdk sends without filters)."""
        xid = query.get("externalId", [""])[-1]
        if not xid:
            raise bad_request("query parameter externalId is required")
        raw_limit = query["limit"][-1] if query.get("limit") else None
        try:
            limit = None if raw_limit is None else int(raw_limit)
        except ValueError:
            raise bad_request("query parameter limit must be an integer") from None
        cursor = query["cursor"][-1] if query.get("cursor") else None
        return self._list_runs(xid, None, None, (None, None), limit, cursor)

    def list_runs(self, body: Json) -> Json:
        """``POST /extpipes/runs/list``: ``filter`` {externalId (required), statuses, message.substring,
        createdTime {min, max}}, ``limit`` 1-1000 (default 100), ``cursor``; newest first."""
        reject_unknown(body, ("filter", "limit", "cursor"), "request body")
        flt = expect_dict(body.get("filter"), "filter")
        reject_unknown(flt, ("externalId", "statuses", "message", "createdTime"), "filter")
        xid = expect_str(flt, "externalId", "filter")
        statuses: set[str] | None = None
        if flt.get("statuses") is not None:
            raw = flt["statuses"]
            if not isinstance(raw, list) or any(s not in RUN_STATUSES for s in raw):
                raise bad_request(f"filter.statuses must be a list of {', '.join(RUN_STATUSES)}")
            statuses = set(raw)
        substring = None
        if flt.get("message") is not None:
            message = expect_dict(flt["message"], "filter.message")
            reject_unknown(message, ("substring",), "filter.message")
            substring = optional_str(message, "substring", "filter.message")
        low = high = None
        if flt.get("createdTime") is not None:
            created = expect_dict(flt["createdTime"], "filter.createdTime")
            reject_unknown(created, ("min", "max"), "filter.createdTime")
            low = expect_int(created, "min", "filter.createdTime")
            high = expect_int(created, "max", "filter.createdTime")
        limit = expect_int(body, "limit", "request")
        return self._list_runs(xid, statuses, substring, (low, high), limit, optional_str(body, "cursor", "request"))
