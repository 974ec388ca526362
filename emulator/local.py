"""The emulator as a local CDF for trying the tool by hand: ``workflow-retry emulator`` (or ``python -m emulator``).

Both commands run :func:`serve`: one client with every capability, N failed executions seeded, and
the ``export`` lines that point the command line at it. With ``fail_again`` every retried execution
fails again at once, so that a user can walk through the policy by hand: retried, deferred while it
cools down, retried again, then exhausted (given up).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import threading

from emulator.server import CdfEmulator

WALK_THROUGH = """\
Every retried execution fails again at once (--fail-again). Walk through the policy with one ID:
  workflow-retry retry ID     # retried: attempt 1
  workflow-retry retry ID     # deferred: cooling down (RETRY_COOLDOWN_SECONDS)
  workflow-retry status ID    # the ledger record and what the policy does now
  after the cooldown: retried again, until RETRY_MAX_ATTEMPTS; then exhausted (given up, announced once)
For a short walk: export RETRY_MAX_ATTEMPTS=2 RETRY_COOLDOWN_SECONDS=30 RETRY_COOLDOWN_FACTOR=1
"""


def serve(
    *,
    port: int = 8765,
    seed: int = 5,
    fail_again: bool = False,
    project: str = "local",
    workflow: str = "wf",
    client_id: str = "local-client",
    client_secret: str | None = None,
) -> int:
    """Start the emulator, print how to use it, and serve until Ctrl-C."""
    secret = client_secret or secrets.token_urlsafe(24)
    with CdfEmulator(project=project, port=port) as emu:
        emu.add_client(client_id, secret)
        emu.auto_fail_after_retry = fail_again
        ids = emu.seed_many(seed, workflow_external_id=workflow) if seed > 0 else []
        print(f"CDF emulator on {emu.base_url}; in another shell:\n")
        print(f"export CDF_URL={emu.base_url} CDF_PROJECT={emu.project}")
        print(f"export IDP_TOKEN_URL={emu.token_url} IDP_CLIENT_ID={client_id}")
        print(f"export IDP_CLIENT_SECRET={secret}")
        print("workflow-retry sweep --dry-run    # or: python -m workflow_retry sweep --dry-run\n")
        print(f"{len(ids)} FAILED execution(s) of workflow {workflow!r} seeded:", *ids, sep="\n  ")
        if fail_again:
            print("\n" + WALK_THROUGH)
        print("Ctrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both commands take."""
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--seed", type=int, default=5, metavar="N", help="failed executions to seed")
    parser.add_argument(
        "--fail-again",
        action="store_true",
        help="every retried execution fails again at once (walk through cooldown, the cap and give-up)",
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m emulator``: the same as ``workflow-retry emulator``, with a few more options."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--project", default="local", help="CDF project name")
    parser.add_argument("--workflow", default="wf", help="workflow external ID of the seeded executions")
    parser.add_argument("--client-id", default="local-client")
    parser.add_argument("--client-secret", default=None, help="default: a random secret")
    args = parser.parse_args(argv)
    return serve(
        port=args.port,
        seed=args.seed,
        fail_again=args.fail_again,
        project=args.project,
        workflow=args.workflow,
        client_id=args.client_id,
        client_secret=args.client_secret,
    )
