"""Comparisons 3 and 4: a backlog of failed executions after an outage, without and with rate limits.

3. The backlog (200 failed executions, 20 ms per request) through ``handle`` with a batch payload
   and through a sweep, against the user's script in a loop. Ideal time: requests per ID x latency
   x IDs / concurrency (every request of every ID, spread perfectly over the concurrency slots).
4. The same backlog while the emulator answers 429 (with ``Retry-After``) to 20% of API requests:
   every execution must be retried exactly once (IDs left transiently failed are delivered again,
   as SQS or Lambda's async retries would), and the total request count must not explode.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.emulated import LATENCY_SECONDS, PROJECT, EmulatedCdf
from bench.retry_one import request_shape, warm_up
from bench.stats import median, rounded
from bench.table import Row, Status, at_least, at_most, info, not_available
from bench.worker import Worker
from emulator import Fault, RecordedRequest
from workflow_retry.policy import IN_FLIGHT_WINDOW_MS

SPEEDUP_TARGET = 12.0
FLOOR_TARGET = 1.3
SLOW_SPEEDUP_TARGET = 15.0
ROUND_TRIPS_PER_ID = 3
SLOW_SIDES = ("loop", "batch", "chain")
"""The requests of one ID that must follow each other: its execution, then a session, then the retry."""
STORM_TARGET = 1.3
"""Requests under 20% 429s / requests without: 1 / (1 - 0.2) = 1.25 is the least possible."""
THROTTLE_PROBABILITY = 0.2
RETRY_AFTER_SECONDS = 1.0
MAX_DELIVERIES = 5
LOOP_ROUNDS = 3
# API paths only: the identity provider is not CDF and is not throttled with it.
_API_PATHS = r"^/(workflows|sessions|raw)\b"


@dataclass(frozen=True)
class BacklogRun:
    seconds: float
    cpu_seconds: float
    """CPU time of the measured process during the call (its share of ``seconds`` shows a CPU-bound run)."""
    emulator_cpu_seconds: float
    """CPU time of the bench's process (the emulator) meanwhile: on a 2-core machine it competes too."""
    requests: int
    max_in_flight: int
    answer: dict[str, Any]


def _run(cdf: EmulatedCdf, worker: Worker, side: str, size: int, tag: str, concurrency: int = 0) -> BacklogRun:
    workflow = f"bench-backlog-{side}-{tag}"
    ids = cdf.seed_failed(size, workflow)
    cdf.start_counting()
    emulator_cpu = time.process_time()
    if side == "loop":
        answer = worker.call("script", ids=ids, timeout=60 + size)
        if answer["errors"]:
            raise RuntimeError(f"the script loop failed: {answer['first_errors']}")
    elif side == "chain":
        answer = worker.call("chain", ids=ids, concurrency=concurrency, timeout=60 + size)
    else:
        payload: dict[str, Any] = (
            {"executionIds": ids}
            if side == "batch"
            else {"sweep": {"workflows": [workflow], "lookbackMinutes": 60, "maxRestarts": size}}
        )
        answer = worker.call("handle", payload=payload, timeout=60 + size)
        if answer["counts"].get("retried") != size:
            raise RuntimeError(f"handle ({side}) did not retry all {size} executions: {answer['counts']}")
    emulator_cpu = time.process_time() - emulator_cpu
    retried = sum(cdf.emu.retry_count(i) for i in ids)
    if retried != size:
        raise RuntimeError(f"{side}: {retried} retries applied for {size} executions")
    return BacklogRun(
        answer["seconds"], answer["cpu_seconds"], emulator_cpu, len(cdf.api_requests()), cdf.emu.max_in_flight, answer
    )


def compare_backlog(
    cdf: EmulatedCdf,
    size: int,
    rounds: int,
    concurrency: int,
    *,
    with_sweep: bool,
    slow_network: tuple[int, float] | None = None,
) -> list[Row]:
    """The backlog at 20 ms; with ``slow_network`` (IDs, latency) also a smaller one at a cloud-like latency."""
    cdf.emu.latency = LATENCY_SECONDS
    sides = ["loop", "batch"] + (["sweep"] if with_sweep else [])
    runs: dict[str, list[BacklogRun]] = {side: [] for side in sides}
    slow: dict[str, BacklogRun] = {}
    bare: list[BacklogRun] = []
    chain: list[BacklogRun] = []
    # The sweep side asks for maxRestarts = the backlog size: the operator's limit must allow it.
    with Worker(cdf.child_env(RETRY_SWEEP_MAX_RESTARTS="1000")) as worker:
        warm_up(cdf, worker)
        for i in range(rounds):
            # The loop is latency-bound and steady: fewer rounds of it keep the run short.
            this_round = [side for side in sides if side != "loop" or i < LOOP_ROUNDS]
            for side in this_round[i % len(this_round) :] + this_round[: i % len(this_round)]:
                runs[side].append(_run(cdf, worker, side, size, f"r{i}"))
            if i < LOOP_ROUNDS:
                bare.append(_bare(cdf, worker, runs["batch"][-1].requests, concurrency))
                chain.append(_run(cdf, worker, "chain", size, f"r{i}", concurrency))
        if slow_network is not None:
            cdf.emu.latency = slow_network[1]
            slow = {side: _run(cdf, worker, side, slow_network[0], "slow", concurrency) for side in SLOW_SIDES}
            cdf.emu.latency = LATENCY_SECONDS
    loop = [r.seconds for r in runs["loop"]]
    rows: list[Row] = []
    for side, label in (("batch", "handle, batch payload"), ("sweep", "handle, sweep payload")):
        if side not in runs:
            rows.append(
                not_available(
                    f"backlog {size}: {label} / the script loop, speed-up",
                    f">= {SPEEDUP_TARGET:g}x",
                    "workflow_retry.sweep has not landed",
                )
            )
            continue
        seconds = [r.seconds for r in runs[side]]
        requests_per_id = median([r.requests for r in runs[side]]) / size
        floor = ROUND_TRIPS_PER_ID * LATENCY_SECONDS * size / concurrency
        details: dict[str, Any] = {
            "rounds": rounds,
            "seconds": rounded(seconds),
            "cpu_seconds": rounded([r.cpu_seconds for r in runs[side]]),
            "emulator_cpu_seconds": rounded([r.emulator_cpu_seconds for r in runs[side]]),
            "loop_seconds": rounded(loop),
            "loop_cpu_seconds": rounded([r.cpu_seconds for r in runs["loop"]]),
            "requests_per_id": round(requests_per_id, 2),
            "cpu_ms_per_request": round(1000 * median([r.cpu_seconds / r.requests for r in runs[side]]), 2),
            "loop_requests_per_id": round(median([r.requests for r in runs["loop"]]) / size, 2),
            "concurrency": concurrency,
            "max_in_flight": max(r.max_in_flight for r in runs[side]),
            "round_trip_floor_seconds": round(floor, 3),
        }
        if side == "sweep":
            details["sweep_summary"] = runs[side][-1].answer.get("sweep")
        rows.append(
            at_least(
                f"backlog {size}: {label} / the script loop, speed-up",
                median(loop) / median(seconds),
                SPEEDUP_TARGET,
                **details,
            )
        )
        rows.append(
            at_most(
                f"backlog {size}: {label} / the round-trip floor "
                f"({ROUND_TRIPS_PER_ID} x 20 ms x {size} / {concurrency} = {floor:.2f} s)",
                median(seconds) / floor,
                FLOOR_TARGET,
            )
        )
        if side == "batch":
            rows.append(_cpu_bound_row(size, label, runs[side], median(loop)))
            rows.append(_sdk_floor_row(size, bare, median(loop), concurrency))
            rows.append(_least_client_row(f"backlog {size}", chain, median(loop), concurrency))
    if slow_network is not None:
        n, latency = slow_network
        speed_up = slow["loop"].seconds / slow["batch"].seconds
        rows.append(
            at_least(
                f"backlog {n} at {latency * 1000:.0f} ms latency: handle, batch payload / the script loop, speed-up",
                speed_up,
                SLOW_SPEEDUP_TARGET,
                seconds=round(slow["batch"].seconds, 3),
                cpu_seconds=round(slow["batch"].cpu_seconds, 3),
                loop_seconds=round(slow["loop"].seconds, 3),
                requests_per_id=round(slow["batch"].requests / n, 2),
                concurrency=concurrency,
                round_trip_floor_seconds=round(ROUND_TRIPS_PER_ID * latency * n / concurrency, 3),
            )
        )
        slow_label = f"backlog {n} at {latency * 1000:.0f} ms latency"
        rows.append(_least_client_row(slow_label, [slow["chain"]], slow["loop"].seconds, concurrency))
    return rows


def _bare(cdf: EmulatedCdf, worker: Worker, requests: int, concurrency: int) -> BacklogRun:
    """As many plain GETs as the batch sent, through the same client and concurrency, and nothing else."""
    (execution_id,) = cdf.seed_failed(1, "bench-bare")
    path = f"/api/v1/projects/{PROJECT}/workflows/executions/{execution_id}"
    cdf.start_counting()
    answer = worker.call("bare", path=path, requests=requests, concurrency=concurrency, timeout=60 + requests)
    return BacklogRun(answer["seconds"], answer["cpu_seconds"], 0.0, len(cdf.api_requests()), cdf.emu.max_in_flight, {})


def _sdk_floor_row(size: int, bare: list[BacklogRun], loop_seconds: float, concurrency: int) -> Row:
    """What the SDK alone allows here: the batch's number of requests as bare GETs, at the same concurrency.

    No policy, ledger, session or retry logic: if this is not 10x faster than the loop, no client
    built on the SDK that sends that many requests can be.
    """
    requests = median([r.requests for r in bare])
    label = f"backlog {size}: the SDK alone, the batch's {requests:.0f} requests as bare GETs, {concurrency} at a time"
    return _client_row(label, bare, loop_seconds)


def _least_client_row(label: str, chain: list[BacklogRun], loop_seconds: float, concurrency: int) -> Row:
    """The least client of this design on the SDK: per ID its execution, a session and the retry, in a row.

    No decision, ledger, deadline or results: what any client that keeps the contracts (the execution
    read before the session, one session per retry) can reach on this SDK and machine, at this concurrency.
    """
    client = f"the least client on the SDK (execution, session, retry in a row, {concurrency} IDs at a time)"
    return _client_row(f"{label}: {client}", chain, loop_seconds)


def _client_row(comparison: str, runs: list[BacklogRun], loop_seconds: float) -> Row:
    """A client without the tool's logic against the loop: its speed-up and CPU per request (medians)."""
    seconds = median([r.seconds for r in runs])
    cpu_ms = 1000 * median([r.cpu_seconds / r.requests for r in runs])
    return info(
        comparison,
        f"{loop_seconds / seconds:.1f}x the loop ({cpu_ms:.1f} ms CPU/request)",
        loop_seconds / seconds,
        seconds=rounded([r.seconds for r in runs]),
        cpu_seconds=rounded([r.cpu_seconds for r in runs]),
        requests=median([r.requests for r in runs]),
        cpu_ms_per_request=round(cpu_ms, 2),
        speed_up=round(loop_seconds / seconds, 2),
    )


def _cpu_bound_row(size: int, label: str, runs: list[BacklogRun], loop_seconds: float) -> Row:
    """How much of the call was CPU in the measured process, and the speed-up that CPU alone allows.

    The call cannot take less than its own CPU time (one event loop, one core), so the loop's time
    over the call's CPU time is the most any concurrency could reach on this machine.
    """
    cpu = median([r.cpu_seconds for r in runs])
    cpu_share = median([r.cpu_seconds / r.seconds for r in runs])
    cpu_ms = 1000 * median([r.cpu_seconds / r.requests for r in runs])
    limit = loop_seconds / cpu
    return info(
        f"backlog {size}: {label}, CPU in the measured process (the call's floor on this machine)",
        f"{cpu_share:.0%} of the call, {cpu_ms:.1f} ms/request: at most {limit:.1f}x the loop",
        limit,
        cpu_seconds=round(cpu, 3),
        cpu_share=round(cpu_share, 3),
        cpu_ms_per_request=round(cpu_ms, 2),
        speed_up_limit=round(limit, 2),
    )


@dataclass
class Deliveries:
    """IDs delivered again while they come back transient or deferred, as a queue would."""

    deliveries: int = 0
    seconds: float = 0.0
    pending: list[str] = field(default_factory=list)
    deferred: dict[str, str] = field(default_factory=dict)
    waited: float = 0.0


def _deliver(worker: Worker, ids: list[str], size: int, *, wait_for_deferred: bool) -> Deliveries:
    """Call ``handle`` with the batch, then again with the IDs that came back transient, up to MAX_DELIVERIES.

    With ``wait_for_deferred``, IDs deferred because their own retry request may have been applied
    are delivered again once the policy's in-flight window has passed.
    """
    run = Deliveries(pending=list(ids))
    while run.pending and run.deliveries < MAX_DELIVERIES:
        answer = worker.call("handle", payload={"executionIds": run.pending}, timeout=120 + size)
        run.deliveries, run.seconds = run.deliveries + 1, run.seconds + answer["seconds"]
        run.pending, run.deferred = answer["transient"], run.deferred | answer["deferred"]
        if not run.pending and run.deferred and wait_for_deferred and not run.waited:
            run.waited = IN_FLIGHT_WINDOW_MS / 1000 + 1
            time.sleep(run.waited)
            run.pending, run.deferred = list(run.deferred), {}
    return run


def _once_row(label: str, cdf: EmulatedCdf, ids: list[str], run: Deliveries, **details: Any) -> Row:
    """Every execution retried exactly once, after the deliveries of ``run``."""
    retries = [cdf.emu.retry_count(i) for i in ids]
    once, size = retries.count(1), len(ids)
    waited = f", waited {run.waited:.0f} s" if run.waited else ""
    return Row(
        label,
        f"{once}/{size} ({run.deliveries} deliveries{waited})",
        f"{size}/{size}",
        Status.PASS if once == size else Status.FAIL,
        float(once),
        float(size),
        {
            "retried_twice_or_more": sum(1 for n in retries if n > 1),
            "never_retried": retries.count(0),
            "still_transient": len(run.pending),
            "still_deferred": run.deferred,
            "waited_seconds_for_deferred": run.waited,
            "deliveries": run.deliveries,
            "seconds_total": round(run.seconds, 3),
            **details,
        },
    )


def compare_rate_limited(cdf: EmulatedCdf, size: int, *, with_loop: bool, wait_for_deferred: bool) -> list[Row]:
    """The backlog under 20% 429s: exactly one retry per execution, no request storm.

    Deliveries repeat for the IDs that failed transiently, as a queue would. An ID whose retry
    request was itself refused keeps its counted attempt and is deferred until the policy's in-flight
    window has passed (it might have been applied); with ``wait_for_deferred`` the bench waits that
    window out (cooldown set to 0 for this worker, to compress time) and delivers those IDs again.
    """
    cdf.emu.latency = LATENCY_SECONDS
    rows: list[Row] = []
    with Worker(cdf.child_env(RETRY_COOLDOWN_SECONDS="0")) as worker:
        warm_up(cdf, worker)
        baseline = _run(cdf, worker, "batch", size, "unthrottled")
        ids = cdf.seed_failed(size, "bench-throttled-batch")
        cdf.start_counting()
        fault = cdf.emu.add_fault(
            Fault(
                path_regex=_API_PATHS, statuses=[429], probability=THROTTLE_PROBABILITY, retry_after=RETRY_AFTER_SECONDS
            )
        )
        run = _deliver(worker, ids, size, wait_for_deferred=wait_for_deferred)
        cdf.emu.clear_faults()
        requests = cdf.api_requests()
        max_in_flight = cdf.emu.max_in_flight
    storm = len(requests) / baseline.requests
    throttled = sum(1 for r in requests if r.status == 429)
    rows.append(
        _once_row(
            f"rate limits: {size} with 20% 429s, executions retried exactly once",
            cdf,
            ids,
            run,
            answered_429=throttled,
            injected_429=fault.applied,
            max_in_flight=max_in_flight,
        )
    )
    rows.append(
        at_most(
            f"rate limits: requests / the fault-free backlog's ({len(requests)} requests)",
            storm,
            STORM_TARGET,
            requests=len(requests),
            fault_free_requests=baseline.requests,
            answered_429=throttled,
            requests_by_kind=_by_kind(requests),
        )
    )
    if with_loop:
        rows.append(_loop_under_throttling(cdf, size))
    return rows


def compare_rate_limiter(
    cdf: EmulatedCdf, size: int, concurrency: int, limit: tuple[float, int], *, wait_for_deferred: bool
) -> list[Row]:
    """The backlog at the default concurrency against the emulator's rate-based limiter.

    The limiter answers 429 (with ``Retry-After``) to requests over ``limit[0]`` per second or over
    ``limit[1]`` at once, as CDF throttles a project. Every execution must still be retried exactly
    once; the requests, the 429s and the time are shown against the same backlog without a limiter.
    """
    requests_per_second, max_concurrent = limit
    cdf.emu.latency = LATENCY_SECONDS
    with Worker(cdf.child_env(RETRY_COOLDOWN_SECONDS="0")) as worker:
        warm_up(cdf, worker)
        baseline = _run(cdf, worker, "batch", size, "unlimited")
        ids = cdf.seed_failed(size, "bench-rate-limiter")
        cdf.start_counting()
        cdf.emu.set_rate_limit(requests_per_second, max_concurrent=max_concurrent)
        run = _deliver(worker, ids, size, wait_for_deferred=wait_for_deferred)
        throttled = cdf.emu.throttled_count
        cdf.emu.set_rate_limit()
        requests = cdf.api_requests()
        max_in_flight = cdf.emu.max_in_flight
    limiter = f"{requests_per_second:g} requests/s, {max_concurrent} at once"
    label = f"rate limiter ({limiter}), {size} at concurrency {concurrency}"
    floor = len(requests) / requests_per_second
    return [
        _once_row(f"{label}: executions retried exactly once", cdf, ids, run, answered_429=throttled),
        info(
            f"{label}: requests, 429s and time",
            f"{len(requests) / baseline.requests:.2f}x the requests, {throttled / len(requests):.0%} answered 429, "
            f"{run.seconds:.1f} s ({run.seconds / baseline.seconds:.1f}x unlimited)",
            len(requests) / baseline.requests,
            requests=len(requests),
            unlimited_requests=baseline.requests,
            answered_429=throttled,
            seconds=round(run.seconds, 3),
            unlimited_seconds=round(baseline.seconds, 3),
            rate_floor_seconds=round(floor, 3),
            max_in_flight=max_in_flight,
            requests_by_kind=_by_kind(requests),
        ),
    ]


def _loop_under_throttling(cdf: EmulatedCdf, size: int) -> Row:
    """The user's loop on the same throttled backlog (in a fresh worker: the SDK's default retries)."""
    with Worker(cdf.child_env()) as worker:
        ids = cdf.seed_failed(size, "bench-throttled-loop")
        cdf.start_counting()
        cdf.emu.add_fault(
            Fault(
                path_regex=_API_PATHS, statuses=[429], probability=THROTTLE_PROBABILITY, retry_after=RETRY_AFTER_SECONDS
            )
        )
        answer = worker.call("script", ids=ids, timeout=60 + 2 * size)
        cdf.emu.clear_faults()
        requests = cdf.api_requests()
    retries = [cdf.emu.retry_count(i) for i in ids]
    return info(
        "rate limits: the script loop on the same backlog (for comparison)",
        f"{retries.count(1)}/{size} once, {len(requests)} requests, {answer['seconds']:.1f} s",
        float(retries.count(1)),
        errors=answer["errors"],
        requests=len(requests),
        seconds=round(answer["seconds"], 3),
    )


def _by_kind(requests: list[RecordedRequest]) -> dict[str, int]:
    """How many requests of each kind (method and path without project and IDs), most frequent first."""
    return dict(Counter(request_shape(r.method, r.path) for r in requests).most_common())
