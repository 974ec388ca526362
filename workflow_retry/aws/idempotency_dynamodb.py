"""The duplicate guard over DynamoDB: Powertools' idempotency utility (see :mod:`workflow_retry.aws.idempotency`).

Imported only when ``IDEMPOTENCY_TABLE`` is set: Powertools' idempotency package imports boto3.

Each call to the table is bounded by the invocation's remaining time less
:data:`STORE_MARGIN_SECONDS` (:mod:`workflow_retry.boto_clients`): a table that never answers is an
:class:`IdempotencyStoreError` (a quick 503, or the record back to its queue) within the invocation.

The record stores the answer a duplicate gets, fitted to :data:`STORED_ANSWER_LIMIT_BYTES` (a DynamoDB
item holds 400 KB; a delivery's answer may be megabytes); this delivery's caller gets the whole answer.
A record that cannot be saved once the work has run does not undo the work: the answer stands, and
the failure is logged (a duplicate may then be handled again, which the attempt ledger keeps from
retrying an execution twice).
"""

from __future__ import annotations

import logging
import math
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
    IdempotencyValidationError,
)

from workflow_retry.answer_size import fit_answer
from workflow_retry.aws.delivery_guard import Handled, Work, reused
from workflow_retry.boto_clients import TimeBoundClient
from workflow_retry.errors import DeliveryInProgressError, IdempotencyStoreError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

KEY_PREFIX = "workflow-retry"
"""Prefix of every record's ``id`` (``workflow-retry#<md5 of the delivery key>``)."""
STORE_MARGIN_SECONDS = 1.0
"""Time kept back from the invocation's remaining time when writing to the table: room to answer."""
STORED_ANSWER_LIMIT_BYTES = 350_000
"""The stored answer's size at most: a DynamoDB item holds 400 KB, with the record's other attributes."""

logger = logging.getLogger(__name__)


class PowertoolsGuard:
    """:class:`~workflow_retry.aws.delivery_guard.DeliveryGuard` with records in DynamoDB table ``table_name``
    (partition key ``id`` (S), TTL attribute ``expiration``), cached in this container's memory."""

    def __init__(self, table_name: str, expiry_seconds: int) -> None:
        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            # The record keeps a hash of the payload's fingerprint: the same key with another payload
            # raises IdempotencyValidationError instead of returning the stored result.
            payload_validation_jmespath="fingerprint",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expiry_seconds,
            use_local_cache=True,
            response_hook=_mark_replayed,
        )
        self._context: Any = None
        # Powertools takes a client; a TimeBoundClient gives each of its calls bounds that fit the time left.
        store = DynamoDBPersistenceLayer(
            table_name=table_name, boto3_client=TimeBoundClient("dynamodb", self._time_left)
        )
        self._once = idempotent_function(
            _run_work,
            data_keyword_argument="delivery",
            persistence_store=store,
            config=self._config,
            key_prefix=KEY_PREFIX,
        )

    def register(self, context: Any) -> None:
        self._context = context
        self._config.register_lambda_context(context)

    def _time_left(self) -> float:
        remaining_ms = getattr(self._context, "get_remaining_time_in_millis", None)
        return math.inf if remaining_ms is None else remaining_ms() / 1000 - STORE_MARGIN_SECONDS

    def run_once(self, key: str, work: Work, *, fingerprint: str) -> Handled:
        answered: list[dict[str, Any]] = []  # the whole answer, once the work has run

        def work_then_fit() -> dict[str, Any]:
            answered.append(work())
            return fit_answer(answered[0], STORED_ANSWER_LIMIT_BYTES, "the idempotency table")

        try:
            outcome = self._once(delivery={"key": key, "fingerprint": fingerprint}, work=work_then_fit)
        except IdempotencyValidationError:
            raise reused(key) from None
        except IdempotencyAlreadyInProgressError:
            raise DeliveryInProgressError(f"delivery {key} is being handled by another invocation") from None
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else type(exc).__name__
            if answered:
                logger.error(
                    "delivery %s was handled, but the idempotency table failed to record it (%s): "
                    "a duplicate may be handled again",
                    key,
                    cause,
                )
                return Handled(result=answered[0], replayed=False)
            raise IdempotencyStoreError(f"the idempotency table failed ({cause}): delivery {key} not handled") from None
        if isinstance(outcome, Handled):
            return outcome
        return Handled(result=answered[0], replayed=False)


def _run_work(delivery: dict[str, str], work: Work) -> dict[str, Any]:
    return work()


def _mark_replayed(response: Any, idempotent_data: DataRecord) -> Handled:
    return Handled(result=response if isinstance(response, dict) else {}, replayed=True)
