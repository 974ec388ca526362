"""What a Lambda container prints: Powertools Logger's JSON lines (and, for metrics, CloudWatch EMF).

Each test runs ``handler.lambda_handler`` in a fresh container, forked after its init
(tests/support/cold_start.py), against the CDF emulator, and parses every line it wrote to stdout
(what CloudWatch Logs keeps).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from emulator import CdfEmulator
from tests.aws.samples import sqs_event
from tests.conftest import FUNCTION_CLIENT_SECRET
from tests.support.cold_start import run_in_container

pytestmark = pytest.mark.process  # each test forks a cold container

ANSWERS = "ANSWERS "

# A cold container: one invocation per event (stdin), each with its own request ID.
INVOKE = f"""
import json, sys, time
from awslambdaric.lambda_context import LambdaContext
import handler

answers = []
for number, event in enumerate(json.load(sys.stdin)):
    deadline = int((time.time() + 60) * 1000)
    context = LambdaContext(f"request-{{number}}", None, None, deadline, "arn:aws:lambda:eu-west-1:1:function:f")
    try:
        answers.append(handler.lambda_handler(event, context))
    except Exception as exc:
        answers.append({{"raised": type(exc).__name__}})
print({ANSWERS!r} + json.dumps(answers))
"""


Lines = list[dict[str, Any]]


def cold_container(*events: dict[str, Any], env: dict[str, str] | None = None) -> tuple[list[Any], Lines]:
    """The answers of a fresh container to ``events``, and every other stdout line parsed as JSON."""
    environment = {**os.environ, "AWS_LAMBDA_FUNCTION_NAME": "workflow-retry", **(env or {})}
    environment.pop("POWERTOOLS_LOG_DEDUPLICATION_DISABLED", None)  # as deployed (tests/conftest.py sets it)
    done = run_in_container(INVOKE, env=environment, input=json.dumps(events), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert FUNCTION_CLIENT_SECRET not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    answers = json.loads(lines[-1].removeprefix(ANSWERS))
    return answers, [json.loads(line) for line in lines[:-1] if line.strip()]


def of_event(lines: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == event]


def test_a_direct_invoke_logs_json_lines_with_the_request_id_and_event_source(lambda_env: CdfEmulator) -> None:
    emu = lambda_env
    failed = emu.seed_execution("wf-nightly", "2", "FAILED")

    [answer], lines = cold_container({"executionIds": [failed["id"], "bad id"]})

    assert answer["counts"]["retried"] == 1
    logs = [line for line in lines if "_aws" not in line]  # EMF metric lines are not log lines
    # The container's start-up warnings come before any invocation; every other line is the invocation's.
    start_up = [line for line in logs if line["location"].startswith("_warn_about_weakened_defaults")]
    logs = [line for line in logs if line not in start_up]
    assert logs
    assert all(line["function_request_id"] == "request-0" for line in logs)
    assert all(line["event_source"] == "direct" for line in logs)
    assert all({"level", "timestamp", "message", "service", "cold_start"} <= line.keys() for line in logs)
    retried, invalid = of_event(logs, "execution")
    assert (retried["level"], retried["execution_id"], retried["outcome"]) == ("INFO", failed["id"], "retried")
    assert (retried["workflow"], retried["version"], retried["attempt"]) == ("wf-nightly", "2", 1)
    assert retried["reason"].startswith("retried from the point of failure")
    assert (invalid["execution_id"], invalid["outcome"]) == ("bad id", "invalid")


def test_each_invocation_carries_its_own_request_id_and_source(lambda_env: CdfEmulator) -> None:
    emu = lambda_env
    a, b = (emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(2))

    answers, lines = cold_container({"executionId": a}, sqs_event({"executionId": b}))

    assert answers[1] == {"batchItemFailures": []}
    results = of_event(lines, "execution")
    assert [(r["execution_id"], r["function_request_id"], r["event_source"]) for r in results] == [
        (a, "request-0", "direct"),
        (b, "request-1", "sqs"),
    ]
    assert [r["cold_start"] for r in results] == [True, False]


def test_a_give_up_is_a_warning_line_on_lambda_too(lambda_env: CdfEmulator) -> None:
    emu = lambda_env
    emu.auto_fail_after_retry = True
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    event = {"executionId": failed, "policy": {"maxAttempts": 1}}

    _, lines = cold_container(event, event, env={"RETRY_LEDGER": "raw"})

    [give_up] = of_event(lines, "gave_up")
    assert (give_up["level"], give_up["execution_id"], give_up["outcome"]) == ("WARNING", failed, "exhausted")
    assert give_up["function_request_id"] == "request-1"


METRIC_NAMES = ["Retried", "Failed", "Exhausted", "GaveUp", "Deferred", "Invalid", "NotFound", "Skipped"]


def emf_lines(lines: Lines) -> Lines:
    """The Embedded Metric Format lines (CloudWatch reads metrics out of these)."""
    return [line for line in lines if "_aws" in line]


def metric_values(emf: dict[str, Any]) -> dict[str, float]:
    """Each metric's one value (EMF allows a list of values per metric: each holds exactly one here)."""
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    values = {metric["Name"]: emf[metric["Name"]] for metric in directive["Metrics"]}
    assert all(isinstance(v, list) and len(v) == 1 for v in values.values()), values
    return {name: value[0] for name, value in values.items()}


def test_each_invocation_emits_one_metric_per_outcome_in_the_given_namespace(lambda_env: CdfEmulator) -> None:
    emu = lambda_env
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    running = emu.seed_execution("wf", "1", "RUNNING")["id"]
    unknown = "00000000-0000-4000-8000-000000000000"

    [answer], lines = cold_container(
        {"executionIds": [failed, running, unknown, "bad id"]}, env={"POWERTOOLS_METRICS_NAMESPACE": "Acme/Retry"}
    )

    assert answer["counts"]["retried"] == 1
    [emf] = emf_lines(lines)
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Acme/Retry"
    assert directive["Dimensions"] == [["service"]]
    assert emf["service"] == "workflow-retry"
    assert [m["Unit"] for m in directive["Metrics"]] == ["Count"] * len(METRIC_NAMES)
    assert metric_values(emf) == {
        "Retried": 1.0,
        "Failed": 0.0,
        "Exhausted": 0.0,
        "GaveUp": 0.0,
        "Deferred": 0.0,
        "Invalid": 1.0,
        "NotFound": 1.0,
        "Skipped": 1.0,
    }


def test_a_give_up_is_counted_once_and_an_sqs_batch_sums_its_records(lambda_env: CdfEmulator) -> None:
    emu = lambda_env
    emu.auto_fail_after_retry = True
    a, b = (emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(2))
    policy = {"maxAttempts": 1}
    batch = sqs_event({"executionId": a, "policy": policy}, {"executionId": b, "policy": policy})

    _, lines = cold_container(batch, {"executionId": a, "policy": policy}, env={"RETRY_LEDGER": "raw"})

    first, second = (metric_values(emf) for emf in emf_lines(lines))
    assert (first["Retried"], first["GaveUp"], first["Exhausted"]) == (2.0, 0.0, 0.0)
    assert (second["Retried"], second["GaveUp"], second["Exhausted"]) == (0.0, 1.0, 1.0)
    assert emf_lines(lines)[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "WorkflowRetry"


# Both entrypoints in one process: the Cognite path's JSON handler on the package logger first, then two
# containers' telemetry (each a new Powertools Logger, as a fresh app builds one).
BOTH_PATHS = f"""
import json
from awslambdaric.lambda_context import LambdaContext
from workflow_retry.logs import log_json_to_stdout
from workflow_retry.aws.telemetry import LambdaTelemetry

log_json_to_stdout()
answers = []
for number in range(2):
    context = LambdaContext(f"request-{{number}}", None, None, 0, "arn:aws:lambda:eu-west-1:1:function:f")
    answers.append(LambdaTelemetry().invocation(context, lambda event, context: "handled", {{}}))
print({ANSWERS!r} + json.dumps(answers))
"""


def test_a_second_logger_finds_powertools_handler_when_another_handler_came_first() -> None:
    # Powertools gives a Logger made after the first the package logger's first handler; once that was
    # the Cognite path's JSON handler, whose formatter Powertools cannot drive (AttributeError), and the
    # tests that ran both paths in one process failed by the order they ran in.
    done = run_in_container(BOTH_PATHS, env={**os.environ, "AWS_DEFAULT_REGION": "eu-west-1"})

    assert done.returncode == 0, done.stderr[-2000:]
    [answers] = [line[len(ANSWERS) :] for line in done.stdout.splitlines() if line.startswith(ANSWERS)]
    assert json.loads(answers) == ["handled", "handled"]
