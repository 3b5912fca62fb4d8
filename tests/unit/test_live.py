"""The live view's recorder (cells, tails and their bounds) and the change feed's poller."""

from __future__ import annotations

import threading

from nbjobs.models.jobs import JobStatus
from nbjobs.models.live import MAX_CELLS, TAIL_CHARS, TOTAL_TAIL_CHARS, LiveProgress, LiveRecorder
from nbjobs.service.jobs.feed import JobFeed
from nbjobs.store.memory.jobs import MemoryJobStore
from tests.unit.contracts.test_jobs import LEASE, make_job


def test_cells_move_from_executing_to_completed_or_failed_with_their_durations():
    rec = LiveRecorder(1)
    rec.begin(1, 1000, code_cells=3)
    rec.begin(1, 1005)  # the same cell again (a repeated progress event): no second entry
    rec.end(1, True, 1040)
    rec.begin(3, 1050)
    rec.begin(4, 1100)  # no end event for 3 (its event was lost): completed when 4 starts
    rec.stop(1300, failed_cell=4)
    snap = rec.snapshot()
    assert [(c.index, c.state, c.duration_ms) for c in snap.cells] == [
        (1, "completed", 40),
        (3, "completed", 50),
        (4, "failed", 200),
    ]
    assert snap.code_cells == 3
    assert snap.to_wire()["cells"][0] == {"cellIndex": 1, "state": "completed", "durationMs": 40}
    assert LiveProgress.from_store(snap.to_store()) == snap


def test_the_running_cell_shows_its_start_time_and_a_clean_stop_completes_it():
    rec = LiveRecorder(1)
    rec.begin(2, 5000)
    assert rec.snapshot().to_wire()["cells"] == [{"cellIndex": 2, "state": "executing", "startTime": 5000}]
    rec.stop(6000, failed_cell=None)
    assert rec.snapshot().cells[0].state == "completed"


def test_a_tail_keeps_the_newest_characters_and_counts_every_one():
    rec = LiveRecorder(1)
    rec.output(1, "stdout", "a" * TAIL_CHARS)
    rec.output(1, "stdout", "b" * 10, chars=1_000_000)  # the runner dropped most of a flood
    (tail,) = rec.snapshot().output
    assert tail.end == TAIL_CHARS + 1_000_000
    assert len(tail.text) == TAIL_CHARS and tail.text.endswith("b" * 10)


def test_the_job_keeps_at_most_the_total_and_drops_the_least_recently_written_tails_first():
    rec = LiveRecorder(1)
    per = TAIL_CHARS
    cells = TOTAL_TAIL_CHARS // per + 3
    for i in range(cells):
        rec.output(i, "stdout", str(i % 10) * per)
    rec.output(0, "stderr", "late")  # cell 0's stderr is written last: kept
    snap = rec.snapshot()
    assert sum(len(t.text) for t in snap.output) <= TOTAL_TAIL_CHARS
    kept = {(t.cell_index, t.name) for t in snap.output}
    assert (0, "stderr") in kept and (cells - 1, "stdout") in kept and (0, "stdout") not in kept
    assert snap.output_truncated
    assert [t.cell_index for t in snap.output] == sorted(t.cell_index for t in snap.output)


def test_at_most_max_cells_states_are_kept_the_newest():
    rec = LiveRecorder(1)
    for i in range(MAX_CELLS + 5):
        rec.begin(i, i)
    snap = rec.snapshot()
    assert len(snap.cells) == MAX_CELLS and snap.cells[-1].index == MAX_CELLS + 4


def test_changed_says_when_a_write_is_due():
    rec = LiveRecorder(1)
    assert not rec.changed
    rec.output(0, "stdout", "x")
    assert rec.changed
    rec.snapshot()
    assert not rec.changed
    rec.output(0, "stdout", "")
    assert not rec.changed


def _feed(store, now=lambda: 10_000):
    return JobFeed(lambda since, limit: store.changes(since, limit=limit), now, interval=0.01, batch=3)


def test_the_feed_tells_each_change_once_and_again_when_the_revision_moves():
    store = MemoryJobStore()
    feed = _feed(store)
    job = make_job(9_000)
    store.create(job, b"{}")
    assert [c.job_id for c in feed.poll()] == [job.job_id]  # inside the overlap of the first round
    assert feed.poll() == []
    store.claim(job.job_id, 1, "w/1", 9_500, LEASE)
    (change,) = feed.poll()
    assert change.status == "EXECUTING" and change.revision == 9_500
    # a write that commits late with an older revision than one already seen is still told
    late = make_job(9_400)
    store.create(late, b"{}")
    assert [c.job_id for c in feed.poll()] == [late.job_id]


def test_the_feed_pages_through_more_changes_than_a_batch():
    store = MemoryJobStore()
    feed = _feed(store)
    made = [make_job(9_000 + i) for i in range(8)]
    for job in made:
        store.create(job, b"{}")
    assert {c.job_id for c in feed.poll()} == {j.job_id for j in made}


def test_the_feed_polls_only_while_someone_listens_and_stops_on_close():
    store = MemoryJobStore()
    feed = _feed(store)
    got: list[str] = []
    heard = threading.Event()
    sub = feed.subscribe(lambda changes: (got.extend(c.job_id for c in changes), heard.set()))
    job = make_job(9_990)
    store.create(job, b"{}")
    assert heard.wait(5)
    assert got == [job.job_id] and feed.subscribers == 1
    sub.close()
    assert feed.subscribers == 0
    polls = feed.polls
    threading.Event().wait(0.1)
    assert feed.polls <= polls + 1  # at most the round that was under way
    feed.close()
    assert feed.closed
    store.transition(job.job_id, JobStatus.CANCELLED, 9_999)
    assert feed._thread is not None and not feed._thread.is_alive()
