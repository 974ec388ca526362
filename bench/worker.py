"""A long-lived measuring process, and the bench's handle on it.

``python -m bench.worker`` builds one CogniteClient from the Toolkit environment (as a user's script
or a warm Cognite Function would hold one), warms it up, then answers one JSON command per line on
stdin with one JSON line on its own protocol pipe (stdout; anything else the code prints goes to
stderr). Commands:

- ``{"op": "script", "ids": [...]}``: the user's loop, ``client.workflows.executions.retry(id)`` per ID;
- ``{"op": "handle", "payload": {...}}``: ``handler.handle(payload, client, secrets)``;
- ``{"op": "lambda", "event": {...}}``: ``handler.lambda_handler(event, context)`` (its own client);
- ``{"op": "bare", "path": ..., "requests": N, "concurrency": K}``: N plain ``GET path`` through the same
  client's async ``get``, K at a time, nothing else: the SDK's own floor for that many requests;
- ``{"op": "chain", "ids": [...], "concurrency": K}``: the least client of this design, K IDs at a time,
  per ID ``GET`` its execution, ``POST /sessions`` (the function's client credentials), ``POST .../retry``,
  and nothing else (no decision, ledger or results): the SDK's floor for three requests in a row per ID;
- ``{"op": "exit"}``.

Each answer holds ``seconds`` (wall time of the call alone), ``cpu_seconds`` (CPU time of the whole
worker meanwhile) and what the call returned, summarised. With ``"profile": PATH`` on a command,
the call runs under cProfile on the SDK's event-loop thread and the stats are written to PATH.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

from bench.emulated import ROOT
from bench.user import BenchLambdaContext, function_secrets, summarise, user_client


class WorkerError(RuntimeError):
    """The worker died, timed out, or answered an error."""


class Worker:
    """The bench's side of a worker process (a context manager: the process ends on exit)."""

    def __init__(self, env: dict[str, str], *, start_timeout: float = 60.0) -> None:
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.hello = self._read(start_timeout)

    def call(self, op: str, timeout: float = 120.0, **arguments: Any) -> dict[str, Any]:
        """Send one command and wait (at most ``timeout`` seconds) for its answer."""
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(f"the worker is gone: {self._stderr_tail()}") from None
        answer = self._read(timeout)
        if "error" in answer:
            raise WorkerError(f"{op} failed in the worker: {answer['error']}")
        return answer

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise WorkerError(f"no answer from the worker within {timeout:g} s: {self._stderr_tail()}")
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(timeout=5)
            raise WorkerError(f"the worker exited ({self._process.returncode}): {self._stderr_tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        return text[-limit:].strip() or "(no output)"

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                assert self._process.stdin is not None
                self._process.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self._process.stdin.close()
                self._process.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                self._process.kill()
                self._process.wait()
        self._stderr.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the worker process ------------------------------------------------------------------------


def _run_op(op: str, command: dict[str, Any], client: Any) -> dict[str, Any]:
    """Run one measured call; what it returned, summarised (timing is added by the caller)."""
    if op == "script":
        errors = []
        for execution_id in command["ids"]:
            try:
                client.workflows.executions.retry(execution_id)
            except Exception as exc:  # a user's loop that logs and goes on
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
        return {"errors": len(errors), "first_errors": errors[:3]}
    if op == "bare":
        return _bare_requests(client, command["path"], command["requests"], command["concurrency"])
    if op == "chain":
        return _least_chain(client, command["ids"], command["concurrency"])
    import handler

    if op == "handle":
        return summarise(handler.handle(command["payload"], client, function_secrets(), {"call_id": "bench"}))
    if op == "lambda":
        try:
            return {"raised": None, **summarise(handler.lambda_handler(command["event"], BenchLambdaContext()))}
        except Exception as exc:  # a direct invoke raises after processing when something may pass
            return {"raised": f"{type(exc).__name__}: {exc}"[:300], **summarise({})}
    raise ValueError(f"unknown op {op!r}")


def _bare_requests(client: Any, path: str, requests: int, concurrency: int) -> dict[str, Any]:
    """``requests`` GETs of ``path`` on the SDK's loop, ``concurrency`` at a time (no logic around them)."""
    import asyncio

    from cognite.client.utils._async_helpers import run_sync  # the SDK's loop thread (pinned SDK)

    async_client = client.get_async_client()
    left = [requests]

    async def one_slot() -> None:
        while left[0] > 0:
            left[0] -= 1
            await async_client.get(path)

    async def all_slots() -> None:
        await asyncio.gather(*(one_slot() for _ in range(concurrency)))

    run_sync(all_slots())
    return {"requests": requests}


def _least_chain(client: Any, ids: list[str], concurrency: int) -> dict[str, Any]:
    """Per ID its execution, a session and the retry, in a row, ``concurrency`` IDs at a time on the SDK's loop."""
    import asyncio
    from urllib.parse import quote

    from cognite.client.utils._async_helpers import run_sync  # the SDK's loop thread (pinned SDK)

    async_client = client.get_async_client()
    api = f"/api/v1/projects/{quote(client.config.project, safe='')}"
    secrets = function_secrets()
    credentials = {"clientId": secrets["client-id"], "clientSecret": secrets["client-secret"]}
    left = list(reversed(ids))

    async def one_slot() -> None:
        while left:
            execution_id = left.pop()
            (await async_client.get(f"{api}/workflows/executions/{execution_id}")).json()
            session = (await async_client.post(f"{api}/sessions", json={"items": [credentials]})).json()
            body = {"authentication": {"nonce": session["items"][0]["nonce"]}}
            (await async_client.post(f"{api}/workflows/executions/{execution_id}/retry", json=body)).json()

    async def all_slots() -> None:
        await asyncio.gather(*(one_slot() for _ in range(concurrency)))

    run_sync(all_slots())
    return {"ids": len(ids)}


class _LoopProfiler:
    """cProfile on the SDK's event-loop thread, where ``handle``'s coroutines and the HTTP calls run.

    (cProfile only sees the thread that enabled it; the calling thread merely waits for the loop.)
    """

    def __init__(self) -> None:
        import cProfile

        # CPU time of the loop thread, not wall time: on a loaded machine wall time charges whatever
        # ran while the thread was preempted (a socket send waking the server) to the code it was in.
        self.profile = cProfile.Profile(time.thread_time)

    def _on_loop(self, enable: bool) -> None:
        from cognite.client.utils._async_helpers import run_sync  # the SDK's loop thread (pinned SDK)

        async def switch() -> None:
            if enable:
                self.profile.enable()
            else:
                self.profile.disable()

        run_sync(switch())

    def __enter__(self) -> _LoopProfiler:
        self._on_loop(True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._on_loop(False)


def serve() -> None:
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the measured code prints must not corrupt the protocol
    sys.stdout = sys.stderr

    client = user_client()
    # Fetch the token before anything is timed, without an API request: the SDK builds its connection
    # pool at the first one, and in a fresh Function container that is the first request of handle.
    client.config.credentials.authorization_header()

    def answer(payload: dict[str, Any]) -> None:
        protocol.write(json.dumps(payload) + "\n")
        protocol.flush()

    answer({"ready": True, "pid": os.getpid()})
    for line in sys.stdin:
        command = json.loads(line)
        op = command.get("op")
        if op == "exit":
            break
        try:
            profiler = _LoopProfiler() if command.get("profile") else None
            cpu, started = time.process_time(), time.perf_counter()
            if profiler is not None:
                with profiler:
                    result = _run_op(op, command, client)
            else:
                result = _run_op(op, command, client)
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
            if profiler is not None:
                profiler.profile.dump_stats(command["profile"])
            answer({"seconds": seconds, "cpu_seconds": cpu_seconds, **result})
        except Exception as exc:
            answer({"error": f"{type(exc).__name__}: {exc}"[:1000]})


if __name__ == "__main__":
    serve()
