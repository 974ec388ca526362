"""Which entrypoints and features exist in the tree being measured (some land while the bench is written)."""

from __future__ import annotations

import importlib
import importlib.util


def has_lambda_handler() -> bool:
    """Whether ``handler.lambda_handler`` exists."""
    try:
        handler = importlib.import_module("handler")
    except ImportError:
        return False
    return callable(getattr(handler, "lambda_handler", None))


def has_sweep() -> bool:
    """Whether the sweep (``workflow_retry.sweep``) exists."""
    try:
        return importlib.util.find_spec("workflow_retry.sweep") is not None
    except ImportError:
        return False


def default_concurrency() -> int:
    """How many executions ``handle`` works on at once with the default settings."""
    from workflow_retry.settings import Settings

    default = Settings.model_fields["concurrency"].default
    assert isinstance(default, int)
    return default
