from nbjobs.models.jobs import (
    ENDED,
    TRANSITIONS,
    JobStatus,
    can_transition,
    is_job_id,
    new_job_id,
    sources_of,
)


def test_job_ids_are_j_plus_32_lowercase_base36():
    ids = {new_job_id() for _ in range(200)}
    assert len(ids) == 200
    for job_id in ids:
        assert is_job_id(job_id)
        assert job_id[0] == "j" and len(job_id) == 33
        assert job_id[1:].isalnum() and job_id == job_id.lower()


def test_is_job_id_rejects_other_shapes():
    for bad in ["", "j", "x" + "a" * 32, "j" + "A" * 32, "j" + "a" * 31, "j" + "-" * 32]:
        assert not is_job_id(bad)


def test_wire_statuses_are_exactly_the_arcgis_words():
    assert [str(s) for s in JobStatus] == [
        "SUBMITTED",
        "EXECUTING",
        "CANCELLING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ]


def test_ended_statuses_are_final():
    for status in ENDED:
        assert TRANSITIONS[status] == frozenset()
        assert status.ended


def test_no_way_back_to_submitted_except_the_worker_lost_retry():
    assert sources_of(JobStatus.SUBMITTED) == {JobStatus.EXECUTING}
    assert not can_transition(JobStatus.CANCELLING, JobStatus.EXECUTING)
    assert not can_transition(JobStatus.COMPLETED, JobStatus.FAILED)


def test_every_non_ended_status_can_end():
    for status in set(JobStatus) - ENDED:
        assert TRANSITIONS[status] & ENDED
