"""The AWS Lambda entrypoint: events from SNS, SQS, EventBridge, direct invokes and signed HTTP.

Imported only on the Lambda path (``handler.lambda_handler`` imports it inside the function), so a
Cognite Function never loads boto3 or Powertools. ``entrypoint.lambda_handler`` is the entry.
"""
