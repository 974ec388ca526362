"""A Lambda container in a process of its own, for tests of the RAW ledger's race across processes.

Run as ``python -m tests.ledger.race_child EXECUTION_ID`` with the Lambda's environment pointing at an
emulator. It builds its container and warms it (client and token) with a dry run, prints ``ready``,
then for every line ``go`` on stdin handles one SQS batch of 10 records naming the execution and
prints one JSON line: the SQS answer and the outcome of every record (from the service's per-ID log
records). It ends at end of input. Its own lines start with :data:`PROTOCOL`: the container's log lines
go to stdout too, as a Lambda's do.
"""

from __future__ import annotations

import json
import logging
import sys

from tests.aws.samples import lambda_context, sqs_event
from workflow_retry.aws.entrypoint import LambdaApp

RECORDS = 10
PROTOCOL = "race-child: "


class Outcomes(logging.Handler):
    """The ``outcome`` of each per-ID result the service logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        outcome = record.__dict__.get("outcome")
        if isinstance(outcome, str):
            self.seen.append(outcome)


def main(execution_id: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    outcomes = Outcomes()
    service_log = logging.getLogger("workflow_retry.service")
    service_log.setLevel(logging.INFO)
    service_log.addHandler(outcomes)
    app = LambdaApp.from_environment()
    app.handle({"executionId": execution_id, "dryRun": True}, lambda_context(60))
    print(PROTOCOL + "ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            continue
        outcomes.seen.clear()
        answer = app.handle(sqs_event(*[{"executionId": execution_id}] * RECORDS), lambda_context(60))
        print(PROTOCOL + json.dumps({"answer": answer, "outcomes": outcomes.seen}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
