"""No input can change a request path: an execution ID reaches a URL only as a validated canonical UUIDv4.

The proof has three parts:

1. ``parse_execution_id`` accepts only canonical UUIDv4s, and those need no escaping in a URL: every
   single-character change of a valid ID at every position, every dangerous insert at every position,
   and generated strings (3,000 under ``TEST_DEPTH=deep``, 300 otherwise) are either refused or come out canonical;
2. nothing in the package makes an ``ExecutionId`` but ``parse_execution_id`` (the only ``ExecutionId(``
   call, no ``cast``), and the gateway methods that build URLs take an ``ExecutionId`` (mypy, strict,
   refuses a plain ``str`` there);
3. through ``handle``, an ID written differently (upper case) is sent as the canonical path, and IDs
   that would traverse or inject are never sent (``test_hostile_input`` checks every request path).
"""

from __future__ import annotations

import ast
import string
import typing
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handler
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.reliability.conftest import Harness
from tests.reliability.hostile import CANONICAL, near_miss_ids
from tests.support.depth import examples
from workflow_retry.cdf import SdkCdfGateway
from workflow_retry.ids import ExecutionId, InvalidExecutionId, parse_execution_id

pytestmark = pytest.mark.reliability

PACKAGE = Path(__file__).resolve().parents[2] / "workflow_retry"
VALID = "059edaa4-a17a-4102-910e-2c3591500cce"
DANGEROUS = ["/", "..", "../", "%2F", "%2e", "?", "#", "&", "=", ";", "\\", "\x00", "%00", " ", "\t", "\n", "\u2010"]


def accepted(text: str) -> str | None:
    try:
        return parse_execution_id(text)
    except InvalidExecutionId:
        return None


def assert_safe(text: str) -> None:
    """Refused, or a canonical UUIDv4 that URL quoting leaves unchanged (nothing to escape, no separator)."""
    result = accepted(text)
    if result is not None:
        assert CANONICAL.fullmatch(result), (text, result)
        assert quote(result, safe="") == result
        assert result == text.lower()


def test_every_single_character_change_of_a_valid_id_is_refused_or_canonical() -> None:
    alphabet = string.printable + "\u0430\uff10\u0661\u00a0\u200b\u2010\u2212"
    for position in range(len(VALID)):
        for character in alphabet:
            assert_safe(VALID[:position] + character + VALID[position + 1 :])


def test_every_dangerous_insert_at_every_position_is_refused() -> None:
    for position in range(len(VALID) + 1):
        for insert in DANGEROUS:
            assert accepted(VALID[:position] + insert + VALID[position:]) is None


@settings(max_examples=examples(3_000), deadline=None, derandomize=True, database=None)
@given(text=st.one_of(near_miss_ids, st.text(max_size=40), st.text(alphabet="0123456789abcdefABCDEF-", max_size=40)))
def test_generated_strings_are_refused_or_canonical(text: str) -> None:
    assert_safe(text)


def test_only_parse_execution_id_makes_an_execution_id() -> None:
    makers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        owner: dict[int, str] = {}
        for function in ast.walk(tree):  # breadth first: an inner function overwrites its outer one
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                owner.update((id(node), function.name) for node in ast.walk(function))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name == "ExecutionId" or (name == "cast" and "ExecutionId" in ast.unparse(node)):
                    makers.append(f"{path.relative_to(PACKAGE)}:{owner.get(id(node), '<module>')}")
    assert makers == ["ids.py:parse_execution_id"]


@pytest.mark.parametrize("method", ["get_execution", "retry_execution"])
def test_the_gateway_methods_that_build_urls_take_an_execution_id(method: str) -> None:
    hints = typing.get_type_hints(getattr(SdkCdfGateway, method))
    assert hints["execution_id"] is ExecutionId


@pytest.mark.usefixtures("harness")
def test_an_id_written_differently_is_sent_as_its_canonical_path(harness: Harness) -> None:
    emu = harness.emu
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    secrets = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
    traversal = f"../{execution_id}/cancel"

    result = handler.handle({"executionIds": [execution_id.upper(), traversal]}, harness.cognite_client(), secrets)

    assert [(r["executionId"], r["outcome"]) for r in result["results"]] == [
        (execution_id, "retried"),
        (traversal, "invalid"),
    ]
    paths = {r.raw_path for r in emu.requests if "/workflows/" in r.raw_path}
    base = f"/api/v1/projects/{emu.project}/workflows/executions/{execution_id}"
    assert paths == {base, f"{base}/retry"}
