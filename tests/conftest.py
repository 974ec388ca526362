"""Shared fixtures: the CDF emulator over real HTTP, real CogniteClients, and a suite-wide secret scan."""

from __future__ import annotations

import gc
import json
import logging
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from cognite.client import ClientConfig, CogniteClient, global_config
from cognite.client.credentials import Token

from emulator import CdfEmulator
from emulator.clients import sdk_client
from tests.support.leaks import CapturingHandler, find_leaks
from workflow_retry.settings import cached_settings

global_config.disable_pypi_version_check = True
# Powertools Logger (the Lambda path) would filter the package's records out of every root handler that
# exists when it starts, this suite's secret scan among them; Lambda needs that (its runtime's root
# handler would print each line twice), the scan must see every record.
os.environ.setdefault("POWERTOOLS_LOG_DEDUPLICATION_DISABLED", "true")

FUNCTION_CLIENT_ID = "test-function"
FUNCTION_CLIENT_SECRET = secrets.token_urlsafe(32)

_captured_logs = CapturingHandler()
_known_secrets: set[str] = {FUNCTION_CLIENT_SECRET}
_emulators: list[CdfEmulator] = []
_leaks_from_workers: list[str] = []
_WORKER_LEAKS_KEY = "workflow_retry_secret_leaks"


def pytest_sessionstart(session: pytest.Session) -> None:
    logging.getLogger().addHandler(_captured_logs)
    for name in ("workflow_retry", "cognite", "emulator"):
        logging.getLogger(name).setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No token, client secret or nonce in any log record, result or error of ``handle`` in the whole suite.

    Under pytest-xdist each worker is its own process with its own logs and emulators: it scans them and
    hands its leaks to the controller (``workeroutput``), which reports them all and fails the run.
    """
    for emu in _emulators:
        _known_secrets.update(emu.issued_tokens, emu.issued_nonces)
    leaks = find_leaks(_captured_logs.texts, _known_secrets)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_WORKER_LEAKS_KEY] = json.dumps(leaks)
        return
    leaks += _leaks_from_workers
    if leaks:
        print(f"\nSECRET LEAK: {len(leaks)} log record(s) hold a token, secret or nonce, e.g. {leaks[:3]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller: keep the leaks a finished worker found (see ``pytest_sessionfinish``)."""
    _leaks_from_workers.extend(json.loads(getattr(node, "workeroutput", {}).get(_WORKER_LEAKS_KEY, "[]")))


def register_secret(value: str) -> None:
    """Tell the suite-wide scan about a secret a test made (webhook secrets, other clients)."""
    _known_secrets.add(value)


def track_emulator(emu: CdfEmulator) -> CdfEmulator:
    """Include an emulator started by a test module in the suite-wide secret scan."""
    _emulators.append(emu)
    return emu


@pytest.fixture(scope="module", autouse=True)
def _long_lived_objects_frozen() -> None:
    """Before each test module, move every object alive (imported modules, session fixtures, caches) out
    of the garbage collector's reach.

    CPython's full collection stops the whole process for a time proportional to the objects it tracks.
    One pytest process imports cognite-sdk, boto3, moto, hypothesis and the rest, and tracks 0.3-2 million
    objects late in a run: on a loaded 2-core machine one full collection then took 0.9-2.6 s (measured,
    docs/architecture.md), longer than the 2 s deadline of the tests that check deadlines, and it landed
    wherever allocation triggered it. A Lambda or a Cognite Function never holds such a heap. Frozen, a
    full collection scans only what the current module made; garbage is collected first, so nothing is lost.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _settings_read_afresh() -> Iterator[None]:
    """Each test reads the settings from its own environment: none inherits another's cached deadline or ledger."""
    cached_settings.cache_clear()
    yield
    cached_settings.cache_clear()


@pytest.fixture(autouse=True)
def _no_function_log_handler_left() -> Iterator[None]:
    """``handle`` gives the package logger a stdout handler for the rest of the process, as a Cognite
    Function needs; in this one process it would print into later tests' stdout (a CLI's --json)."""
    yield
    from workflow_retry.logs import PACKAGE_LOGGER, JsonStdoutHandler

    package = logging.getLogger(PACKAGE_LOGGER)
    for handler in [h for h in package.handlers if isinstance(h, JsonStdoutHandler)]:
        package.removeHandler(handler)


@pytest.fixture(autouse=True)
def _scan_every_handle_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Add every result and exception message of ``handle`` in the suite to the secret scan (a spy only)."""
    from workflow_retry import function

    real_handle = function.handle

    def spying_handle(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result = real_handle(*args, **kwargs)
        except Exception as exc:
            _captured_logs.texts.append(f"{type(exc).__name__}: {exc}")
            raise
        _captured_logs.texts.append(json.dumps(result, default=repr))
        return result

    monkeypatch.setattr(function, "handle", spying_handle)


@pytest.fixture(scope="session")
def cdf_emulator() -> Iterator[CdfEmulator]:
    with CdfEmulator(project="test-project") as emu:
        track_emulator(emu)
        emu.add_client(FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET)
        yield emu


@pytest.fixture
def emu(cdf_emulator: CdfEmulator) -> Iterator[CdfEmulator]:
    """The session's emulator, emptied before each test (clients are kept)."""
    cdf_emulator.reset()
    yield cdf_emulator
    cdf_emulator.reset()


@pytest.fixture
def client(emu: CdfEmulator) -> CogniteClient:
    """A client authenticated with client credentials against the emulator."""
    return make_client(emu, FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET)


@pytest.fixture
def function_client(emu: CdfEmulator) -> CogniteClient:
    """A client holding a bearer token issued for a session, like the one a Cognite Function's runtime
    passes to ``handle``: it cannot create a token-exchange session (chained sessions are limited to
    one level), so a retry needs the function secrets ``client-id`` and ``client-secret``."""
    token = emu.issue_session_token(FUNCTION_CLIENT_ID)
    return CogniteClient(
        ClientConfig(
            client_name="test-function-runtime",
            project=emu.project,
            base_url=emu.base_url,
            credentials=Token(token),
        )
    )


@pytest.fixture
def fast_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings for tests: no SDK backoff waits, short request timeout (read afresh: ``_settings_read_afresh``)."""
    monkeypatch.setenv("RETRY_SDK_MAX_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "60")


def make_client(emu: CdfEmulator, client_id: str, client_secret: str) -> CogniteClient:
    return sdk_client(emu, client_id, client_secret)
