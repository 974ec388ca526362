"""The command line: ``workflow-retry retry|sweep|status|history|prune|check-access|emulator``.

(Or ``python -m workflow_retry``.)

It reads the same environment as the Lambda (``CDF_PROJECT``, ``CDF_URL`` or ``CDF_CLUSTER``,
``IDP_CLIENT_ID``, ``IDP_TOKEN_URL``, ``IDP_SCOPES``, ``IDP_CLIENT_SECRET`` or
``IDP_CLIENT_SECRET_REF``, and every ``RETRY_*`` setting) and goes through the same core
(``function.execute``). Output: a table by default, ``--json`` for scripts; a progress bar on stderr
when it is a terminal.

Exit codes: 0 when nothing failed; 1 when any ID failed, was invalid or unknown, or was given up
(``exhausted``), or a sweep could not list, or ``check-access`` found a capability missing; 2 for bad
arguments or configuration (nothing was sent); 3 when it cannot authenticate: the identity provider
refused the client, failed or did not answer within the deadline (one line on stderr; nothing was sent
to CDF).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from workflow_retry.errors import IdentityProviderError, RetryToolError
from workflow_retry.models import ExecutionResult, Outcome, RetryReport
from workflow_retry.policy import Action, format_time

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_CANNOT_AUTHENTICATE = 3
EXIT_CODES_HELP = """exit codes:
  0  nothing failed
  1  an ID failed, was invalid, unknown or given up (exhausted), or a sweep could not list,
     or check-access found a capability missing
  2  bad arguments or configuration (nothing was sent to CDF)
  3  cannot authenticate: the identity provider refused the client, failed or did not answer
     within RETRY_DEADLINE_SECONDS (nothing was sent to CDF)
"""
FAILING_OUTCOMES = frozenset({Outcome.FAILED, Outcome.INVALID, Outcome.NOT_FOUND, Outcome.EXHAUSTED})
STATUS_OUTCOMES = {
    Action.RETRY: Outcome.RETRIED,
    Action.REPORT_ONLY: Outcome.DRY_RUN,
    Action.SKIP: Outcome.SKIPPED,
    Action.DEFER: Outcome.DEFERRED,
    Action.EXHAUSTED: Outcome.EXHAUSTED,
}
"""What ``status`` says the policy would do now, in the words of a result (``retry --dry-run``'s outcome)."""
HISTORY_LIMIT = 500
_DURATION = re.compile(r"(\d+)\s*([smhd]?)")
_MINUTES_PER_UNIT = {"s": 1 / 60, "m": 1, "": 1, "h": 60, "d": 1440}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from workflow_retry.settings import warn_unknown_retry_variables

    warn_unknown_retry_variables(lambda warning: print(f"warning: {warning}", file=sys.stderr))
    try:
        code: int = args.run(args)
    except IdentityProviderError as exc:
        advice = "try again later" if exc.retryable else "check IDP_TOKEN_URL, IDP_CLIENT_ID, IDP_SCOPES and the secret"
        print(f"error: {exc}; {advice}", file=sys.stderr)
        return EXIT_CANNOT_AUTHENTICATE
    except RetryToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


_FULL_HELP = "each result holds the whole execution as read (tasks, definition), not the compact one (with --json)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        # The installed command's name; `python -m workflow_retry` from a checkout runs the same parser.
        prog="workflow-retry",
        description="Retry failed Cognite Data Fusion workflow executions.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (stderr)")
    # -v after the subcommand too; SUPPRESS keeps a -v given before it when the subcommand has none.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log what happens (stderr)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    retry = commands.add_parser("retry", parents=[verbose], help="retry failed executions by ID")
    retry.add_argument("ids", nargs="+", metavar="ID", help="execution IDs (UUIDs)")
    retry.add_argument("--dry-run", action="store_true", help="report what would be done, change nothing")
    retry.add_argument("--json", action="store_true", help="print the result as JSON")
    retry.add_argument("--full", action="store_true", help=_FULL_HELP)
    retry.set_defaults(run=_run_retry)

    sweep = commands.add_parser(
        "sweep", parents=[verbose], help="find failed executions and retry them under the policy"
    )
    sweep.add_argument("--workflow", action="append", metavar="WF[:VERSION]", help="only this workflow (repeatable)")
    sweep.add_argument(
        "--since",
        type=_minutes,
        metavar="DURATION",
        help="only failures that ended this recently, e.g. 90m, 2h, 1d (default: maxAgeHours)",
    )
    sweep.add_argument("--max-restarts", type=int, metavar="N", help="executions restarted at most (default: settings)")
    sweep.add_argument("--dry-run", action="store_true", help="list what would be retried, change nothing")
    sweep.add_argument("--json", action="store_true", help="print the result as JSON")
    sweep.add_argument("--full", action="store_true", help=_FULL_HELP)
    sweep.set_defaults(run=_run_sweep)

    status = commands.add_parser(
        "status", parents=[verbose], help="show an execution, its ledger record and what the policy says"
    )
    status.add_argument("id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print as JSON")
    status.set_defaults(run=_run_status)

    history = commands.add_parser(
        "history", parents=[verbose], help="list recent retries across executions, from the attempt ledger"
    )
    history.add_argument(
        "--workflow", action="append", metavar="WF", help="only this workflow's executions (repeatable)"
    )
    history.add_argument(
        "--since",
        type=_minutes,
        default=24 * 60,
        metavar="DURATION",
        help="executions retried or given up this recently, e.g. 30m, 24h, 7d (default: 24h)",
    )
    history.add_argument(
        "--limit", type=int, default=HISTORY_LIMIT, metavar="N", help=f"executions shown at most ({HISTORY_LIMIT})"
    )
    history.add_argument("--json", action="store_true", help="print as JSON")
    history.set_defaults(run=_run_history)

    prune = commands.add_parser(
        "prune",
        parents=[verbose],
        help="delete ledger records past their expiry plus RETRY_LEDGER_RETENTION_DAYS (each sweep does some)",
    )
    prune.set_defaults(run=_run_prune)

    check = commands.add_parser(
        "check-access",
        parents=[verbose],
        help="check that retried workflows' tasks can run as the principals their retries use",
    )
    check.add_argument(
        "--workflow",
        action="append",
        metavar="WF[:VERSION]",
        help="only this workflow (repeatable; default: RETRY_SWEEP_WORKFLOWS, else every workflow)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(run=_run_check_access)

    emulator = commands.add_parser(
        "emulator", parents=[verbose], help="run the CDF API emulator locally (Ctrl-C stops it)"
    )
    emulator.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    emulator.add_argument("--seed", type=int, default=5, metavar="N", help="failed executions to seed")
    emulator.add_argument(
        "--fail-again",
        action="store_true",
        help="every retried execution fails again at once (walk through cooldown, the cap and give-up)",
    )
    emulator.set_defaults(run=_run_emulator)
    return parser


def _minutes(text: str) -> int:
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90m, 2h, 1d)")
    minutes = int(match.group(1)) * _MINUTES_PER_UNIT[match.group(2)]
    if minutes < 1:
        raise argparse.ArgumentTypeError("the window must be at least one minute")
    return int(minutes)


# -- commands ---------------------------------------------------------------------------------------


def _run_retry(args: argparse.Namespace) -> int:
    from workflow_retry.payloads import parse_payload

    # A shell paste brings surrounding white space; a payload keeps it (and is refused): docs/cli.md.
    ids = [text.strip() for text in args.ids]
    request = parse_payload({"executionIds": ids, "dryRun": args.dry_run, "fullExecution": args.full})
    client, credentials, settings = _connect(authenticate=any(r.execution_id is not None for r in request.ids))
    from workflow_retry import function

    bar = ProgressBar(sys.stderr, "would retry" if args.dry_run else "retrying")
    report = function.execute(request, client, credentials, settings, progress=bar.update)
    bar.close()
    _print_report(report, as_json=args.json)
    return exit_code(report)


def _run_sweep(args: argparse.Namespace) -> int:
    from workflow_retry.payloads import parse_payload

    sweep: dict[str, Any] = {}
    if args.workflow:
        sweep["workflows"] = args.workflow
    if args.since:
        sweep["lookbackMinutes"] = args.since
    if args.max_restarts:
        sweep["maxRestarts"] = args.max_restarts
    request = parse_payload({"sweep": sweep, "dryRun": args.dry_run, "fullExecution": args.full})
    client, credentials, settings = _connect()
    from workflow_retry import function

    bar = ProgressBar(sys.stderr, "sweep")
    report = function.execute_sweep(
        request,
        client,
        credentials,
        settings,
        context=function.build_context(request, client, settings),
        progress=lambda phase, done, total: bar.update(done, total, _phase_label(phase, dry_run=args.dry_run)),
    )
    bar.close()
    _print_report(report, as_json=args.json)
    return exit_code(report)


def _phase_label(phase: str, *, dry_run: bool) -> str:
    """A sweep's phase as the bar shows it: a dry run retries nothing, so it says so."""
    return "would retry" if dry_run and phase == "retrying" else phase


def _run_status(args: argparse.Namespace) -> int:
    from workflow_retry import function
    from workflow_retry.cdf import SdkCdfGateway, run_on_sdk_loop
    from workflow_retry.ids import InvalidExecutionId, parse_execution_id
    from workflow_retry.models import RetryRequest
    from workflow_retry.service import decide_with_record, now_ms

    try:
        execution_id = parse_execution_id(args.id.strip())  # a pasted ID's white space (docs/cli.md)
    except InvalidExecutionId as exc:
        print(f"error: invalid execution ID: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client, credentials, settings = _connect()
    context = function.build_context(RetryRequest(ids=()), client, settings)
    gateway = SdkCdfGateway(client, credentials)

    async def read() -> tuple[Any, Any]:
        import asyncio

        now = now_ms()
        return tuple(
            await asyncio.gather(
                gateway.get_execution(execution_id), context.ledger.get(execution_id, now), return_exceptions=True
            )
        )

    execution, record = run_on_sdk_loop(read())
    if isinstance(execution, BaseException):
        print(f"error: execution {execution_id}: {execution}", file=sys.stderr)
        return EXIT_FAILURES
    if isinstance(record, BaseException):
        print(f"warning: {record}", file=sys.stderr)
        record = None
    decision = decide_with_record(execution, record, context.policy, dry_run=True, now_ms=now_ms())
    if args.json:
        out = {
            "execution": execution,
            "ledger": {
                "kind": context.ledger.kind,
                "record": record.to_json() if record else None,
                "history": [e.to_json() for e in shown_history(record, execution)] if record else [],
            },
            "policy": {"outcome": STATUS_OUTCOMES[decision.action].value, "reason": decision.reason},
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    failed = [t for t in execution.get("executedTasks") or () if t.get("status") not in ("COMPLETED", "SKIPPED")]
    rows = [
        ("execution", execution_id),
        ("workflow", f"{execution.get('workflowExternalId')} version {execution.get('version')}"),
        ("status", execution.get("status")),
        ("created", format_time(execution.get("createdTime"))),
        ("ended", format_time(execution.get("endTime"))),
        ("reason", execution.get("reasonForIncompletion") or "-"),
    ]
    rows += [
        (f"task {t.get('externalId')}", f"{t.get('status')}: {t.get('reasonForIncompletion') or '-'}") for t in failed
    ]
    if record is not None:
        rows += [
            (f"ledger ({context.ledger.kind})", f"{record.attempts} attempt(s) of {context.policy.max_attempts}"),
            ("last attempt", f"{format_time(record.last_attempt_at)} ({record.last_outcome})"),
            ("record expires", format_time(record.expires_at * 1000)),
        ]
        rows += history_rows(shown_history(record, execution))
    else:
        rows.append((f"ledger ({context.ledger.kind})", "no attempts recorded"))
    rows.append(("policy now", f"{STATUS_OUTCOMES[decision.action].value}: {decision.reason}"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return EXIT_OK


def shown_history(record: Any, execution: Mapping[str, Any] | None) -> list[Any]:
    """The record's history as it stands now: its open attempt as the execution read shows it."""
    from workflow_retry.history import shown_outcome

    entries = list(record.history)
    if entries:
        entries[-1] = shown_outcome(entries[-1], execution)
    return entries


def history_rows(entries: Sequence[Any]) -> list[tuple[str, str]]:
    """One ``status`` row per history entry: attempt N (or the give-up), when, what came of it, engine run, reason."""
    rows = []
    number = 0
    for entry in entries:
        if entry.outcome == "gave_up":
            rows.append(("gave up", f"{format_time(entry.at)}  {entry.reason or '-'}"))
            continue
        number += 1
        engine = f"  engine run {entry.engine_execution_id}" if entry.engine_execution_id else ""
        outcome = entry.outcome.replace("_", " ")
        answered = entry.reason or "-"
        rows.append((f"attempt {number}", f"{format_time(entry.at)}  {outcome}{engine}; answered: {answered}"))
    return rows


def _run_history(args: argparse.Namespace) -> int:
    from workflow_retry import function
    from workflow_retry.cdf import SdkCdfGateway, run_on_sdk_loop
    from workflow_retry.history import execution_state
    from workflow_retry.models import RetryRequest
    from workflow_retry.service import now_ms

    if args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    client, credentials, settings = _connect()
    context = function.build_context(RetryRequest(ids=()), client, settings)
    if not context.ledger.enforces_cap:
        none = "the attempt ledger is none (RETRY_LEDGER=none): no attempts are recorded, so there is no history"
        print(f"error: {none}", file=sys.stderr)
        return EXIT_USAGE
    now = now_ms()
    since = now - args.since * 60_000
    recent = run_on_sdk_loop(context.ledger.list_recent(since, now, args.limit))
    wanted = set(args.workflow or ())
    records = [r for r in recent.records if not wanted or r.workflow_external_id in wanted]
    records.sort(key=lambda r: r.last_activity_at or 0, reverse=True)
    open_records = [r for r in records if r.last_outcome != "gave_up"]  # a give-up is final: no need to ask CDF
    executions = run_on_sdk_loop(_read_executions(open_records, SdkCdfGateway(client, credentials), settings))
    listed = []
    for record in records:
        execution, error = executions.get(record.execution_id, (None, None))
        state = execution_state(record, execution, context.policy, now, error)
        listed.append(
            {
                "executionId": record.execution_id,
                "workflowExternalId": record.workflow_external_id,
                "attempts": record.attempts,
                "state": state.state,
                "summary": state.summary,
                "lastActivityAt": record.last_activity_at,
                "history": [e.to_json() for e in shown_history(record, execution)],
            }
        )
    if args.json:
        out = {"ledger": context.ledger.kind, "since": since, "complete": recent.complete, "executions": listed}
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(render_history(listed, context.ledger.kind, since, complete=recent.complete, limit=args.limit))
    return EXIT_OK


async def _read_executions(records: Sequence[Any], gateway: Any, settings: Any) -> dict[str, tuple[Any, str | None]]:
    """Each record's execution as CDF shows it now (or why it could not be read), bounded in time and concurrency."""
    import asyncio

    from workflow_retry.errors import CdfRequestError, ExecutionNotFoundError
    from workflow_retry.ids import InvalidExecutionId, parse_execution_id

    slots = asyncio.Semaphore(settings.concurrency)
    read: dict[str, tuple[Any, str | None]] = {}

    async def one(execution_id: str) -> None:
        try:
            parsed = parse_execution_id(execution_id)
        except InvalidExecutionId:
            read[execution_id] = (None, "not an execution ID")
            return
        async with slots:
            try:
                read[execution_id] = (await gateway.get_execution(parsed), None)
            except ExecutionNotFoundError:
                read[execution_id] = (None, "CDF does not know this execution")
            except CdfRequestError as exc:
                read[execution_id] = (None, exc.message)

    try:
        async with asyncio.timeout(settings.deadline_seconds):
            await asyncio.gather(*(one(r.execution_id) for r in records))
    except TimeoutError:
        pass  # the executions not read by then are shown as unknown
    return read


def render_history(listed: Sequence[Mapping[str, Any]], ledger: str, since: int, *, complete: bool, limit: int) -> str:
    """``history`` as text: one row per execution, newest first, then the counts of each state."""
    from collections import Counter

    from workflow_retry.history import STATES

    lines = []
    if listed:
        rows = [
            (
                str(e["executionId"]),
                str(e["workflowExternalId"] or "-"),
                str(e["attempts"]),
                str(e["state"]),
                format_time(e["lastActivityAt"]),
                str(e["summary"]),
            )
            for e in listed
        ]
        headers = ("EXECUTION", "WORKFLOW", "ATTEMPTS", "STATE", "LAST", "SUMMARY")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:5])]
        for row in [headers, *rows]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
        lines.append("")
    counts = Counter(str(e["state"]) for e in listed)
    summary = ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in STATES if counts[s]) or "none"
    lines.append(
        f"{len(listed)} execution(s) retried or given up since {format_time(since)} ({ledger} ledger): {summary}"
    )
    if not complete:
        lines.append(f"more executions than --limit {limit}: only the first {limit} read are shown")
    return "\n".join(lines)


def _run_prune(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from workflow_retry import function
    from workflow_retry.cdf import run_on_sdk_loop
    from workflow_retry.models import RetryRequest
    from workflow_retry.service import RetryContext
    from workflow_retry.sweep import PRUNE_ROWS_PER_SWEEP, prune_ledger

    client, _, settings = _connect()
    context = function.build_context(RetryRequest(ids=()), client, settings)
    kind = context.ledger.kind
    if kind == "none":
        print("nothing to prune: the attempt ledger is none (RETRY_LEDGER=none)")
        return EXIT_OK
    if kind == "dynamodb":
        print("nothing to prune here: DynamoDB's TTL deletes each ledger item after its purgeAt")
        return EXIT_OK

    async def prune_all(ctx: RetryContext) -> tuple[int, bool]:
        deadline = asyncio.get_running_loop().time() + settings.deadline_seconds
        total = 0
        while (pruned := await prune_ledger(ctx, deadline)) == PRUNE_ROWS_PER_SWEEP:
            total += pruned
        return total + (pruned or 0), pruned is not None

    started = time.monotonic()
    total, finished = run_on_sdk_loop(prune_all(context))
    retention = f"RETRY_LEDGER_RETENTION_DAYS {settings.ledger_retention_days:g}"
    print(f"deleted {total} ledger record(s) past their expiry plus {retention} in {time.monotonic() - started:.1f}s")
    if not finished:
        print("not finished (the deadline came, or RAW failed: see the warning above); run it again", file=sys.stderr)
        return EXIT_FAILURES
    return EXIT_OK


def _run_check_access(args: argparse.Namespace) -> int:
    """Exit 0 when every principal holds what the tasks in scope need, 1 when something is missing."""
    from pydantic import ValidationError

    from workflow_retry import access
    from workflow_retry.cdf import run_on_sdk_loop
    from workflow_retry.connection import build_client, connection_settings_from_environment
    from workflow_retry.identity import SessionCredentials
    from workflow_retry.policy import WorkflowSelector

    try:
        selectors = [WorkflowSelector.model_validate(text) for text in args.workflow or ()]
    except ValidationError:
        print(f"error: not a workflow (WF or WF:VERSION): {args.workflow}", file=sys.stderr)
        return EXIT_USAGE
    client, credentials, settings = _connect()
    if not selectors and settings.sweep_workflows.strip():
        selectors = [
            WorkflowSelector.model_validate(t.strip()) for t in settings.sweep_workflows.split(",") if t.strip()
        ]
    sessions = SessionCredentials.of(credentials)
    connection = connection_settings_from_environment()
    principals = [
        access.PrincipalReader(access.DEFAULT_PRINCIPAL_NAME, connection.client_id, access.SdkAccessReader(client))
    ]
    for name, mapped in sessions.by_set.items():
        # Each mapped principal signs in itself: its token says what it holds.
        as_mapped = build_client(
            connection.model_copy(update={"client_id": mapped.client_id}),
            mapped.client_secret,
            timeout_seconds=settings.request_timeout_seconds,
        )
        principals.append(access.PrincipalReader(name, mapped.client_id, access.SdkAccessReader(as_mapped)))
    default_reader = principals[0].reader
    assert default_reader is not None
    report = run_on_sdk_loop(
        access.read_and_check(default_reader, connection.project, principals, sessions.workflows, selectors)
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_access_report(report))
    return EXIT_OK if report.ok else EXIT_FAILURES


def render_access_report(report: Any) -> str:
    """The access report as text: each principal, then every check that is not plainly held."""
    lines = []
    for principal in report.principals:
        held = f"{len(principal.held.capabilities)} capabilities" if principal.held else f"ERROR: {principal.error}"
        lines.append(f"principal {principal.label()}: {held}")
    lines.append(f"workflow versions checked: {report.workflow_versions}")
    shown = [c for c in report.checks if c.status != "held"]
    if shown:
        rows = [
            (
                c.status.upper(),
                str(c.capability) if c.capability else "-",
                c.principal,
                f"{c.workflow}:{c.version}" if c.workflow else "(the tool itself)",
                f"{c.task} ({c.task_type})" if c.task else "-",
                c.why,
            )
            for c in shown
        ]
        headers = ("STATUS", "CAPABILITY", "PRINCIPAL", "WORKFLOW", "TASK", "WHY")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:5])]
        lines.append("")
        for row in [headers, *rows]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    lines += [f"problem: {problem}" for problem in report.problems]
    missing = len(report.missing)
    lines.append("")
    lines.append(
        "access ok: every principal holds what the checked tasks need"
        if report.ok
        else f"access NOT ok: {missing} missing capability(ies); retries of those tasks would fail for lack of access"
    )
    return "\n".join(lines)


def _run_emulator(args: argparse.Namespace) -> int:
    """``python -m emulator`` under the installed command's name: one implementation, emulator.local."""
    try:
        from emulator.local import serve
    except ImportError:
        print(
            "error: the emulator is not installed here (it lives in the repository, not the package)", file=sys.stderr
        )
        return EXIT_USAGE
    return serve(port=args.port, seed=args.seed, fail_again=args.fail_again)


# -- connection and output --------------------------------------------------------------------------


def _connect(*, authenticate: bool = True) -> tuple[Any, Any, Any]:
    """A client with its token, session credentials and settings from the environment.

    Raises ConfigurationError when the environment is incomplete, and IdentityProviderError when no
    token can be had within the deadline (so that every command fails the same way, before any request).
    """
    from workflow_retry.cdf import ClientCredentials
    from workflow_retry.connection import build_client, connection_settings_from_environment
    from workflow_retry.errors import ConfigurationError
    from workflow_retry.idp import fetch_token_ahead
    from workflow_retry.policy import environment_policy
    from workflow_retry.settings import settings_from_environment

    # Every problem of the environment in one message: a user fixes them in one round, not three.
    problems: list[str] = []
    settings = connection = None
    try:
        settings = settings_from_environment()
    except ConfigurationError as exc:
        problems.append(str(exc))
    try:
        environment_policy(os.environ)
    except ConfigurationError as exc:
        problems.append(str(exc))
    try:
        connection = connection_settings_from_environment()
    except ConfigurationError as exc:
        problems.append(str(exc))
    secret = os.environ.get("IDP_CLIENT_SECRET")
    reference = os.environ.get("IDP_CLIENT_SECRET_REF")
    if not secret and not reference:
        problems.append("set IDP_CLIENT_SECRET (or IDP_CLIENT_SECRET_REF) to the client secret")
    if problems or settings is None or connection is None:
        raise ConfigurationError(
            "\n  ".join(["the environment is incomplete or invalid (nothing was sent to CDF):", *problems])
        )
    if not secret and reference:
        from workflow_retry.aws.secrets import AwsSecretReader, resolve_secret

        secret = resolve_secret(None, reference, AwsSecretReader(max_age_seconds=300))
    if not secret:
        raise ConfigurationError("IDP_CLIENT_SECRET_REF names an empty secret")
    client = build_client(connection, secret, timeout_seconds=settings.request_timeout_seconds)
    if authenticate:  # not for a command line of invalid IDs only: bad input costs nothing
        fetch_token_ahead(client, valid_for=settings.deadline_seconds, timeout=settings.deadline_seconds)
    return client, _session_credentials(ClientCredentials(connection.client_id, secret), settings), settings


def _session_credentials(default: Any, settings: Any) -> Any:
    """The default credentials, and each workflow's mapped set (RETRY_CREDENTIALS_MAP) read from its reference."""
    from workflow_retry.identity import SessionCredentials, reference_source

    if not settings.credentials_map:
        return default
    from workflow_retry.aws.secrets import AwsSecretReader

    source = reference_source(settings.credential_sets, AwsSecretReader(max_age_seconds=300).read)
    return SessionCredentials.resolve(default, settings.credentials_map, source)


def exit_code(report: RetryReport) -> int:
    if any(result.outcome in FAILING_OUTCOMES for result in report.results):
        return EXIT_FAILURES
    if report.sweep is not None and report.sweep.listing_error is not None:
        return EXIT_FAILURES
    return EXIT_OK


def _print_report(report: RetryReport, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    listing_error = report.sweep.listing_error if report.sweep is not None else None
    if listing_error is not None:
        # The cause first: an empty table above it would read as "nothing failed".
        print(f"sweep failed: could not list executions: {listing_error.message}")
    if report.results or listing_error is None:
        print(render_table(report.results, shutil.get_terminal_size((120, 24)).columns))
    counts = ", ".join(f"{count} {outcome}" for outcome, count in report.counts.items() if count)
    if report.sweep is None:
        print(f"\n{counts or 'nothing to do'}")
        return
    s = report.sweep
    print(
        f"\nsweep of {', '.join(s.workflows) or 'every workflow'} ({', '.join(s.statuses)}), "
        f"failures ended since {format_time(s.ended_after)} (executions created "
        f"{format_time(s.window_start)} to {format_time(s.window_end)}): "
        f"{s.executions_seen} seen in {s.pages_read} page(s), {s.eligible} candidate(s)"
    )
    print("outcomes: " + (", ".join(f"{n} {o}" for o, n in s.outcomes.items()) or "none"))
    if s.left_for_next_sweep:
        print(f"left for the next sweep (maxRestarts {s.max_restarts}): {s.left_for_next_sweep}")
    if s.not_reached:
        print(f"not reached before the deadline: {s.not_reached}")
    if s.stopped_early:
        print(f"stopped early: {s.stopped_early}")


def render_table(results: Sequence[ExecutionResult], width: int = 120) -> str:
    """Results as a plain-text table, the reason cut to fit the width."""
    if not results:
        return "(no executions to show)"
    rows = [
        (
            r.execution_id,
            str((r.execution or {}).get("workflowExternalId") or "-"),
            r.outcome.value,
            "-" if r.attempts is None else str(r.attempts),
            r.reason,
        )
        for r in results
    ]
    headers = ("EXECUTION", "WORKFLOW", "OUTCOME", "ATTEMPTS", "REASON")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers[:4])]
    room = max(20, width - sum(widths) - 2 * 4)

    def line(cells: Sequence[str]) -> str:
        reason = cells[4] if len(cells[4]) <= room else cells[4][: room - 3] + "..."
        return "  ".join(c.ljust(w) for c, w in zip(cells[:4], widths, strict=True)) + "  " + reason

    return "\n".join([line(headers), *(line(row) for row in rows)])


class ProgressBar:
    """A one-line progress bar on a terminal; silent when the stream is not one (pipes, CI, tests)."""

    def __init__(self, stream: IO[str], label: str) -> None:
        self._stream = stream
        self._label = label
        self._active = stream.isatty()
        self._drawn = False

    def update(self, done: int, total: int | None, phase: str | None = None) -> None:
        if not self._active:
            return
        label = phase or self._label
        if total:
            filled = int(30 * min(done, total) / total)
            text = f"\r{label:<11} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
        else:
            text = f"\r{label:<11} {done} execution(s) listed"
        self._stream.write(text.ljust(60))
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\r" + " " * 60 + "\r")
            self._stream.flush()
