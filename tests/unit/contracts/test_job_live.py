"""Live progress in every JobStore (memory, SQLite, PostgreSQL): the live row written with progress and
with the final transition, fenced like them; the change feed's query; the job list's filters."""

from __future__ import annotations

from dataclasses import replace

from nbjobs.models.jobs import JobFilter, JobStatus, JobType, JobUpdate
from nbjobs.models.live import LiveRecorder
from nbjobs.models.runtimes import Runtime
from tests.unit.contracts import test_jobs
from tests.unit.contracts.test_jobs import LEASE, make_job

store = test_jobs.store  # the same fixture: memory, SQLite, PostgreSQL


def _running(store, created=1000, **kw):
    job = make_job(created, **kw)
    store.create(job, b"{}")
    claimed = store.claim(job.job_id, 1, "w/1", created + 1, LEASE)
    assert claimed is not None
    return claimed


def _live(attempt=1):
    rec = LiveRecorder(attempt)
    rec.begin(1, 2000, code_cells=3)
    rec.output(1, "stdout", "hello\n")
    return rec


def test_progress_writes_the_live_view_in_the_same_transaction(store):
    job = _running(store)
    assert store.live(job.job_id) is None
    rec = _live()
    assert store.set_progress(job.job_id, 1, 2100, 33, "Executing cell 1 of 3", rec.snapshot())
    live = store.live(job.job_id)
    assert live is not None and live.attempt == 1 and live.code_cells == 3
    assert [(t.cell_index, t.name, t.text, t.end) for t in live.output] == [(1, "stdout", "hello\n", 6)]
    assert store.get(job.job_id).revision == 2100  # the change feed sees it
    rec.output(1, "stdout", "world\n")
    store.set_progress(job.job_id, 1, 2200, 33, "Executing cell 1 of 3", rec.snapshot())
    assert store.live(job.job_id).output[0].text == "hello\nworld\n"  # replaced, not a second row


def test_a_fenced_out_attempt_writes_no_live_view(store):
    job = _running(store)
    assert not store.set_progress(job.job_id, 2, 2100, 10, "x", _live(2).snapshot())
    assert store.live(job.job_id) is None
    store.transition(job.job_id, JobStatus.COMPLETED, 2200, attempt=1)
    assert not store.set_progress(job.job_id, 1, 2300, 10, "x", _live().snapshot())
    assert store.live(job.job_id) is None


def test_the_final_transition_writes_the_last_live_view(store):
    job = _running(store)
    rec = _live()
    rec.end(1, ok=False, now=2500)
    ended = store.transition(
        job.job_id, JobStatus.FAILED, 2600, attempt=1, update=JobUpdate(live=rec.snapshot())
    )
    assert ended is not None
    live = store.live(job.job_id)
    assert [(c.index, c.state, c.duration_ms) for c in live.cells] == [(1, "failed", 500)]
    # a transition the CAS refuses writes nothing
    other = _live()
    other.output(1, "stdout", "late\n")
    assert (
        store.transition(job.job_id, JobStatus.COMPLETED, 2700, update=JobUpdate(live=other.snapshot()))
        is None
    )
    assert "late" not in store.live(job.job_id).output[0].text


def test_deleting_an_ended_job_deletes_its_live_view(store):
    job = _running(store)
    store.set_progress(job.job_id, 1, 2100, 1, "x", _live().snapshot())
    store.transition(job.job_id, JobStatus.COMPLETED, 2200, attempt=1)
    assert store.delete_ended() == 1
    assert store.live(job.job_id) is None


def test_changes_are_the_jobs_written_after_a_revision_oldest_first(store):
    a = make_job(1000)
    b = make_job(1001, username="bob")
    store.create(a, b"{}")
    store.create(b, b"{}")
    store.claim(a.job_id, 1, "w/1", 1500, LEASE)
    store.set_progress(a.job_id, 1, 1600, 50, "half", None)
    changes = store.changes(1000)
    assert [(c.job_id, c.revision) for c in changes] == [(b.job_id, 1001), (a.job_id, 1600)]
    assert changes[1].status == "EXECUTING" and changes[1].progress_percent == 50
    assert changes[1].type == "executeNotebook" and changes[1].username == "alice"
    assert [c.job_id for c in store.changes(1000, username="bob")] == [b.job_id]
    assert store.changes(1600) == []
    assert len(store.changes(0, limit=1)) == 1


def test_list_and_count_filter_by_type_runtime_and_creation_time(store):
    other = Runtime("rt2", "Advanced", "1.0", "python3")
    jobs = [
        make_job(1000),
        replace(make_job(2000), type=JobType.EXECUTE_NOTEBOOK_AS_WEB_TOOL),
        replace(make_job(3000), runtime=other),
    ]
    for job in jobs:
        store.create(job, b"{}")

    def ids(where):
        found = [j.job_id for j in store.list(where=where)]
        assert store.count(where=where) == len(found)
        return found

    assert ids(JobFilter(types=frozenset({JobType.EXECUTE_NOTEBOOK_AS_WEB_TOOL}))) == [jobs[1].job_id]
    assert ids(JobFilter(runtime_name="advanced")) == [jobs[2].job_id]  # any case
    assert ids(JobFilter(created_from=2000)) == [jobs[1].job_id, jobs[2].job_id]
    assert ids(JobFilter(created_from=1000, created_to=3000)) == [jobs[0].job_id, jobs[1].job_id]
    assert ids(JobFilter(created_to=1000)) == []
