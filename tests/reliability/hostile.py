"""Hostile input for the property-based tests: near-miss IDs, odd JSON, huge and deep values, broken bodies.

Every strategy here is built to be cheap per example (big values are made by repetition, not drawn
character by character), so that 10,000 examples per entrypoint stay within seconds.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from hypothesis import strategies as st

from tests.reliability.conftest import UUID_V4

CANONICAL = re.compile(UUID_V4)

valid_ids = st.uuids(version=4).map(str)

KNOWN_IDS = (
    "0b0e8a52-8c1f-4b7e-9a57-1f0c2f6d9a01",
    "5d6e7f80-91a2-4b3c-8d4e-5f6071829a02",
    "9a8b7c6d-5e4f-4a3b-b2c1-d0e9f8a7b603",
)
"""Executions the hostile tests seed as FAILED: some generated payloads name them, and retry them."""
known_ids = st.sampled_from(KNOWN_IDS)

LOOK_ALIKES = {
    "a": "\u0430",  # Cyrillic a
    "e": "\u0435",  # Cyrillic e
    "c": "\u0441",  # Cyrillic es
    "0": "\uff10",  # fullwidth zero
    "1": "\u0661",  # Arabic-Indic one (a unicode digit)
    "-": "\u2010",  # hyphen
}

_INSERTS = [
    "../",
    "..",
    "/",
    "%2F",
    "%2f",
    "%2e%2e%2f",
    "\\",
    "?",
    "#",
    "?x=1",
    "/retry",
    "\x00",
    "%00",
    " ",
    "\t",
    "\n",
    "\u200b",  # zero-width space
    "\u00a0",  # no-break space
    ";",
    "&",
    "@",
    ":",
    "*",
    "{",
    "}",
]


def _look_alike(uuid: str, position: int) -> str:
    positions = [i for i, ch in enumerate(uuid) if ch in LOOK_ALIKES]
    i = positions[position % len(positions)]
    return uuid[:i] + LOOK_ALIKES[uuid[i]] + uuid[i + 1 :]


def _with_version(uuid: str, version: str) -> str:
    return uuid[:14] + version + uuid[15:]


def _with_variant(uuid: str, variant: str) -> str:
    return uuid[:19] + variant + uuid[20:]


near_miss_ids = st.one_of(
    valid_ids.map(str.upper),  # valid: normalised to lower case
    st.builds(_with_version, valid_ids, st.sampled_from("0123567890abcdef")),
    st.builds(_with_variant, valid_ids, st.sampled_from("01234567cdef")),
    st.builds(lambda u, i, s: u[:i] + s + u[i:], valid_ids, st.integers(0, 36), st.sampled_from(_INSERTS)),
    st.builds(lambda u, i, s: u[:i] + s + u[i + 1 :], valid_ids, st.integers(0, 35), st.sampled_from(_INSERTS)),
    st.builds(_look_alike, valid_ids, st.integers(0, 40)),
    valid_ids.map(lambda u: u.replace("-", "")),
    valid_ids.map(lambda u: "{" + u + "}"),
    valid_ids.map(lambda u: "urn:uuid:" + u),
    valid_ids.map(lambda u: u[:-1]),
    valid_ids.map(lambda u: u + "0"),
    valid_ids.map(lambda u: f"../{u}/retry"),
    valid_ids.map(lambda u: f"{u}/../../../token/inspect"),
    valid_ids.map(lambda u: f"{u}%2F..%2Fretry"),
    st.sampled_from(["", " ", "null", "None", "undefined", "0", "-1", "../../etc/passwd", "%2e%2e", "\x00" * 36]),
)

PAYLOAD_KEYS_LIST = ["executionId", "executionIds", "id", "workflowExternalId", "items", "dryRun", "policy", "sweep"]

huge_strings = st.builds(
    lambda piece, n: piece * n, st.sampled_from(["a", "../", "\x00", "é", "0-"]), st.integers(1, 200_000)
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**320),  # beyond str() limits of int
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)


def nested(depth: int, leaf: Any, as_dict: bool) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"items": value} if as_dict else [value]
    return value


deep_values = st.builds(nested, st.integers(10, 5_000), near_miss_ids, st.booleans())

KEYS = st.sampled_from(
    [*PAYLOAD_KEYS_LIST, "x", "", "Type", "Message", "detail", "detail-type", "\x00", "é", "__proto__"]
)

json_values: st.SearchStrategy[Any] = st.deferred(
    lambda: st.one_of(
        scalars,
        near_miss_ids,
        st.lists(json_values, max_size=3),
        st.dictionaries(KEYS, json_values, max_size=3),
    )
)
"""Random JSON (kept shallow and small: deep and big values have their own strategies)."""

id_values = st.one_of(near_miss_ids, valid_ids, known_ids, scalars, json_values, huge_strings, deep_values)
id_lists = st.one_of(
    st.lists(id_values, max_size=8),
    st.builds(lambda v, n: [v] * n, near_miss_ids, st.integers(900, 3_000)),  # enormous arrays
    deep_values,
    scalars,
)


payload_dicts = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "executionId": id_values,
            "executionIds": id_lists,
            "id": id_values,
            "workflowExternalId": st.one_of(st.text(max_size=20), scalars),
            "items": st.one_of(
                st.lists(st.one_of(json_values, st.builds(lambda i: {"id": i}, id_values)), max_size=5), scalars
            ),
            "dryRun": st.one_of(st.just(True), scalars),
            "policy": st.one_of(json_values, st.just({"maxAttempts": "many"}), st.just({"skipReasonPatterns": ["("]})),
            "sweep": st.one_of(json_values, st.just({"workflows": ["x" * 300]}), st.just({"lookbackMinutes": -1})),
        },
    ),
    st.dictionaries(KEYS, json_values, max_size=4),
)

payloads = st.one_of(payload_dicts, json_values, deep_values, huge_strings)
"""What a caller could put in a Cognite Function's ``data`` or a direct invoke."""


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value)
    except (ValueError, RecursionError, TypeError):
        return "[]"


def deep_json_text(depth: int, opener: str) -> str:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return '{"a":' * depth + "1" + closer * depth
    return opener * depth + closer * depth


def sns_envelope(message: str) -> dict[str, str]:
    """SNS -> SQS without raw delivery: the message inside a complete notification envelope.

    Its ``MessageId`` follows from the message, as SNS gives each message its own: the same message
    twice is a duplicate, another message never reuses a key (that attack has tests of its own in
    tests/aws/test_duplicate_deliveries.py, where it is refused).
    """
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid5(uuid.NAMESPACE_URL, message)),
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:workflow-failures",
        "Message": message,
        "Timestamp": "2021-01-19T10:07:07.287Z",
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJl",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }


message_texts = st.one_of(
    payloads.map(_dumps),
    st.text(max_size=60),  # not JSON at all
    payloads.map(_dumps).map(lambda t: t[: len(t) // 2]),  # truncated JSON
    st.builds(deep_json_text, st.integers(100, 200_000), st.sampled_from("[{")),
    st.builds(lambda inner: json.dumps(sns_envelope(inner)), payloads.map(_dumps)),
    st.builds(lambda n: json.dumps(sns_envelope(deep_json_text(n, "["))), st.integers(100, 50_000)),
    st.builds(lambda d: json.dumps({"detail-type": "x", "detail": d, "id": 1}), json_values),
    st.just('{"executionId": "\\ud800"}'),  # a lone surrogate, escaped
    st.just("\ufeff{}"),  # a byte order mark
)
"""Message texts as SNS and SQS carry them."""

bodies = st.one_of(
    message_texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=64),  # not UTF-8
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(100, 100_000)),
)
"""Raw HTTP bodies."""

_ID = "6f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"

KNOWN_PAYLOADS: dict[str, Any] = {
    "not-an-object": ["executionId"],
    "a-string": "6f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
    "null": None,
    "empty-object": {},
    "empty-list": {"executionIds": []},
    "1001-ids": {"executionIds": ["../x"] * 1001},
    "300k-character-id": {"executionId": "a" * 300_000},
    "null-bytes": {"executionId": "\x00" * 36},
    "traversal": {"executionIds": [f"../{_ID}/retry", f"{_ID}/../../../token/inspect", "../../etc/passwd"]},
    "encoded-slash": {"executionId": f"{_ID}%2F..%2Fretry"},
    "query-and-fragment": {"executionIds": [f"{_ID}?x=1", f"{_ID}#x", f"{_ID}/retry"]},
    "look-alike": {"executionId": _ID.replace("a", "\u0430")},
    "upper-case": {"executionId": _ID.upper()},
    "version-1": {"executionId": _ID[:14] + "1" + _ID[15:]},
    "white-space": {"executionIds": [f" {_ID}", f"{_ID}\n", _ID.replace("-", "\u2010")]},
    "huge-integer": {"executionIds": [10**400, 1.5, True, None, {"id": _ID}]},
    "deep-list": {"executionIds": nested(50_000, _ID, as_dict=False)},
    "deep-items": {"items": nested(50_000, _ID, as_dict=True)},
    "deep-policy": {"executionId": _ID, "policy": nested(10_000, 1, as_dict=True)},
    "bad-policy": {"executionId": _ID, "policy": {"skipReasonPatterns": ["("]}},
    "bad-sweep": {"sweep": {"workflows": ["x" * 300], "lookbackMinutes": -1}},
    "sweep-and-ids": {"sweep": {}, "executionId": _ID},
    "dry-run-not-bool": {"executionId": _ID, "dryRun": "yes"},
}
"""Hand-picked payloads for ``handle`` and direct invokes (the quick run)."""

KNOWN_MESSAGES: dict[str, str] = {
    "not-json": "Hello from SNS!",
    "truncated-json": '{"executionId": "6f0c1a2b-',
    "deep-array": deep_json_text(100_000, "["),
    "deep-object": deep_json_text(100_000, "{"),
    "lone-surrogate": '{"executionId": "\\ud800"}',
    "byte-order-mark": "\ufeff{}",
    "huge-id": json.dumps({"executionId": "a" * 200_000}),
    "nested-sns-not-json": json.dumps(sns_envelope("{not json")),
    "nested-sns-deep": json.dumps(sns_envelope(deep_json_text(50_000, "["))),
    "nested-sns-incomplete": json.dumps({"Type": "Notification", "TopicArn": "arn", "Message": "{}"}),
    "eventbridge-bad": json.dumps({"detail-type": "x", "detail": "../x", "id": 1}),
    "traversal": json.dumps({"executionIds": [f"../{_ID}/retry", f"{_ID}%2F..%2Fretry"]}),
}
"""Hand-picked message texts for SNS, SQS and HTTP bodies (the quick run)."""

KNOWN_ID_TEXTS: list[str] = [
    "../../etc/passwd",
    f"../{_ID}/retry",
    f"{_ID}%2F..%2Fretry",
    f"{_ID}?x=1",
    f"{_ID}#x",
    f" {_ID}",
    _ID.replace("a", "\u0430"),
    _ID.upper(),
    _ID[:14] + "1" + _ID[15:],
    "-rf",
    "",
    "a" * 100_000,
]
"""Hand-picked command-line IDs (an argument cannot hold a NUL)."""
