"""Execution ID validation: what is accepted, and what each refusal says."""

from __future__ import annotations

import pytest

from workflow_retry.ids import InvalidExecutionId, display_value, parse_execution_id

VALID = "059edaa4-a17a-4102-910e-2c3591500cce"


def test_a_canonical_uuid4_is_accepted_unchanged() -> None:
    assert parse_execution_id(VALID) == VALID


def test_upper_case_is_normalised_to_lower_case() -> None:
    assert parse_execution_id(VALID.upper()) == VALID


@pytest.mark.parametrize(
    ("value", "expected_message"),
    [
        (None, "expected a string, got null"),
        (42, "expected a string, got a number"),
        (True, "expected a string, got a boolean"),
        ([VALID], "expected a string, got an array"),
        ({"id": VALID}, "expected a string, got an object"),
        ("", "is empty"),
        (f" {VALID}", "contains white space"),
        (f"{VALID}\n", "contains white space"),
        (VALID[:-1], "must be 36 characters (a UUID), got 35"),
        (VALID + "0", "must be 36 characters (a UUID), got 37"),
        (VALID.replace("-", ""), "must be 36 characters (a UUID), got 32"),
        ("059edaa4-a17a-4102-910e-2c3591500cc/", "contains characters other than hexadecimal digits and dashes"),
        ("../" * 12, "is not in the canonical 8-4-4-4-12 UUID form"),
        ("059edaa4%2Fa17a-4102-910e-2c35915cce", "is not in the canonical 8-4-4-4-12 UUID form"),
        ("059edaa4-a17a-1102-910e-2c3591500cce", "is a UUID version 1, not version 4"),
        ("059edaa4-a17a-4102-c10e-2c3591500cce", "has an invalid UUID variant"),
        ("059edaa4-a17a-4102-910e-2c3591500cc\u0435", "contains non-ASCII characters"),  # Cyrillic e
        ("059edaa4-a17a-4102-910e-2c3591500cc\x00", "contains control characters"),
        ("g59edaa4-a17a-4102-910e-2c3591500cce", "contains characters other than hexadecimal digits and dashes"),
    ],
)
def test_anything_else_is_refused_with_a_message_that_says_what_is_wrong(value: object, expected_message: str) -> None:
    with pytest.raises(InvalidExecutionId) as caught:
        parse_execution_id(value)
    assert expected_message in str(caught.value)


def test_display_value_keeps_short_strings_and_shortens_long_ones() -> None:
    assert display_value("abc") == "abc"
    shown = display_value("x" * 10_000)
    assert len(shown) < 120
    assert "10000 characters" in shown


def test_display_value_escapes_control_characters_and_describes_containers() -> None:
    assert display_value("a\x00b") == "a\\x00b"
    assert display_value(list(range(1_000_000))) == "<an array of 1000000 items>"
    assert display_value({"a": 1}) == "<an object with 1 keys>"
    assert display_value(None) == "null"
    assert display_value(10**5000) == "<a number>"
