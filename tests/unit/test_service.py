"""JobService, reaper and recovery over the in-memory store, with a clock the tests move."""

from __future__ import annotations

import pytest

from nbjobs.clock import ManualClock
from nbjobs.errors import CannotCancel, InvalidParameters, InvalidRequest, JobNotFound
from nbjobs.models.accounts import Principal
from nbjobs.models.jobs import FailureReason, JobInputs, JobStatus
from nbjobs.models.parameters import parse_parameters
from nbjobs.service.jobs.recovery import reap_expired, recover_host
from nbjobs.service.jobs.service import HOUR_MS, JobService
from nbjobs.settings import load_settings
from nbjobs.store.memory.jobs import MemoryJobStore

ADMIN = Principal("admin", is_admin=True)
ALICE = Principal("alice")
BOB = Principal("bob")
LEASE = 60_000


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def store():
    return MemoryJobStore()


@pytest.fixture
def service(store, clock, tmp_path):
    submitted = []
    svc = JobService(store, load_settings({}, data_dir=tmp_path), clock, on_submit=submitted.append)
    svc.submitted = submitted
    return svc


def test_submit_stores_a_submitted_job_and_wakes_the_pool(service, store, clock):
    job = service.submit(ALICE, b"nb", parameters=parse_parameters('{"a": 1, "b": "two"}'))
    assert job.status == JobStatus.SUBMITTED and job.username == "alice"
    assert job.inputs.notebook_parameters == {"a": 1, "b": "two"}
    assert job.date_created == clock.now and job.end_time == 0 and job.start_time == 0
    assert store.get_blob(job.job_id, "input") == b"nb"
    assert service.submitted == [job]


@pytest.mark.parametrize("raw", ["[1, 2]", "not json", '"text"', "3", '{"not valid": 1}', '{"class": 1}'])
def test_parameters_that_are_not_a_json_object_of_names_are_refused_and_nothing_is_stored(
    service, store, raw
):
    with pytest.raises(InvalidParameters):
        service.submit(ALICE, b"nb", parameters=parse_parameters(raw))
    assert store.count() == 0


def test_negative_timeout_is_refused(service, store):
    with pytest.raises(InvalidRequest):
        service.submit(ALICE, b"nb", inputs=JobInputs(execution_timeout_minutes=-1))
    assert store.count() == 0


def test_users_see_only_their_jobs_and_others_look_unknown(service):
    mine = service.submit(ALICE, b"nb")
    theirs = service.submit(BOB, b"nb")
    assert [j.job_id for j in service.list(ALICE)[0]] == [mine.job_id]
    assert service.list(ADMIN)[1] == 2
    with pytest.raises(JobNotFound) as other:
        service.get(ALICE, theirs.job_id)
    with pytest.raises(JobNotFound) as unknown:
        service.get(ALICE, "j" + "0" * 32)
    assert type(other.value) is type(unknown.value)
    assert other.value.message.replace(theirs.job_id, "X") == unknown.value.message.replace(
        "j" + "0" * 32, "X"
    )
    with pytest.raises(JobNotFound):
        service.cancel(ALICE, theirs.job_id)
    with pytest.raises(JobNotFound):
        service.output_notebook(ALICE, theirs.job_id)
    assert service.get(ADMIN, theirs.job_id).job_id == theirs.job_id


def test_cancel_submitted_executing_and_ended(service, store, clock):
    waiting = service.submit(ALICE, b"nb")
    running = service.submit(ALICE, b"nb")
    assert service.cancel(ALICE, waiting.job_id).status == JobStatus.CANCELLED
    store.claim_next("w", clock(), LEASE)
    cancelling = service.cancel(ALICE, running.job_id)
    assert cancelling.status == JobStatus.CANCELLING and cancelling.cancel_requested
    assert service.cancel(ALICE, running.job_id).status == JobStatus.CANCELLING
    with pytest.raises(CannotCancel):
        service.cancel(ALICE, waiting.job_id)


def test_delete_all_removes_only_ended_jobs_of_the_caller(service, store, clock):
    a_done = service.submit(ALICE, b"nb")
    a_waiting = service.submit(ALICE, b"nb")
    b_done = service.submit(BOB, b"nb")
    service.cancel(ALICE, a_done.job_id)
    service.cancel(BOB, b_done.job_id)
    assert service.delete_all(ALICE) == 1
    assert store.get(a_waiting.job_id) is not None and store.get(b_done.job_id) is not None
    assert service.delete_all(ADMIN) == 1
    assert [j.job_id for j in store.list()] == [a_waiting.job_id]


def test_purge_keeps_ended_jobs_for_the_clean_age(service, store, clock):
    job = service.submit(ALICE, b"nb")
    service.cancel(ALICE, job.job_id)
    clock.advance(6 * HOUR_MS - 1)
    assert service.purge_expired() == 0
    clock.advance(2)
    assert service.purge_expired() == 1


def test_clean_age_below_six_hours_is_a_configuration_error(tmp_path):
    from nbjobs.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="at least 6"):
        load_settings({"NBJOBS_ASYNC_JOBS_CLEAN_AGE_HOURS": "5"}, data_dir=tmp_path)


def test_reaper_fails_jobs_whose_lease_expired(service, store, clock):
    job = service.submit(ALICE, b"nb")
    store.claim_next("host/boot/0", clock(), LEASE)
    clock.advance(LEASE - 1)
    assert reap_expired(store, clock) == []
    clock.advance(2)
    [ended] = reap_expired(store, clock)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.WORKER_LOST
    assert store.get(job.job_id).end_time == clock.now


def test_reaper_requeues_when_the_job_opted_in(service, store, clock):
    job = service.submit(ALICE, b"nb", retry_on_worker_lost=1)
    store.claim_next("w", clock(), LEASE)
    clock.advance(LEASE + 1)
    [requeued] = reap_expired(store, clock)
    assert requeued.status == JobStatus.SUBMITTED
    second = store.claim_next("w", clock(), LEASE)
    assert second.attempt == 2
    clock.advance(LEASE + 1)
    [ended] = reap_expired(store, clock)  # one retry only
    assert ended.status == JobStatus.FAILED and job.job_id == ended.job_id


def test_a_lost_cancelling_job_ends_cancelled(service, store, clock):
    job = service.submit(ALICE, b"nb")
    store.claim_next("w", clock(), LEASE)
    service.cancel(ALICE, job.job_id)
    clock.advance(LEASE + 1)
    [ended] = reap_expired(store, clock)
    assert ended.status == JobStatus.CANCELLED


def test_recovery_ends_only_jobs_of_an_earlier_boot_of_this_host(service, store, clock):
    old, current, elsewhere = (service.submit(ALICE, b"nb") for _ in range(3) if clock.advance(1))
    store.claim_next("myhost/old-boot/0", clock(), LEASE)
    store.claim_next("myhost/new-boot/0", clock(), LEASE)
    store.claim_next("otherhost/boot/0", clock(), LEASE)
    changed = recover_host(store, "myhost/", "myhost/new-boot", clock)
    assert [j.job_id for j in changed] == [old.job_id]
    assert store.get(old.job_id).failure.reason == FailureReason.WORKER_LOST
    assert store.get(current.job_id).status == JobStatus.EXECUTING
    assert store.get(elsewhere.job_id).status == JobStatus.EXECUTING


def test_a_relative_data_dir_is_made_absolute_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"NBJOBS_DATA_DIR": "var"})
    assert settings.store.data_dir == tmp_path / "var" and settings.store.data_dir.is_absolute()
