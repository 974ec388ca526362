"""Every answer fits its platform: trimmed, never refused, after the retries it reports were applied.

A Cognite Function's answer may be at most 1 MB, a synchronous Lambda's 6 MB. An answer that asked for
the whole execution in each result (``fullExecution``) can be far more (1,000 executions of a 50-task
workflow: about 27 MB), and the platform would then fail the call *after* its retries were applied.
:func:`fit_answer` measures the answer as it will be serialised (``json.dumps``, ASCII) and, when it is
over the limit, shortens results, largest first, one step at a time, until it fits:

1. ``fullExecution``: the whole execution becomes the compact one (:func:`~workflow_retry.models.compact_execution`);
2. ``execution``: the compact execution keeps only what names the run (``id``, ``workflowExternalId``,
   ``version``, ``status``, ``engineExecutionId``);
3. ``texts``: each result gets an equal share of the limit: the execution keeps ``id``, ``status``
   and ``engineExecutionId``, and ``reason`` and ``error.message`` are cut to fit;
4. ``omitted``: results are left out from the end (``counts`` still counts them). Only a sweep whose
   own summary nearly fills the limit can get here: 1,000 results fit in 1 MB at step 3.

What was done and why is said in a top-level ``trimmed`` object (docs/payloads-and-results.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from workflow_retry.models import compact_execution

COGNITE_FUNCTION_ANSWER_LIMIT_BYTES = 1_000_000
"""Cognite Functions: ``responseSizeMb: 1`` (``client.functions.limits()``); 1 MB read as 10^6 bytes, the stricter."""
LAMBDA_ANSWER_LIMIT_BYTES = 6_000_000
"""AWS Lambda: 6 MB for a synchronous invocation's response (6 MiB, read as 6 x 10^6 bytes, the stricter)."""
TRIMMED_NOTE_BYTES = 1_000
"""Room kept for the ``trimmed`` object itself."""
IDENTITY_FIELDS = ("id", "workflowExternalId", "version", "status", "engineExecutionId")
MINIMAL_FIELDS = ("id", "status", "engineExecutionId")


def answer_bytes(answer: object) -> int:
    """The size of the answer as the platforms serialise it (``json.dumps`` with its defaults: ASCII)."""
    return len(json.dumps(answer))


def fit_answer(answer: dict[str, Any], limit_bytes: int, platform: str) -> dict[str, Any]:
    """``answer`` (a report's ``to_dict()``) as is when it fits in ``limit_bytes``, else trimmed to fit.

    A trimmed answer holds ``trimmed``: the limit, the size it would have had, why, and how many results
    each step shortened. ``counts`` and every other field stay as they were.
    """
    results: list[dict[str, Any]] = list(answer.get("results") or [])
    # Measured result by result (each is needed to pick the largest), and the rest once: the answer's
    # exact size without serialising it whole a second time (json.dumps composes: "[" a ", " b "]").
    sizes = [answer_bytes(result) for result in results]
    fixed = answer_bytes({**answer, "results": []})
    size = fixed + sum(sizes) + 2 * max(0, len(results) - 1)
    if size <= limit_bytes:
        return answer
    budget = limit_bytes - TRIMMED_NOTE_BYTES
    trimmer = _Trimmer(results, sizes, size)
    shortened = {
        "fullExecution": trimmer.shrink_largest_first(_compact, budget),
        "execution": trimmer.shrink_largest_first(_identity, budget),
    }
    if trimmer.total > budget:
        share = (budget - fixed) // max(1, len(results)) - 2  # ", " between results
        shortened["texts"] = trimmer.shrink_largest_first(lambda r: _within(r, share), budget)
    omitted = trimmer.omit_from_end(budget)
    trimmed = {
        "limitBytes": limit_bytes,
        "untrimmedBytes": size,
        "why": (
            f"the answer would have been {size} bytes, more than the {limit_bytes} {platform} accepts: "
            "results were shortened, largest first (counts are complete)"
        ),
        "shortened": {step: count for step, count in shortened.items() if count},
        "omittedResults": omitted,
    }
    return {**answer, "results": trimmer.results, "trimmed": trimmed}


class _Trimmer:
    """The results and the answer's size, kept exact as results are replaced (``json.dumps`` composes)."""

    def __init__(self, results: list[dict[str, Any]], sizes: list[int], total: int) -> None:
        self.results = results
        self.sizes = sizes
        self.total = total

    def shrink_largest_first(self, shrink: Callable[[dict[str, Any]], dict[str, Any]], budget: int) -> int:
        """Replace results by ``shrink(result)``, largest first, until the answer fits; how many changed."""
        changed = 0
        for i in sorted(range(len(self.results)), key=self.sizes.__getitem__, reverse=True):
            if self.total <= budget:
                break
            smaller = shrink(self.results[i])
            size = answer_bytes(smaller)
            if size < self.sizes[i]:
                self.results[i], self.total = smaller, self.total - self.sizes[i] + size
                self.sizes[i] = size
                changed += 1
        return changed

    def omit_from_end(self, budget: int) -> int:
        omitted = 0
        while self.total > budget and self.results:
            self.total -= self.sizes.pop() + (2 if self.results[:-1] else 0)
            self.results.pop()
            omitted += 1
        return omitted


def _compact(result: dict[str, Any]) -> dict[str, Any]:
    execution = result.get("execution")
    return result if not isinstance(execution, dict) else {**result, "execution": compact_execution(execution)}


def _identity(result: dict[str, Any]) -> dict[str, Any]:
    return _only(result, IDENTITY_FIELDS)


def _only(result: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    execution = result.get("execution")
    if not isinstance(execution, dict):
        return result
    return {**result, "execution": {key: execution[key] for key in fields if key in execution}}


def _within(result: dict[str, Any], share: int) -> dict[str, Any]:
    """The result in ``share`` bytes where it can be: minimal execution, reason and error message cut."""
    smaller = _only(result, MINIMAL_FIELDS)
    error = smaller.get("error")
    texts = [("reason", str(smaller.get("reason", "")))]
    if isinstance(error, dict):
        texts.append(("message", str(error.get("message", ""))))
    skeleton = _with_texts(smaller, {name: "" for name, _ in texts})
    room = max(0, (share - answer_bytes(skeleton)) // len(texts))
    return _with_texts(smaller, {name: _cut_to_bytes(text, room) for name, text in texts})


def _with_texts(result: dict[str, Any], texts: dict[str, str]) -> dict[str, Any]:
    out = {**result, "reason": texts["reason"]}
    if "message" in texts and isinstance(result.get("error"), dict):
        out["error"] = {**result["error"], "message": texts["message"]}
    return out


def _cut_to_bytes(text: str, room: int) -> str:
    """The longest head of ``text`` whose JSON string (ASCII-escaped) fits in ``room`` bytes, marked as cut."""
    if answer_bytes(text) - 2 <= room:
        return text
    marker = "..."
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits, with the marker
        middle = (low + high + 1) // 2
        if answer_bytes(text[:middle] + marker) - 2 <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low] + marker if answer_bytes(text[:low] + marker) - 2 <= room else ""
