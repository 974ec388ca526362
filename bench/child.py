"""One fresh interpreter per measurement: ``python -m bench.child cold-path ENTRY ID`` or ``sweep WORKFLOW``.

Prints one JSON line with the phases it timed. The parent measures the wall time and the peak RSS
of the whole process (``os.wait4``), so the imports here are part of what is measured: only the
standard library is imported before the clock starts.

- ``cold-path script ID``: the user's script (import the SDK, build a client, retry one execution);
- ``cold-path handle ID``: the Cognite Function path (import ``handler``, the runtime's client, ``handle``);
- ``cold-path lambda ID``: the AWS Lambda path (import ``handler``, ``lambda_handler`` on a direct invoke);
- ``sweep WORKFLOW``: a dry sweep of one workflow through ``handle`` (for the memory comparison);
- ``batch PATH``: ``handle`` with a batch payload of the IDs in the JSON file PATH (for the scale and
  read-ahead memory comparisons); ``vm_hwm_before_kb`` is the peak RSS before the call, warm.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

WATCHED_MODULES = ("boto3", "botocore", "aws_lambda_powertools", "pydantic_settings", "pydantic")


def cold_path(entry: str, execution_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    outcome: Any
    if entry == "script":
        import cognite.client  # noqa: F401 (the user's script starts with it; timed as its import)

        from bench.user import user_client

        imported = time.perf_counter()
        client = user_client()
        built = time.perf_counter()
        outcome = client.workflows.executions.retry(execution_id).status
    elif entry == "handle":
        import handler
        from bench.user import function_secrets, user_client

        imported = time.perf_counter()
        client = user_client()  # built by the Functions runtime before handle is called
        built = time.perf_counter()
        result = handler.handle({"executionId": execution_id}, client, function_secrets(), {"call_id": "cold"})
        outcome = result["results"][0]["outcome"]
    elif entry == "lambda":
        import handler
        from bench.user import BenchLambdaContext

        imported = built = time.perf_counter()  # lambda_handler builds its client on the first call
        result = handler.lambda_handler({"executionId": execution_id}, BenchLambdaContext())
        outcome = result["results"][0]["outcome"] if isinstance(result, dict) and "results" in result else result
    else:
        raise SystemExit(f"unknown entrypoint {entry!r}")
    done = time.perf_counter()
    return {
        "import": imported - started,
        "client": built - imported,
        "first_retry": done - built,
        "outcome": str(outcome),
        "loaded": sorted(m for m in WATCHED_MODULES if m in sys.modules),
    }


def dry_sweep(workflow: str) -> dict[str, Any]:
    import handler
    from bench.user import function_secrets, summarise, user_client

    started = time.perf_counter()
    payload = {"sweep": {"workflows": [workflow], "lookbackMinutes": 24 * 60}, "dryRun": True}
    result = handler.handle(payload, user_client(), function_secrets(), {"call_id": "sweep-memory"})
    return {"seconds": time.perf_counter() - started, **summarise(result)}


def batch(path: str) -> dict[str, Any]:
    import handler
    from bench.user import function_secrets, summarise, user_client

    with open(path, encoding="utf-8") as file:
        ids = json.load(file)["ids"]
    client = user_client()
    client.config.credentials.authorization_header()  # the token, fetched before the call as in the worker
    before = peak_rss_kb()
    started = time.perf_counter()
    result = handler.handle({"executionIds": ids}, client, function_secrets(), {"call_id": "batch"})
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "vm_hwm_before_kb": before, **summarise(result)}


def peak_rss_kb() -> int | None:
    """This process's own peak RSS (``VmHWM``).

    Not ``ru_maxrss``: Linux folds the parent's peak into a child's at ``exec`` (the bench's process,
    holding the emulator's 50,000 executions, would hide the child's own figure).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None


def main(argv: list[str]) -> int:
    match argv:
        case ["cold-path", entry, execution_id]:
            print(json.dumps(cold_path(entry, execution_id) | {"vm_hwm_kb": peak_rss_kb()}))
        case ["sweep", workflow]:
            print(json.dumps(dry_sweep(workflow) | {"vm_hwm_kb": peak_rss_kb()}))
        case ["batch", path]:
            print(json.dumps(batch(path) | {"vm_hwm_kb": peak_rss_kb()}))
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
