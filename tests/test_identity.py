"""Per-workflow credentials: which principal each retry's session is created for.

The mapping itself is pure (first tests); then ``handle`` against the emulator, where each session's
``clientId`` shows whose identity the retried execution continues with.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET, register_secret
from workflow_retry.errors import ConfigurationError
from workflow_retry.identity import (
    ClientCredentials,
    SessionCredentials,
    WorkflowCredentialsMap,
    function_secret_keys,
    function_secrets_source,
)
from workflow_retry.settings import Settings, settings_from_environment

pytestmark = pytest.mark.usefixtures("fast_env")

SALES_ID, SALES_SECRET = "sales-pipelines", secrets.token_urlsafe(24)
FINANCE_ID, FINANCE_SECRET = "finance-pipelines", secrets.token_urlsafe(24)
register_secret(SALES_SECRET)
register_secret(FINANCE_SECRET)

SECRETS = {
    "client-id": FUNCTION_CLIENT_ID,
    "client-secret": FUNCTION_CLIENT_SECRET,
    "sales-id": SALES_ID,
    "sales-secret": SALES_SECRET,
    "fin-id": FINANCE_ID,
    "fin-secret": FINANCE_SECRET,
}
MAP = {"sales-*": "sales", "finance-daily": "fin", "sales-audit": "default"}


# -- the mapping (pure) -------------------------------------------------------------------------------


def test_an_exact_workflow_wins_over_a_pattern_written_before_it() -> None:
    mapping = WorkflowCredentialsMap({"sales-*": "sales", "sales-eu": "eu"})

    assert mapping.set_for("sales-eu") == "eu"
    assert mapping.set_for("sales-us") == "sales"


def test_among_patterns_the_first_that_matches_in_order_wins() -> None:
    mapping = WorkflowCredentialsMap({"sales-eu-*": "eu", "sales-*": "sales", "*-eu-*": "other"})

    assert mapping.set_for("sales-eu-daily") == "eu"
    assert mapping.set_for("sales-us-daily") == "sales"
    assert mapping.set_for("hr-eu-daily") == "other"


def test_an_unmapped_workflow_and_default_use_the_tools_own_principal() -> None:
    mapping = WorkflowCredentialsMap(MAP)

    assert mapping.set_for("hr-weekly") is None
    assert mapping.set_for("sales-audit") is None  # an exception to "sales-*"
    assert mapping.set_for(None) is None
    assert mapping.set_names == ("fin", "sales")


def test_patterns_are_case_sensitive_globs_not_regular_expressions() -> None:
    mapping = WorkflowCredentialsMap({"sales.[ab]?": "sales"})

    assert mapping.set_for("sales.a1") == "sales"
    assert mapping.set_for("sales.c1") is None
    assert mapping.set_for("SALES.a1") is None
    assert mapping.set_for("salesXa1") is None


def test_session_credentials_pick_the_mapped_set_else_the_default() -> None:
    default = ClientCredentials("tool", "tool-secret")
    sessions = SessionCredentials.resolve(default, MAP, function_secrets_source(SECRETS))

    assert sessions.for_workflow("sales-daily") == ClientCredentials(SALES_ID, SALES_SECRET)
    assert sessions.for_workflow("finance-daily") == ClientCredentials(FINANCE_ID, FINANCE_SECRET)
    assert sessions.for_workflow("sales-audit") is default
    assert sessions.for_workflow("hr-weekly") is default


def test_a_missing_mapped_secret_names_the_key_and_never_a_value() -> None:
    partial = {k: v for k, v in SECRETS.items() if k != "sales-secret"}

    with pytest.raises(ConfigurationError) as raised:
        SessionCredentials.resolve(None, MAP, function_secrets_source(partial))

    message = str(raised.value)
    assert "'sales'" in message
    assert "'sales-secret'" in message
    assert SALES_ID not in message
    assert FINANCE_SECRET not in message


def test_function_secret_keys_fit_the_15_characters_cognite_functions_allow() -> None:
    assert function_secret_keys("abcdefgh") == ("abcdefgh-id", "abcdefgh-secret")
    assert all(len(key) <= 15 for key in function_secret_keys("abcdefgh"))


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ('{"sales-*": "Sales"}', "lower-case"),
        ('{"sales-*": "salesteam"}', "1 to 8"),
        ('{" sales": "sales"}', "RETRY_CREDENTIALS_MAP"),
        ("[1, 2]", "RETRY_CREDENTIALS_MAP"),
        ("{not json", "JSON object"),
    ],
)
def test_an_invalid_map_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, value: str, complaint: str) -> None:
    monkeypatch.setenv("RETRY_CREDENTIALS_MAP", value)

    with pytest.raises(ConfigurationError, match=complaint):
        settings_from_environment()


def test_the_map_keeps_the_order_it_was_written_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_CREDENTIALS_MAP", json.dumps({"b-*": "b", "a-*": "a", "*": "c"}))

    assert list(Settings().credentials_map) == ["b-*", "a-*", "*"]


def test_default_cannot_be_defined_as_a_credential_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_CREDENTIAL_SETS", json.dumps({"default": {"clientId": "x", "clientSecretRef": "y"}}))

    with pytest.raises(ConfigurationError, match="tool's own principal"):
        settings_from_environment()


# -- against the emulator: handle() as a Cognite Function ---------------------------------------------


@pytest.fixture
def principals(emu: CdfEmulator) -> CdfEmulator:
    emu.add_client(SALES_ID, SALES_SECRET)
    emu.add_client(FINANCE_ID, FINANCE_SECRET)
    return emu


def session_client_ids(emu: CdfEmulator) -> list[str]:
    """Whom each session was created for: the client of a client-credentials item, else the caller."""
    out = []
    for request in emu.requests_matching("POST", r"/sessions$"):
        [item] = request.body["items"]
        out.append(item.get("clientId") or f"token exchange by {request.client_id}")
    return out


def test_each_retry_gets_one_session_for_the_principal_its_workflow_maps_to(
    principals: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = principals
    monkeypatch.setenv("RETRY_CREDENTIALS_MAP", json.dumps(MAP))
    monkeypatch.setenv("RETRY_CONCURRENCY", "1")  # one after the other: sessions come in the request's order
    workflows = ["sales-daily", "finance-daily", "sales-audit", "hr-weekly", "sales-weekly"]
    ids = [emu.seed_execution(workflow, "1", "FAILED")["id"] for workflow in workflows]

    result = handler.handle({"executionIds": ids}, client, SECRETS)

    assert [r["outcome"] for r in result["results"]] == ["retried"] * 5
    assert session_client_ids(emu) == [SALES_ID, FINANCE_ID, FUNCTION_CLIENT_ID, FUNCTION_CLIENT_ID, SALES_ID]
    retried = [r.path.rsplit("/", 2)[-2] for r in emu.requests_matching("POST", r"/retry$")]
    assert sorted(retried) == sorted(ids)  # in any order: a retry waits for its ledger write, the next goes on
    nonces = [r.body["authentication"]["nonce"] for r in emu.requests_matching("POST", r"/retry$")]
    assert len(set(nonces)) == 5


def test_mapped_workflows_retry_with_client_credentials_where_token_exchange_is_refused(
    principals: CdfEmulator, function_client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # function_client holds a session token, as a Cognite Function's client does: CDF refuses to chain
    # a token-exchange session from it, but a mapped set's client-credentials session is made as usual.
    emu = principals
    monkeypatch.setenv("RETRY_CREDENTIALS_MAP", json.dumps({"sales-*": "sales"}))
    monkeypatch.setenv("RETRY_CONCURRENCY", "1")
    ids = [emu.seed_execution(workflow, "1", "FAILED")["id"] for workflow in ("sales-daily", "hr-weekly")]
    only_sales = {"sales-id": SALES_ID, "sales-secret": SALES_SECRET}

    result = handler.handle({"executionIds": ids}, function_client, only_sales)

    sales, hr = result["results"]
    assert sales["outcome"] == "retried"
    assert hr["outcome"] == "failed"
    assert "token-exchange session was refused" in hr["reason"]
    assert session_client_ids(emu) == [SALES_ID, f"token exchange by {FUNCTION_CLIENT_ID}"]


def test_without_a_map_every_retry_runs_as_the_tools_principal(principals: CdfEmulator, client: CogniteClient) -> None:
    emu = principals
    ids = [emu.seed_execution(workflow, "1", "FAILED")["id"] for workflow in ("sales-daily", "finance-daily")]

    handler.handle({"executionIds": ids}, client, SECRETS)

    assert session_client_ids(emu) == [FUNCTION_CLIENT_ID, FUNCTION_CLIENT_ID]


def test_a_missing_mapped_secret_is_a_configuration_error_before_any_request(
    principals: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = principals
    monkeypatch.setenv("RETRY_CREDENTIALS_MAP", json.dumps(MAP))
    failed = emu.seed_execution("hr-weekly", "1", "FAILED")  # not even a mapped workflow: the map is checked whole
    partial: dict[str, Any] = {k: v for k, v in SECRETS.items() if k != "fin-id"}

    with pytest.raises(ConfigurationError, match=r"credential set 'fin'.*'fin-id'"):
        handler.handle({"executionId": failed["id"]}, client, partial)
    assert emu.requests == []


def test_mapped_credentials_cdf_refuses_fail_that_workflows_retry_only(
    principals: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = principals
    monkeypatch.setenv("RETRY_CREDENTIALS_MAP", json.dumps({"sales-*": "sales"}))
    wrong = secrets.token_urlsafe(24)
    register_secret(wrong)
    ids = [emu.seed_execution(workflow, "1", "FAILED")["id"] for workflow in ("sales-daily", "hr-weekly")]

    result = handler.handle({"executionIds": ids}, client, {**SECRETS, "sales-id": SALES_ID, "sales-secret": wrong})

    outcomes = {r["executionId"]: r for r in result["results"]}
    assert outcomes[ids[0]]["outcome"] == "failed"
    assert "session" in outcomes[ids[0]]["reason"]
    assert outcomes[ids[1]]["outcome"] == "retried"
    assert emu.requests_matching("POST", rf"/workflows/executions/{ids[0]}/retry$") == []
