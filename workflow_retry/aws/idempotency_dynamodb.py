"""The duplicate guard over DynamoDB: Powertools' idempotency utility (see :mod:`workflow_retry.aws.idempotency`).

Imported only when ``IDEMPOTENCY_TABLE`` is set: Powertools' idempotency package imports boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
)

from workflow_retry.aws.idempotency import Handled, Work
from workflow_retry.errors import DeliveryInProgressError, IdempotencyStoreError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

KEY_PREFIX = "workflow-retry"
"""Prefix of every record's ``id`` (``workflow-retry#<md5 of the delivery key>``)."""


class PowertoolsGuard:
    """:class:`~workflow_retry.aws.idempotency.DeliveryGuard` with records in DynamoDB table ``table_name``
    (partition key ``id`` (S), TTL attribute ``expiration``), cached in this container's memory."""

    def __init__(self, table_name: str, expiry_seconds: int) -> None:
        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expiry_seconds,
            use_local_cache=True,
            response_hook=_mark_replayed,
        )
        self._once = idempotent_function(
            _run_work,
            data_keyword_argument="delivery",
            persistence_store=DynamoDBPersistenceLayer(table_name=table_name),
            config=self._config,
            key_prefix=KEY_PREFIX,
        )

    def register(self, context: Any) -> None:
        self._config.register_lambda_context(context)

    def run_once(self, key: str, work: Work) -> Handled:
        try:
            outcome = self._once(delivery={"key": key}, work=work)
        except IdempotencyAlreadyInProgressError:
            raise DeliveryInProgressError(f"delivery {key} is being handled by another invocation") from None
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else type(exc).__name__
            raise IdempotencyStoreError(f"the idempotency table failed ({cause}): delivery {key} not handled") from None
        if isinstance(outcome, Handled):
            return outcome
        return Handled(result=outcome, replayed=False)


def _run_work(delivery: dict[str, str], work: Work) -> dict[str, Any]:
    return work()


def _mark_replayed(response: Any, idempotent_data: DataRecord) -> Handled:
    return Handled(result=response if isinstance(response, dict) else {}, replayed=True)
