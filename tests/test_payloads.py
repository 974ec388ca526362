"""Payload shapes a caller may send, and the clear errors for those that cannot be read."""

from __future__ import annotations

import pytest

from workflow_retry.errors import PayloadError
from workflow_retry.payloads import MAX_IDS_PER_CALL, parse_payload

A = "059edaa4-a17a-4102-910e-2c3591500cce"
B = "7d3f8c1e-5b2a-4c9d-8e7f-0a1b2c3d4e5f"


def ids_of(data: object) -> list[str | None]:
    return [r.execution_id for r in parse_payload(data).ids]


def test_single_execution_id() -> None:
    assert ids_of({"executionId": A}) == [A]


def test_list_of_execution_ids_keeps_input_order() -> None:
    assert ids_of({"executionIds": [B, A]}) == [B, A]


def test_an_execution_object_as_the_api_returns_it() -> None:
    execution = {"id": A, "workflowExternalId": "wf", "status": "FAILED", "engineExecutionId": B, "version": "1"}
    assert ids_of(execution) == [A]


def test_the_list_endpoint_shape() -> None:
    assert ids_of({"items": [{"id": A, "workflowExternalId": "wf"}, {"id": B, "workflowExternalId": "wf"}]}) == [A, B]


def test_dry_run_flag() -> None:
    assert parse_payload({"executionId": A, "dryRun": True}).dry_run is True
    assert parse_payload({"executionId": A}).dry_run is False


def test_full_execution_flag() -> None:
    assert parse_payload({"executionId": A, "fullExecution": True}).full_execution is True
    assert parse_payload({"executionId": A}).full_execution is False
    assert parse_payload({"sweep": {}, "fullExecution": True}).full_execution is True
    with pytest.raises(PayloadError, match="fullExecution"):
        parse_payload({"executionId": A, "fullExecution": "yes"})


def test_duplicates_are_kept_once_case_insensitively() -> None:
    request = parse_payload({"executionIds": [A, A.upper(), B, A]})
    assert [r.execution_id for r in request.ids] == [A, B]


def test_invalid_ids_become_per_id_problems_not_errors() -> None:
    request = parse_payload({"executionIds": [A, "not-a-uuid", 7, None]})
    assert [r.shown for r in request.ids] == [A, "not-a-uuid", "7", "null"]
    problems = [r.problem or "" for r in request.ids]
    assert problems[0] == ""
    assert "must be 36 characters" in problems[1]
    assert "expected a string, got a number" in problems[2]


def test_items_that_are_not_execution_objects_are_reported_per_item() -> None:
    request = parse_payload({"items": [{"id": A}, "oops", {"status": "FAILED"}]})
    assert request.ids[0].execution_id == A
    assert request.ids[1].problem == "items[1] is not an execution object with an 'id'"
    assert request.ids[2].problem == "items[2] is not an execution object with an 'id'"


def test_shapes_combine_in_a_fixed_order() -> None:
    assert ids_of({"executionId": A, "executionIds": [B]}) == [A, B]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "no execution ID found in the payload"),
        ({"foo": "bar"}, "no execution ID found in the payload"),
        ({"id": A}, "no execution ID found in the payload"),  # an id alone is not an execution object
        ({"executionIds": []}, "lists no execution ID"),
        ({"executionIds": A}, "executionIds: Input should be a valid list"),
        ({"items": {"id": A}}, "items: Input should be a valid list"),
        ({"executionId": A, "dryRun": "yes"}, "dryRun: Input should be a valid boolean"),
        ("a string", "the payload must be a JSON object, got str"),
        (None, "the payload must be a JSON object, got NoneType"),
        ([A], "the payload must be a JSON object, got list"),
    ],
)
def test_unreadable_payloads_raise_a_clear_error(data: object, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_payload(data)
    assert message in str(caught.value)


def test_at_most_1000_ids_per_call() -> None:
    ids = [A] * MAX_IDS_PER_CALL
    assert ids_of({"executionIds": ids}) == [A]
    with pytest.raises(PayloadError, match="too many execution IDs: 1001, at most 1000 per call"):
        parse_payload({"executionIds": [*ids, B]})


def test_errors_do_not_echo_the_callers_values() -> None:
    secret_looking = "s3cr3t-value-that-must-not-be-echoed"
    with pytest.raises(PayloadError) as caught:
        parse_payload({"executionIds": secret_looking})
    assert secret_looking not in str(caught.value)


def test_a_sweep_may_narrow_the_operators_sweep_but_not_widen_it() -> None:
    from workflow_retry.errors import PolicyOverrideError
    from workflow_retry.settings import Settings

    operator = Settings(sweep_workflows="wf-a,wf-b:2", sweep_statuses="FAILED", sweep_max_restarts=5)
    narrow = parse_payload({"sweep": {"workflows": ["wf-a:3"], "maxRestarts": 5}}, environment={}, settings=operator)
    assert narrow.sweep is not None
    assert narrow.sweep.workflows == ("wf-a:3",)
    for sweep, message in [
        ({"workflows": ["wf-b"]}, "sweep.workflows reaches ['wf-b']"),
        ({"workflows": []}, "means every workflow"),
        ({"statuses": ["FAILED", "TIMED_OUT"]}, "sweep.statuses ['TIMED_OUT'] are not among the operator's"),
        ({"maxRestarts": 6}, "sweep.maxRestarts 6 is above the operator's limit 5"),
    ]:
        with pytest.raises(PolicyOverrideError, match="override refused") as caught:
            parse_payload({"sweep": sweep}, environment={}, settings=operator)
        assert message in str(caught.value)
    loosened = parse_payload(
        {"sweep": {"maxRestarts": 6}}, environment={"RETRY_ALLOW_PAYLOAD_LOOSENING": "true"}, settings=operator
    )
    assert loosened.sweep is not None
    assert loosened.sweep.max_restarts == 6
