"""The SAM template's monitoring agrees with the code: metric names and namespace, alarms that notify
someone by default, JSON logs, and a dashboard of every outcome metric (YAML only; `make infra-check`
runs cfn-lint and checkov on the same template)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import load_sam_template
from workflow_retry.aws.telemetry import DEFAULT_NAMESPACE, DEFAULT_SERVICE, OUTCOME_METRICS


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_sam_template()


def test_the_function_logs_json_and_publishes_metrics_in_the_namespace_parameter(sam):
    function = sam["Resources"]["RetryFunction"]["Properties"]
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    variables = function["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == DEFAULT_SERVICE
    assert sam["Parameters"]["MetricsNamespace"]["Default"] == DEFAULT_NAMESPACE


def test_the_give_up_alarm_watches_the_metric_the_code_emits(sam):
    alarm = sam["Resources"]["GaveUpAlarm"]["Properties"]
    assert alarm["MetricName"] == OUTCOME_METRICS["gave_up"]
    assert alarm["Namespace"] == {"Ref": "MetricsNamespace"}
    assert alarm["Dimensions"] == [{"Name": "service", "Value": DEFAULT_SERVICE}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["TreatMissingData"]) == ("Sum", 1, "notBreaching")


def test_every_alarm_notifies_the_given_topic_or_else_the_stacks_own(sam):
    alarms = {k: r for k, r in sam["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) >= {"GaveUpAlarm", "FunctionErrorsAlarm", "DeadLetterQueueDepthAlarm"}
    for logical_id, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [
            {"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopicResource"}]}
        ], logical_id
    topic = sam["Resources"]["AlarmTopicResource"]
    assert topic["Condition"] == "CreateAlarmTopic"
    assert sam["Conditions"]["CreateAlarmTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}
    subscription = sam["Resources"]["AlarmEmailSubscription"]
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert subscription["Properties"]["Protocol"] == "email"


def test_the_dashboard_graphs_every_outcome_metric(sam):
    body_template, values = sam["Resources"]["OutcomesDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = json.loads(body_template.replace("${AWS::Region}", "eu-west-1"))
    [graph] = [w for w in body["widgets"] if w["type"] == "metric"]
    metrics = graph["properties"]["metrics"]
    assert [m[1] for m in metrics] == list(OUTCOME_METRICS.values())
    assert all(m[0] == "${Namespace}" and m[2:] == ["service", DEFAULT_SERVICE] for m in metrics)
    assert values["Namespace"] == {"Ref": "MetricsNamespace"}
