"""Telling a person when the tool gives up on an execution.

An execution is given up when it is ``exhausted`` (retried ``maxAttempts`` times and failed again),
when its retry failed for a reason that will not pass (a 4xx), or when it is ``skipped`` because its
failure is an access error (a retry would run as the same principal and fail the same way; ``why``
then names the missing capability when the failure's reason does). Each give-up is announced once: a
structured log line always (logger ``workflow_retry.giveup``, level WARNING, message ``gave up on
execution ...``, the fields of :meth:`GiveUp.log_fields` in ``extra``), and an SNS message when
``GIVE_UP_TOPIC_ARN`` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from workflow_retry.boto_clients import bounded_client, no_time_limit, time_left_until

logger = logging.getLogger(__name__)

_SNS_SUBJECT_LIMIT = 100


@dataclass(frozen=True)
class GiveUp:
    """What a person needs to know about an execution the tool will not retry again."""

    execution_id: str
    workflow_external_id: str | None
    version: str | None
    attempts: int | None
    max_attempts: int | None
    outcome: str
    last_reason: str | None
    why: str

    def log_fields(self) -> dict[str, Any]:
        """The structured fields of the give-up's log line (named as every execution event's)."""
        return {
            "event": "gave_up",
            "execution_id": self.execution_id,
            "workflow": self.workflow_external_id,
            "version": self.version,
            "outcome": self.outcome,
            "attempt": self.attempts,
            "max_attempts": self.max_attempts,
            "reason": self.why,
            "last_reason": self.last_reason,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "workflow_retry.gave_up",
            "executionId": self.execution_id,
            "workflowExternalId": self.workflow_external_id,
            "version": self.version,
            "attempts": self.attempts,
            "maxAttempts": self.max_attempts,
            "outcome": self.outcome,
            "lastReasonForIncompletion": self.last_reason,
            "why": self.why,
        }


class GiveUpNotifier(Protocol):
    """Somewhere, besides the log, to tell about a give-up. Raises on failure (the caller logs it)."""

    def notify(self, give_up: GiveUp) -> None: ...


class Announcer:
    """Logs every give-up and passes it to the optional notifiers; a failing notifier never fails a call."""

    def __init__(self, notifiers: tuple[GiveUpNotifier, ...] = ()) -> None:
        self._notifiers = notifiers
        self.announced: list[GiveUp] = []
        """Every give-up announced so far, in order (the caller's run report and metrics count them)."""

    async def announce(self, give_up: GiveUp) -> None:
        self.announced.append(give_up)
        logger.warning(
            "gave up on execution %s of workflow %s after %s attempt(s): %s",
            give_up.execution_id,
            give_up.workflow_external_id,
            give_up.attempts if give_up.attempts is not None else "?",
            give_up.why,
            extra=give_up.log_fields(),
        )
        for notifier in self._notifiers:
            try:
                await asyncio.to_thread(notifier.notify, give_up)
            except Exception as exc:
                logger.error(
                    "could not send the give-up of execution %s to %s: %s",
                    give_up.execution_id,
                    type(notifier).__name__,
                    type(exc).__name__,
                )


class SnsNotifier:
    """Publishes each give-up as JSON to an SNS topic (boto3 imported on first use).

    Each publish is bounded by what is left of ``deadline_seconds`` from the notifier's making (the
    call's deadline): its timeouts and retries fit that time (:mod:`workflow_retry.boto_clients`).
    """

    def __init__(self, topic_arn: str, sns_client: Any = None, *, deadline_seconds: float | None = None) -> None:
        self.topic_arn = topic_arn
        self._sns = sns_client
        self._time_left = (
            no_time_limit if deadline_seconds is None else time_left_until(time.monotonic() + deadline_seconds)
        )

    def notify(self, give_up: GiveUp) -> None:
        # The AWS path only: a Cognite Function without a topic never loads boto3.
        sns = self._sns if self._sns is not None else bounded_client("sns", self._time_left())
        subject = f"Workflow retry gave up: {give_up.workflow_external_id or 'workflow'} {give_up.execution_id}"
        sns.publish(
            TopicArn=self.topic_arn,
            # SNS subjects: printable ASCII, no line breaks, at most 100 characters.
            Subject="".join(c if " " <= c <= "~" else "?" for c in subject)[:_SNS_SUBJECT_LIMIT],
            Message=json.dumps(give_up.to_json()),
            MessageAttributes={
                "outcome": {"DataType": "String", "StringValue": give_up.outcome},
                "workflowExternalId": {
                    "DataType": "String",
                    "StringValue": give_up.workflow_external_id or "-",
                },
            },
        )


def build_announcer(give_up_topic_arn: str | None, deadline_seconds: float | None = None) -> Announcer:
    """The announcer of one call: the log, and the topic when set, published to within the call's deadline."""
    return Announcer((SnsNotifier(give_up_topic_arn, deadline_seconds=deadline_seconds),) if give_up_topic_arn else ())
