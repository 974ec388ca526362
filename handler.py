"""Entrypoints: ``handle`` for Cognite Functions, ``lambda_handler`` for AWS Lambda.

Thin adapters: the work lives in the ``workflow_retry`` package, imported at the first call of an
entrypoint, not with this module: the runtime that imports ``handler`` already holds the SDK (it builds
the client it passes to ``handle``), and the package (pydantic, our models) is all this module would
add to that. Each entrypoint loads only its own path: a Cognite Function never loads boto3 or
Powertools. What the whole cold path costs (import, client, first retry) is measured in
docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cognite.client import CogniteClient


def handle(
    data: object,
    client: CogniteClient,
    secrets: Mapping[str, str] | None = None,
    function_call_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Cognite Function entrypoint: retry the failed workflow executions named in ``data``."""
    from workflow_retry import function

    return function.handle(data, client, secrets, function_call_info)


def lambda_handler(event: object, context: Any) -> dict[str, Any]:
    """AWS Lambda entrypoint: SNS, SQS, EventBridge, direct invokes and signed HTTP (docs/aws.md)."""
    from workflow_retry.aws.entrypoint import lambda_handler as aws_lambda_handler

    return aws_lambda_handler(event, context)
