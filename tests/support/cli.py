"""The command line run in the test's own process: ``workflow_retry.cli.main`` with its own environment, its
stdout and stderr captured, answered as a finished subprocess would be.

Spawning ``python -m workflow_retry`` costs 1.5-3 s of CPU per call (importing cognite-sdk afresh), which
made these tests most of the suite's CPU time. In-process, the command sees what a process would: only the
environment given here (every ``RETRY_*``, ``CDF_*`` and ``IDP_*`` of the test run removed), fresh
settings and its own once-per-process warnings, and its log lines on stderr at the level ``main``
configures. ``logging.basicConfig`` is a no-op in a process whose root logger already has handlers
(pytest's and the secret scan's), so the handler it would install is installed here instead; records of
the emulator, which serves in this process but not in the user's, are left out of that stderr. A few
tests still run the real ``python -m`` entry point (tests/test_cli.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from workflow_retry import settings

_OWN_PREFIXES = ("RETRY_", "CDF_", "IDP_")


def command_environment(env: Mapping[str, str | None]) -> dict[str, str]:
    """The test run's environment without its ``RETRY_*``/``CDF_*``/``IDP_*``, plus ``env`` (None unsets)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    base.update({name: value for name, value in env.items() if value is not None})
    for name in [name for name, value in env.items() if value is None]:
        base.pop(name, None)
    return base


class _NotTheEmulator(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("emulator")


@contextlib.contextmanager
def _basic_config_to(stderr: io.StringIO) -> Iterator[None]:
    root = logging.getLogger()
    added: list[logging.Handler] = []
    level_before = root.level

    def basic_config(**kwargs: Any) -> None:
        handler = logging.StreamHandler(stderr)
        handler.setFormatter(logging.Formatter(kwargs.get("format")))
        handler.setLevel(kwargs.get("level", logging.WARNING))
        handler.addFilter(_NotTheEmulator())
        root.setLevel(kwargs.get("level", logging.WARNING))
        root.addHandler(handler)
        added.append(handler)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging, "basicConfig", basic_config)
        try:
            yield
        finally:
            for handler in added:
                root.removeHandler(handler)
            root.setLevel(level_before)


def run_in_process(args: Sequence[str], env: Mapping[str, str | None]) -> subprocess.CompletedProcess[str]:
    """``workflow-retry ARGS`` with the environment ``command_environment(env)``, in this process."""
    from workflow_retry.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    environment = command_environment(env)
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name not in environment:
                patch.delenv(name)
        for name, value in environment.items():
            patch.setenv(name, value)
        settings.cached_settings.cache_clear()
        patch.setattr(settings, "_unknown_reported", False)  # a process warns once; each command is one
        with _basic_config_to(stderr), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
        settings.cached_settings.cache_clear()
    return subprocess.CompletedProcess(["workflow-retry", *args], code, stdout.getvalue(), stderr.getvalue())
