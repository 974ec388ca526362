"""The Toolkit module's extraction pipeline: the function reports to it, may write its runs, and CDF
tells a person when a run fails or when none arrives for longer than the sweep schedule allows."""

from __future__ import annotations

import re

from tests.infra.conftest import load_toolkit_resource, toolkit_variables
from workflow_retry.settings import Settings

PIPELINE = "extraction_pipelines/workflow_retry.ExtractionPipeline.yaml"


def sweep_interval_minutes(cron: str) -> int:
    """The interval of a ``*/N * * * *`` (or ``0 * * * *``: hourly) cron expression."""
    every = re.fullmatch(r"\*/(\d+) \* \* \* \*", cron)
    if every:
        return int(every.group(1))
    assert re.fullmatch(r"\d+ \* \* \* \*", cron), f"add the interval of {cron!r} to this test"
    return 60


def test_the_function_reports_to_the_modules_pipeline_in_its_data_set() -> None:
    pipeline = load_toolkit_resource(PIPELINE)
    function = load_toolkit_resource("functions/fn_workflow_retry.Function.yaml")

    assert function["envVars"]["RETRY_EXTRACTION_PIPELINE"] == pipeline["externalId"]
    assert Settings(extraction_pipeline=pipeline["externalId"]).extraction_pipeline == pipeline["externalId"]
    assert pipeline["dataSetExternalId"] == function["dataSetExternalId"]


def test_a_contact_is_notified_and_the_not_seen_window_fits_the_sweep_schedule() -> None:
    pipeline = load_toolkit_resource(PIPELINE)
    schedule = load_toolkit_resource("functions/fn_workflow_retry.Schedule.yaml")

    assert any(contact["sendNotification"] is True and contact["email"] for contact in pipeline["contacts"])
    interval = sweep_interval_minutes(schedule["cronExpression"])
    # One missed sweep is tolerated, two raise CDF's not-seen alert.
    assert pipeline["notificationConfig"]["allowedNotSeenRangeInMinutes"] == 2 * interval
    assert pipeline["schedule"] == schedule["cronExpression"]


def test_the_runner_group_may_write_runs_in_the_functions_data_set_only() -> None:
    group = load_toolkit_resource("auth/workflow_retry_runner.Group.yaml")
    variables = toolkit_variables()

    [runs] = [c["extractionRunsAcl"] for c in group["capabilities"] if "extractionRunsAcl" in c]
    assert runs["actions"] == ["WRITE"]
    assert runs["scope"] == {"datasetScope": {"ids": [variables["data_set_external_id"]]}}
