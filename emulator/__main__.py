"""``python -m emulator``: run the CDF emulator in the foreground for manual poking (Ctrl-C stops it).

Registers one client with every capability, seeds N failed executions and prints how to connect.
"""

from __future__ import annotations

import argparse
import secrets
import threading

from emulator.server import CdfEmulator


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the emulator and wait for Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--project", default="test-project", help="CDF project name")
    parser.add_argument("--seed", type=int, default=5, metavar="N", help="failed executions to seed")
    parser.add_argument("--workflow", default="wf", help="workflow external id of the seeded executions")
    parser.add_argument("--client-id", default="emulator-client")
    parser.add_argument("--client-secret", default=None, help="default: a random secret")
    args = parser.parse_args(argv)

    secret = args.client_secret or secrets.token_urlsafe(24)
    emu = CdfEmulator(project=args.project, port=args.port).start()
    try:
        emu.add_client(args.client_id, secret)
        ids = emu.seed_many(args.seed, workflow_external_id=args.workflow) if args.seed > 0 else []
        print(f"CDF emulator for project {emu.project!r}")
        print(f"  base_url:      {emu.base_url}")
        print(f"  token_url:     {emu.token_url}")
        print(f"  client_id:     {args.client_id}")
        print(f"  client_secret: {secret}")
        print(f"  scopes:        {emu.base_url}/.default")
        print(f"Seeded {len(ids)} FAILED execution(s) of workflow {args.workflow!r} version '1':")
        for execution_id in ids:
            print(f"  {execution_id}")
        print("Ctrl-C to stop.", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping")
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
