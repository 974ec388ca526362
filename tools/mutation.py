"""Mutation testing with mutmut, one module at a time against the tests that cover it (docs/reliability.md).

mutmut reads its settings from ``[tool.mutmut]`` of the ``pyproject.toml`` in the directory it runs in,
so one set of settings would run every module against every test of the selection. To keep each run
small (a mutant of ``policy.py`` runs ``tests/test_policy.py``, not the whole suite), each module gets a
directory of its own, ``build/mutation/<module>/``: links to the project's code and tests, and a copy of
``pyproject.toml`` whose ``[tool.mutmut]`` names that module and its tests. mutmut then copies the
project into ``build/mutation/<module>/mutants/`` and mutates it there; the working tree is never
changed.

    python tools/mutation.py policy events          # some modules
    python tools/mutation.py --max-children 2       # all of them, slow ones last
    python tools/mutation.py --again policy         # the survivors of the last run, after adding tests
    python tools/mutation.py --resume service       # a run stopped before its end goes on

Each run starts afresh (but ``--again``), runs each mutant that timed out once more alone, and ends
with a line ``<module>: <killed>/<total> killed`` and the survivors;
``build/mutation/summary.json`` holds the counts of the modules run. Inspect a survivor with
``cd build/mutation/<module> && mutmut show <name>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutation"
LINKED = ("workflow_retry", "tests", "emulator", "handler.py")


@dataclass(frozen=True)
class Target:
    files: tuple[str, ...]
    """``only_mutate`` patterns (fnmatch: ``*`` also matches ``/``)."""
    tests: tuple[str, ...]
    """The tests that cover it: the pytest selection of the run."""
    pytest_args: tuple[str, ...] = ()
    """More pytest arguments for this target's runs (e.g. ``-m "not slow"``)."""


TARGETS: dict[str, Target] = {
    "policy": Target(("workflow_retry/policy.py",), ("tests/test_policy.py",)),
    "events": Target(("workflow_retry/aws/events.py",), ("tests/aws/test_events.py",)),
    # ``*webhooks.py``: the module may live in workflow_retry/ or workflow_retry/aws/.
    "webhooks": Target(
        ("workflow_retry/*webhooks.py",), ("tests/aws/test_webhooks.py", "tests/aws/test_webhooks_edges.py")
    ),
    # Broad: most of service.py runs only under the whole call (handle, Lambda, the fault matrix), and
    # mutmut runs for each mutant only the tests that ran its function, stopping at the first failure.
    # Without the ``slow`` tests (the 1,000-ID answers, a 50,000-execution sweep: 128 of the 378 s a
    # surviving mutant of ``_log_result`` ran): each survivor is read against them by hand.
    "service": Target(
        ("workflow_retry/service.py",),
        (
            "tests/test_service.py",
            "tests/test_service_flow.py",
            "tests/test_service_outcomes.py",
            "tests/test_policy.py",
            "tests/test_giveup.py",
            "tests/test_logs.py",
            "tests/test_pipeline_runs.py",
            "tests/test_function.py",
            "tests/test_sweep.py",
            "tests/test_identity.py",
            "tests/test_access.py",
            "tests/test_results_size.py",
            "tests/ledger/test_raw_read_ahead.py",
            "tests/ledger/test_history.py",
            "tests/ledger/test_dynamodb.py",
            "tests/aws/test_same_execution_in_one_batch.py",
            "tests/aws/test_policy_limits.py",
            "tests/aws/test_duplicate_deliveries.py",
            "tests/aws/test_workflow_credentials.py",
            "tests/aws/test_entrypoint.py",
            "tests/reliability/test_duplicates.py",
            "tests/reliability/test_fault_matrix.py",
            "tests/reliability/test_idp_failures.py",
        ),
        pytest_args=("-m", "not slow"),
    ),
    # The concurrency bound and its lending: the unit tests, and the whole calls whose timing shows a lent slot.
    "slots": Target(
        ("workflow_retry/slots.py",),
        (
            "tests/test_slots.py",
            "tests/test_service_flow.py",
            "tests/test_sweep.py",
            "tests/ledger/test_raw_batched_writes.py",
            "tests/ledger/test_raw_read_ahead.py",
        ),
        # A mutant that never hands a slot back hangs its test: a minute, not pytest's five, kills it.
        pytest_args=("-m", "not slow", "--timeout", "60"),
    ),
    # RETRY_MAX_RUNNING: the budget's own tests, and the sweeps that stop at the room left.
    "running": Target(
        ("workflow_retry/running.py",),
        ("tests/test_running.py", "tests/test_sweep.py"),
        pytest_args=("-m", "not slow", "--timeout", "60"),
    ),
    # Not tests/ledger/test_raw_across_processes.py: it starts containers as processes (11 s a mutant);
    # the race it bounds is built from the same functions the in-process tests below run.
    "ledger": Target(
        ("workflow_retry/ledger/*",),
        (
            "tests/ledger/test_raw.py",
            "tests/ledger/test_raw_batched_writes.py",
            "tests/ledger/test_raw_read_ahead.py",
            "tests/ledger/test_dynamodb.py",
            "tests/ledger/test_dynamodb_failures.py",
            "tests/ledger/test_no_ledger.py",
            "tests/ledger/test_raw_edges.py",
            "tests/ledger/test_recent.py",
            "tests/ledger/test_prune.py",
            "tests/ledger/test_history.py",
            "tests/test_service.py",
        ),
    ),
}


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def _pyproject_for(target: Target) -> str:
    """The project's pyproject.toml with ``[tool.mutmut]`` set to this target (other tables unchanged)."""
    text = (ROOT / "pyproject.toml").read_text()
    common = tomllib.loads(text).get("tool", {}).get("mutmut", {})
    settings: dict[str, object] = dict(common)
    settings["only_mutate"] = list(target.files)
    settings["pytest_add_cli_args_test_selection"] = list(target.tests)
    settings["pytest_add_cli_args"] = [*common.get("pytest_add_cli_args", []), *target.pytest_args]
    # A mutant that strict mypy refuses would fail `make test` (its typecheck step): counted as caught
    # ("caught by type check") without running its tests. mutmut runs it in its copy, mutants/, whose
    # pyproject.toml holds the project's [tool.mypy]; the trampolines mutmut adds carry "type: ignore"
    # comments that mypy would call unused, and mutmut stops at an error outside a mutant.
    settings["type_check_command"] = ["mypy", "workflow_retry", "--output", "json", "--no-warn-unused-ignores"]
    lines = ["[tool.mutmut]"]
    for key, value in settings.items():
        if isinstance(value, list):
            lines.append(f"{key} = {_toml_list([str(v) for v in value])}")
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f"{key} = {json.dumps(str(value))}")
    without = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
    return without.rstrip() + "\n\n" + "\n".join(lines) + "\n"


def _prepare(name: str, target: Target) -> Path:
    work = WORK / name
    if work.exists():
        shutil.rmtree(work)  # afresh: mutmut would otherwise keep the verdicts of an earlier run
    work.mkdir(parents=True)
    for entry in LINKED:
        (work / entry).symlink_to(ROOT / entry)
    (work / "pyproject.toml").write_text(_pyproject_for(target))
    return work


def _mutmut() -> str:
    beside = Path(sys.executable).with_name("mutmut")
    return str(beside) if beside.exists() else "mutmut"


def _with_verdict(work: Path, environment: dict[str, str], *verdicts: str) -> list[str]:
    listed = subprocess.run(
        [_mutmut(), "results"], cwd=work, env=environment, check=True, capture_output=True, text=True
    ).stdout
    return sorted(line.split(":")[0].strip() for line in listed.splitlines() if line.strip().endswith(verdicts))


def _not_killed(work: Path, environment: dict[str, str]) -> list[str]:
    return _with_verdict(work, environment, "survived", "no tests")


def _timed_out(work: Path, environment: dict[str, str]) -> list[str]:
    return _with_verdict(work, environment, "timeout")


def _collected(tests: tuple[str, ...], environment: dict[str, str]) -> list[str]:
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sorted(line for line in listed.splitlines() if "::" in line)


def check_test_ids_are_stable(target: Target, environment: dict[str, str]) -> None:
    """Refuse a selection whose test ids change between collections (e.g. a parameter holding the time).

    mutmut records which tests run each function by id and later asks pytest for exactly those; an id that
    no longer exists makes pytest refuse the run (exit 4), which mutmut then reports as a "timeout" for
    every mutant of the functions that test runs. Found that way: 281 such "timeouts" in webhooks.py.
    """
    first, second = _collected(target.tests, environment), _collected(target.tests, environment)
    changed = sorted(set(first) ^ set(second))
    if changed:
        raise SystemExit(f"test ids change between collections; give them fixed ids first: {changed[:5]}")


def run(name: str, max_children: int, *, again: bool = False, resume: bool = False) -> dict[str, object]:
    target = TARGETS[name]
    # The venv's bin first: mutmut starts the type checker as plain "mypy" (it reads its output by that name).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PATH": path}
    check_test_ids_are_stable(target, environment)
    work = WORK / name
    if resume and (work / "mutants").exists():
        # A run stopped before its end (for time, or to change --max-children): mutmut keeps each verdict
        # it reached and tests only the mutants without one.
        names = []
        print(f"== {name}: the mutants the last run did not reach", flush=True)
    elif again and (work / "mutants").exists():
        # The survivors, timeouts and unchecked mutants (of a function changed since) of the last run,
        # against the tests as they are now: mutmut copies tests/ again, and runs its coverage pass for
        # tests it has not seen, so new tests are linked.
        names = _not_killed(work, environment) + _with_verdict(work, environment, "timeout", "not checked")
        print(f"== {name}: {len(names)} survivors of the last run, again", flush=True)
        # mutmut links tests to the functions it knew at its last stats run: a function new since (renamed,
        # split) would be "no tests". Its stats are collected afresh (one run of the selection).
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    else:
        work, names = _prepare(name, target), []
        print(f"== {name}: {', '.join(target.files)} against {' '.join(target.tests)}", flush=True)
    # mutmut's exit code says nothing about the score; its output is shown as it runs.
    if names or not again or resume:
        _mutmut_run(["--max-children", str(max_children), *names], work, environment)
    if again:
        # The mutants of functions changed since the last run exist only once mutmut has mutated the code
        # as it is now (during the run above): they have no verdict, and a run without names tests those.
        _mutmut_run(["--max-children", str(max_children)], work, environment)
    # A mutant run beside others on a loaded machine can pass mutmut's time limit although its tests
    # fail in seconds alone (seen for policy.py under a load of 9): each timeout is run once more, alone.
    timed_out = _timed_out(work, environment)
    if timed_out:
        print(f"== {name}: {len(timed_out)} timed out; each again, alone", flush=True)
        _mutmut_run(["--max-children", "1", *timed_out], work, environment)
    subprocess.run([_mutmut(), "export-cicd-stats"], cwd=work, env=environment, check=True, capture_output=True)
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = _not_killed(work, environment)
    killed, timeouts, total = int(stats["killed"]), int(stats["timeout"]), int(stats["total"])
    by_mypy = len(_with_verdict(work, environment, "caught by type check"))  # not in mutmut's stats file
    # Not counted as kills: mutmut reports a run that pytest refused (exit 4: a test id it was given no
    # longer exists, e.g. one holding the time) as a "timeout" too, so each must be looked at.
    print(
        f"{name}: {killed + by_mypy}/{total} killed ({by_mypy} by mypy), {timeouts} timed out "
        f"({stats['survived']} survived, {stats['no_tests']} without tests)"
    )
    for survivor in survivors:
        print(f"  not killed: {survivor}")
    return {
        "module": name,
        "killed": killed,
        "caught_by_mypy": by_mypy,
        "timeouts": timeouts,
        "total": total,
        "survivors": survivors,
        "stats": stats,
    }


def _behind_everything_else() -> None:
    """In a mutmut process before it starts (``preexec_fn``, after ``setsid``): run behind everything else.

    ``nice`` alone is not enough on Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``):
    the CPU is first shared between sessions, and a session's weight is its autogroup's nice value. A
    run at ``nice -n 19`` took as much CPU as a test suite in another session, whose 2 s deadlines then
    ran out (load 12 on 2 cores). So mutmut runs in a session of its own (``start_new_session``) whose
    autogroup gets nice 19; the caller's session keeps its own.
    """
    os.nice(19)
    with contextlib.suppress(OSError):  # no autogroup (another kernel, another OS): nice alone then does it
        Path("/proc/self/autogroup").write_text("19")


def _mutmut_run(arguments: list[str], work: Path, environment: dict[str, str]) -> None:
    subprocess.run(
        [_mutmut(), "run", *arguments],
        cwd=work,
        env=environment,
        check=True,
        start_new_session=True,
        preexec_fn=_behind_everything_else,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all, fast ones first)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--again", action="store_true", help="test the survivors of the last run again (new tests)")
    parser.add_argument("--resume", action="store_true", help="go on with a run that was stopped before its end")
    args = parser.parse_args()
    unknown = sorted(set(args.modules) - TARGETS.keys())
    if unknown:
        parser.error(f"unknown module(s) {unknown}: choose from {', '.join(TARGETS)}")
    summary_path = WORK / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in args.modules or list(TARGETS):
        summary[name] = run(name, args.max_children, again=args.again, resume=args.resume)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
