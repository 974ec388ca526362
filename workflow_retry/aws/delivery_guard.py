"""What every duplicate guard shares: the :class:`DeliveryGuard` protocol, its :class:`Handled` answer and
the :data:`Work` it runs (the rules: :mod:`workflow_retry.aws.idempotency`).

Both guards import this module: :mod:`~workflow_retry.aws.idempotency` (the factories and the
in-memory guard) and :mod:`~workflow_retry.aws.idempotency_dynamodb` (the guard over Powertools).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from workflow_retry.errors import DeliveryKeyReusedError

Work = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Handled:
    """What became of one delivery: its result, and whether it came from an earlier delivery."""

    result: dict[str, Any]
    replayed: bool


class DeliveryGuard(Protocol):
    """Runs the work of a delivery key at most once (see the module docstring)."""

    def register(self, context: Any) -> None:
        """The invocation's Lambda context: an in-progress record lapses when its time is up."""
        ...

    def run_once(self, key: str, work: Work, *, fingerprint: str) -> Handled:
        """The work's result, or the stored result of an earlier delivery of the same key and payload.

        ``fingerprint`` is the payload's hash. Raises :class:`DeliveryKeyReusedError` when the key was
        taken for another payload, :class:`~workflow_retry.errors.DeliveryInProgressError` while
        another invocation handles the key, and :class:`~workflow_retry.errors.IdempotencyStoreError`
        when the store fails before the work (which is then not done); a store that fails once the work
        has run does not undo it: its result is returned. An exception from the work itself
        propagates, and nothing is remembered.
        """
        ...


def reused(key: str) -> DeliveryKeyReusedError:
    """The error of a key that came again with another payload (the same words from every guard)."""
    return DeliveryKeyReusedError(
        f"delivery {key} came before with another payload: refused (a delivery key belongs to one payload)"
    )
