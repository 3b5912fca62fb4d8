"""A retry policy as a caller gives it: the one parser of ``maxRetries``, ``minRetryIntervalSeconds``,
``retryOnTimeout`` and ``retryOn``, used at every edge (executeNotebook, tasks, web tools)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from nbjobs.errors import InvalidRequest
from nbjobs.models.jobs import (
    DEFAULT_RETRY_ON,
    MAX_RETRIES,
    MAX_RETRY_INTERVAL_SECONDS,
    RETRYABLE,
    FailureReason,
    RetryPolicy,
)

FIELDS = ("maxRetries", "minRetryIntervalSeconds", "retryOnTimeout", "retryOn")


def parse_retry_policy(fields: Mapping[str, Any]) -> RetryPolicy:
    """The policy in ``fields`` (form text, JSON values or a stored task's parameters); absent ones take
    their defaults (no retries). InvalidRequest names the first bad one."""
    retries = _whole(fields.get("maxRetries"), "maxRetries", 0, MAX_RETRIES)
    interval = _seconds(fields.get("minRetryIntervalSeconds"))
    on_timeout = _yes_no(fields.get("retryOnTimeout"), "retryOnTimeout")
    return RetryPolicy(retries, interval, on_timeout, _reasons(fields.get("retryOn")))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if _blank(value):
        return low
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"'{name}' must be a whole number from {low} to {high}.") from None
    if (
        isinstance(value, bool)
        or not math.isfinite(number)
        or number != int(number)
        or not low <= number <= high
    ):
        raise InvalidRequest(f"'{name}' must be a whole number from {low} to {high}.")
    return int(number)


def _seconds(value: Any) -> float:
    name, high = "minRetryIntervalSeconds", MAX_RETRY_INTERVAL_SECONDS
    if _blank(value):
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"'{name}' must be a number of seconds from 0 to {high}.") from None
    if isinstance(value, bool) or not math.isfinite(number) or not 0 <= number <= high:
        raise InvalidRequest(f"'{name}' must be a number of seconds from 0 to {high}.")
    return number


def _yes_no(value: Any, name: str) -> bool:
    if _blank(value):
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InvalidRequest(f"'{name}' must be true or false.")


def _reasons(value: Any) -> frozenset[FailureReason]:
    if _blank(value):
        return DEFAULT_RETRY_ON
    names: Any = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                names = json.loads(text)
            except ValueError:
                raise InvalidRequest(
                    "'retryOn' must be a JSON list or a comma-separated list of reasons."
                ) from None
        else:
            names = [n.strip() for n in text.split(",") if n.strip()]
    allowed = ", ".join(sorted(RETRYABLE))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidRequest(f"'retryOn' must list failure reasons: {allowed}.")
    reasons = set()
    for name in names:
        try:
            reason = FailureReason(name.strip().lower())
        except ValueError:
            raise InvalidRequest(f"'retryOn': unknown failure reason '{name}'; use {allowed}.") from None
        if reason not in RETRYABLE:
            raise InvalidRequest(f"'retryOn': a job is never retried for '{reason}'; use {allowed}.")
        reasons.add(reason)
    return frozenset(reasons)
