"""Entrypoints: ``handle`` for Cognite Functions, ``lambda_handler`` for AWS Lambda.

Thin adapters: the work lives in the ``workflow_retry`` package. The Lambda path's modules (boto3,
Powertools) are imported only when ``lambda_handler`` is first called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cognite.client import CogniteClient

from workflow_retry import function


def handle(
    data: object,
    client: CogniteClient,
    secrets: Mapping[str, str] | None = None,
    function_call_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Cognite Function entrypoint: retry the failed workflow executions named in ``data``."""
    return function.handle(data, client, secrets, function_call_info)


def lambda_handler(event: object, context: Any) -> dict[str, Any]:
    """AWS Lambda entrypoint: SNS, SQS, EventBridge, direct invokes and signed HTTP (README (AWS))."""
    # Imported here, not at the top: a Cognite Function never loads boto3 or Powertools.
    from workflow_retry.aws.entrypoint import lambda_handler as aws_lambda_handler

    return aws_lambda_handler(event, context)
