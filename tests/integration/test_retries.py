"""Retries with real kernels: a failed attempt that the job's policy retries runs again as the same job
(attempt + 1) after its backoff, the history of attempts is kept, and a cancel or a reason the policy
does not name ends the job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nbjobs.models.jobs import FailureReason, JobStatus, RetryPolicy
from nbjobs.models.parameters import parse_parameters
from nbjobs.web.views import job_full

from .conftest import ADMIN

pytestmark = pytest.mark.kernel


def submit(app, golden, marker: Path, retry: RetryPolicy, **params):
    values = {"marker": str(marker), **params}
    return app.service.submit(ADMIN, golden("flaky.ipynb"), parameters=parse_parameters(values), retry=retry)


def attempts_run(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_a_kernel_that_dies_is_retried_until_an_attempt_succeeds(make_app, golden, tmp_path):
    app = make_app()
    marker = tmp_path / "runs"
    job = submit(app, golden, marker, RetryPolicy(max_retries=3), die_first=2)
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.COMPLETED and ended.attempt == 3
    assert attempts_run(marker) == 3
    history = [
        (a.attempt, a.status, a.failure.reason if a.failure else None, a.retried) for a in ended.attempts
    ]
    assert history == [
        (1, JobStatus.FAILED, FailureReason.KERNEL_DIED, True),
        (2, JobStatus.FAILED, FailureReason.KERNEL_DIED, True),
        (3, JobStatus.COMPLETED, None, False),
    ]
    assert all(a.start_time and a.end_time >= a.start_time for a in ended.attempts)
    view = job_full(ended)["customAttributes"]
    assert view["attempt"] == 3 and [a["status"] for a in view["attempts"]] == [
        "FAILED",
        "FAILED",
        "COMPLETED",
    ]
    assert view["retryPolicy"]["maxRetries"] == 3


def test_the_last_allowed_attempt_ends_the_job_failed(make_app, golden, tmp_path):
    app = make_app()
    marker = tmp_path / "runs"
    job = submit(app, golden, marker, RetryPolicy(max_retries=1), die_first=5)
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.KERNEL_DIED
    assert ended.attempt == 2 and attempts_run(marker) == 2
    assert [a.retried for a in ended.attempts] == [True, False]


def test_a_reason_the_policy_does_not_name_is_not_retried(make_app, golden, tmp_path):
    app = make_app()
    plain, named = tmp_path / "plain", tmp_path / "named"
    default = submit(app, golden, plain, RetryPolicy(max_retries=2), raise_first=1)
    opted = submit(
        app,
        golden,
        named,
        RetryPolicy(max_retries=2, retry_on=frozenset({FailureReason.CELL_ERROR})),
        raise_first=1,
    )
    app.pool.run(burst=True)
    assert app.store.get(default.job_id).status == JobStatus.FAILED  # cell errors are not retried by default
    assert attempts_run(plain) == 1
    assert app.store.get(opted.job_id).status == JobStatus.COMPLETED and attempts_run(named) == 2


def test_a_timeout_is_retried_only_when_asked(make_app, golden, tmp_path):
    # 15 s: the retried attempt must start its kernel and run within it, on a loaded machine too
    app = make_app(max_execute_notebook_time_minutes=0.25)
    plain, asked = tmp_path / "plain", tmp_path / "asked"
    no = submit(app, golden, plain, RetryPolicy(max_retries=1), sleep_first=60)
    yes = submit(app, golden, asked, RetryPolicy(max_retries=1, retry_on_timeout=True), sleep_first=60)
    app.pool.run(burst=True)
    ended = app.store.get(no.job_id)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.TIMEOUT
    assert attempts_run(plain) == 1
    retried = app.store.get(yes.job_id)
    assert retried.status == JobStatus.COMPLETED and retried.attempt == 2
    assert retried.attempts[0].failure.reason == FailureReason.TIMEOUT


def test_a_retry_waits_for_its_backoff_and_a_cancel_meanwhile_ends_it(make_app, golden, tmp_path):
    app = make_app()
    marker, other = tmp_path / "runs", tmp_path / "other"
    policy = RetryPolicy(max_retries=2, min_interval_seconds=5.0)
    job = submit(app, golden, marker, policy, die_first=1)
    app.pool.run(burst=True)  # attempt 1 dies; attempt 2 may not start before 5 s
    waiting = app.store.get(job.job_id)
    assert waiting.status == JobStatus.SUBMITTED and attempts_run(marker) == 1
    first_end = waiting.attempts[0].end_time
    assert waiting.not_before == first_end + 5000
    assert job_full(waiting)["customAttributes"]["notBefore"] == waiting.not_before
    claimed = app.pool.run(burst=True)
    if time.time() * 1000 < waiting.not_before:  # the whole pass fell inside the backoff (a slow one may not)
        assert claimed == []  # not claimable during the backoff
    wait_past(waiting.not_before)
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.COMPLETED and ended.start_time >= first_end + 5000

    cancelled = submit(app, golden, other, policy, die_first=5)
    app.pool.run(burst=True)
    backing_off = app.store.get(cancelled.job_id)
    assert backing_off.status == JobStatus.SUBMITTED
    app.service.cancel(ADMIN, cancelled.job_id)
    wait_past(backing_off.not_before)
    assert app.pool.run(burst=True) == []
    final = app.store.get(cancelled.job_id)
    assert final.status == JobStatus.CANCELLED and attempts_run(other) == 1


def wait_past(epoch_ms: int) -> None:
    """Sleep until the wall clock is past ``epoch_ms`` (a backoff's end: time is the input here)."""
    while time.time() * 1000 <= epoch_ms + 100:
        time.sleep(0.05)
