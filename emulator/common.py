"""What every emulated API resource shares: JSON helpers, time, ids, request-body validation, cursors.

Nothing here knows about HTTP; validation failures raise the 400 :class:`~emulator.errors.ApiError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

from emulator.errors import bad_request

Json = dict[str, Any]


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
# Validation helpers for request bodies


def expect_dict(value: Any, what: str) -> Json:
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object")
    return value


def optional_str(obj: Json, key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{what}.{key} must be a string")
    return value


def expect_str(obj: Json, key: str, what: str) -> str:
    value = optional_str(obj, key, what)
    if value is None:
        raise bad_request(f"{what}.{key} is required")
    return value


def expect_int(obj: Json, key: str, what: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{what}.{key} must be an integer")
    return value


def reject_unknown(obj: Json, allowed: Iterable[str], what: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise bad_request(f"Unrecognized field(s) in {what}: {', '.join(unknown)}")


def encode_cursor(payload: Json) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> Json:
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


def parse_workflow_filters(flt: Json) -> tuple[set[tuple[str, str]], set[str]]:
    """``filter.workflowFilters`` of the executions and versions list endpoints: the (externalId, version)
    pairs asked for, and the external IDs asked for in any version (both empty: no workflow filter)."""
    exact: set[tuple[str, str]] = set()
    any_version: set[str] = set()
    raw_filters = flt.get("workflowFilters")
    if raw_filters is None:
        return exact, any_version
    if not isinstance(raw_filters, list):
        raise bad_request("filter.workflowFilters must be a list")
    for raw in raw_filters:
        item = expect_dict(raw, "filter.workflowFilters[]")
        reject_unknown(item, ("externalId", "version"), "filter.workflowFilters[]")
        xid = expect_str(item, "externalId", "filter.workflowFilters[]")
        version = optional_str(item, "version", "filter.workflowFilters[]")
        if version is None:
            any_version.add(xid)
        else:
            exact.add((xid, version))
    return exact, any_version


def expect_items(body: Json, limit: int | None = None, noun: str = "items") -> list[Any]:
    """``body["items"]``: a non-empty list of at most ``limit`` entries, else the 400 CDF answers."""
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise bad_request("items must be a non-empty list")
    if limit is not None and len(items) > limit:
        raise bad_request(f"at most {limit} {noun} per request")
    return items
