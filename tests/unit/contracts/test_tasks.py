"""One contract for the task stores (tasks and their runs): in-memory, SQLite, PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sqlalchemy import Engine

from nbjobs.models.automation import Firing, RunStatus, Task, TaskRun, TaskState
from nbjobs.models.portal_stores import TaskStore
from nbjobs.store.memory.tasks import MemoryTaskStore
from nbjobs.store.tasks import SqlTaskStore
from tests.unit.contracts.common import DUPLICATE, assert_implements

MINUTE = 60_000


@pytest.fixture
def store(engine: Engine | None) -> TaskStore:
    return MemoryTaskStore() if engine is None else SqlTaskStore(engine)


def task(task_id: str, owner: str = "alice", **fields) -> Task:
    """An active task created at 1000, with ``fields`` changed."""
    values = {
        "task_id": task_id,
        "owner": owner,
        "item_id": "i" * 32,
        "type": "ExecuteNotebook",
        "title": f"task {task_id[:4]}",
        "minute": "*/5",
        "hour": "*",
        "day_of_month": "*",
        "month": "*",
        "day_of_week": "*",
        "time_zone": "UTC",
        "parameters": {},
        "start_date": 0,
        "end_date": 0,
        "max_occurrences": 0,
        "overlap": "skip",
        "state": TaskState.ACTIVE,
        "created": 1000,
        "updated": 1000,
        **fields,
    }
    return Task(**values)


def run(run_id: str, task_id: str, scheduled_for: int, status: RunStatus = RunStatus.SCHEDULED) -> TaskRun:
    return TaskRun(
        run_id, task_id, scheduled_for, status, created=scheduled_for + 1, updated=scheduled_for + 1
    )


def fire(store: TaskStore, task_id: str, occasion: int, run_id: str, **firing) -> bool:
    """Fire the occasion ``occasion`` (the task's expected next fire time) with a run, by default counted."""
    values = {"next_fire": occasion + MINUTE, "state": TaskState.ACTIVE, "counted": True, **firing}
    return store.fire(task_id, occasion, Firing(run=run(run_id, task_id, occasion), **values))


def test_implementations_match_the_protocol():
    assert_implements(TaskStore, SqlTaskStore, MemoryTaskStore)


# -- tasks -------------------------------------------------------------------------------------------


def test_add_then_get_round_trips_every_field(store):
    full = Task(
        task_id="t" * 32,
        owner="alice",
        item_id="i" * 32,
        type="ExecuteNotebook",
        title="Nightly report",
        minute="0,30",
        hour="2-4",
        day_of_month="1-15/2",
        month="*/3",
        day_of_week="MON-FRI",
        time_zone="Europe/Paris",
        parameters={"x": 1, "nested": {"list": [1, "two", None, True], "f": 1.5}},
        start_date=1_716_000_000_000,
        end_date=1_800_000_000_000,
        max_occurrences=12,
        overlap="queue",
        state=TaskState.PAUSED,
        created=1_716_000_000_001,
        updated=1_716_000_000_002,
        occurrences=3,
        consecutive_failures=2,
        next_fire=1_716_000_060_000,
        last_start=1_716_000_000_003,
    )
    store.add(full)
    assert store.get("t" * 32) == full
    assert store.get("u" * 32) is None


def test_a_task_id_is_taken_once(store):
    store.add(task("t" * 32))
    with pytest.raises(DUPLICATE):
        store.add(task("t" * 32, "bob"))
    assert store.get("t" * 32).owner == "alice" and len(store.list()) == 1


def test_save_replaces_the_definition_and_state_but_not_the_counters(store):
    store.add(task("t" * 32, occurrences=4, last_start=500, consecutive_failures=1, next_fire=9000))
    edited = dataclasses.replace(
        task("t" * 32, created=1),  # a different creation time is ignored too
        owner="bob",
        item_id="j" * 32,
        title="renamed",
        minute="1",
        hour="2",
        day_of_month="3",
        month="4",
        day_of_week="5",
        time_zone="Asia/Tokyo",
        parameters={"p": [1]},
        start_date=10,
        end_date=20,
        max_occurrences=5,
        overlap="queue",
        state=TaskState.PAUSED,
        next_fire=7000,
        consecutive_failures=0,
        updated=3000,
        occurrences=99,
        last_start=99,
    )
    store.save(edited)
    assert store.get("t" * 32) == dataclasses.replace(edited, created=1000, occurrences=4, last_start=500)


def test_save_never_adds_a_task(store):
    store.save(task("t" * 32))
    assert store.get("t" * 32) is None and store.list() == []


def test_delete_removes_the_task_and_only_its_runs(store):
    store.add(task("a" * 32, next_fire=MINUTE))
    store.add(task("b" * 32, next_fire=MINUTE))
    assert fire(store, "a" * 32, MINUTE, "r1" + "0" * 30)
    assert fire(store, "b" * 32, MINUTE, "r2" + "0" * 30)
    assert store.delete("a" * 32) is True
    assert store.get("a" * 32) is None and store.runs("a" * 32) == []
    assert store.get_run("r1" + "0" * 30) is None
    assert [r.run_id for r in store.open_runs()] == ["r2" + "0" * 30]
    assert store.delete("a" * 32) is False
    assert [t.task_id for t in store.list()] == ["b" * 32]


def test_list_is_oldest_first_and_filters_by_owner_item_and_state(store):
    store.add(task("c" * 32, "alice", created=300))
    store.add(task("a" * 32, "bob", created=100, item_id="x" * 32))
    store.add(task("d" * 32, "alice", created=200, state=TaskState.PAUSED, item_id="x" * 32))
    store.add(task("b" * 32, "alice", created=300, state=TaskState.FAILED))
    ids = lambda tasks: [t.task_id[0] for t in tasks]  # noqa: E731
    assert ids(store.list()) == ["a", "d", "b", "c"]  # ties by id
    assert ids(store.list("alice")) == ["d", "b", "c"]
    assert ids(store.list(item_id="x" * 32)) == ["a", "d"]
    assert ids(store.list(states=frozenset({TaskState.ACTIVE}))) == ["a", "c"]
    assert ids(store.list(states=frozenset({TaskState.PAUSED, TaskState.FAILED}))) == ["d", "b"]
    assert ids(store.list("alice", item_id="x" * 32, states=frozenset({TaskState.PAUSED}))) == ["d"]
    assert store.list(states=frozenset()) == []
    assert store.list("carol") == []


def test_count_active_counts_one_owner_s_active_tasks(store):
    store.add(task("a" * 32, "alice"))
    store.add(task("b" * 32, "alice"))
    store.add(task("c" * 32, "alice", state=TaskState.PAUSED))
    store.add(task("d" * 32, "alice", state=TaskState.COMPLETED))
    store.add(task("e" * 32, "bob"))
    assert (store.count_active("alice"), store.count_active("bob"), store.count_active("carol")) == (2, 1, 0)


def test_due_returns_active_tasks_whose_time_has_come_soonest_first(store):
    store.add(task("a" * 32, next_fire=300))
    store.add(task("b" * 32, next_fire=100))
    store.add(task("c" * 32, next_fire=300))
    store.add(task("d" * 32, next_fire=301))  # not yet
    store.add(task("e" * 32, next_fire=0))  # never
    store.add(task("f" * 32, next_fire=50, state=TaskState.PAUSED))
    store.add(task("g" * 32, next_fire=50, state=TaskState.COMPLETED))
    assert [t.task_id[0] for t in store.due(300)] == ["b", "a", "c"]  # next_fire == now is due
    assert [t.task_id[0] for t in store.due(300, limit=2)] == ["b", "a"]
    assert store.due(99) == []
    assert store.due(300)[0] == task("b" * 32, next_fire=100)


# -- firing ------------------------------------------------------------------------------------------


def test_fire_advances_the_task_and_records_the_run(store):
    store.add(task("t" * 32, next_fire=MINUTE, occurrences=2, last_start=5))
    occasion = run("r" * 32, "t" * 32, MINUTE)
    firing = Firing(next_fire=2 * MINUTE, state=TaskState.ACTIVE, counted=True, run=occasion)
    assert store.fire("t" * 32, MINUTE, firing) is True
    after = store.get("t" * 32)
    assert (after.next_fire, after.state, after.occurrences) == (2 * MINUTE, TaskState.ACTIVE, 3)
    assert after.last_start == occasion.created and after.updated == occasion.created
    assert store.get_run("r" * 32) == occasion
    assert store.runs("t" * 32) == [occasion]


def test_an_occasion_that_does_not_count_leaves_the_counters(store):
    store.add(task("t" * 32, next_fire=MINUTE, occurrences=2, last_start=5))
    skipped = run("r" * 32, "t" * 32, MINUTE, RunStatus.SKIPPED)
    firing = Firing(next_fire=2 * MINUTE, state=TaskState.ACTIVE, counted=False, run=skipped)
    assert store.fire("t" * 32, MINUTE, firing)
    after = store.get("t" * 32)
    assert (after.next_fire, after.occurrences, after.last_start) == (2 * MINUTE, 2, 5)
    assert after.updated == skipped.created
    assert store.get_run("r" * 32).status == RunStatus.SKIPPED


def test_the_last_occasion_can_end_the_task(store):
    store.add(task("t" * 32, next_fire=MINUTE, max_occurrences=1))
    assert fire(store, "t" * 32, MINUTE, "r" * 32, next_fire=0, state=TaskState.COMPLETED)
    after = store.get("t" * 32)
    assert (after.state, after.next_fire, after.occurrences) == (TaskState.COMPLETED, 0, 1)
    assert store.due(10 * MINUTE) == []
    assert not fire(store, "t" * 32, 0, "s" * 32)  # no longer active: nothing fires


def test_fire_is_a_compare_and_set_on_the_expected_time_and_state(store):
    store.add(task("t" * 32, next_fire=MINUTE))
    store.add(task("p" * 32, next_fire=MINUTE, state=TaskState.PAUSED))
    assert not fire(store, "t" * 32, MINUTE - 1, "r1" + "0" * 30)  # another scheduler moved it on
    assert not fire(store, "p" * 32, MINUTE, "r2" + "0" * 30)
    assert not fire(store, "u" * 32, MINUTE, "r3" + "0" * 30)  # no such task
    assert store.get("t" * 32) == task("t" * 32, next_fire=MINUTE)
    assert store.get("p" * 32) == task("p" * 32, next_fire=MINUTE, state=TaskState.PAUSED)
    assert store.open_runs() == [] and store.get_run("r1" + "0" * 30) is None
    assert fire(store, "t" * 32, MINUTE, "r1" + "0" * 30)
    assert not fire(store, "t" * 32, MINUTE, "r4" + "0" * 30)  # the occasion fired already


def test_an_occasion_gets_one_run_and_a_refused_firing_changes_nothing(store):
    store.add(task("t" * 32, next_fire=MINUTE))
    assert fire(store, "t" * 32, MINUTE, "r1" + "0" * 30)
    # The task is put back on the fired occasion (as a stale save could), the occasion is refused:
    store.save(dataclasses.replace(store.get("t" * 32), next_fire=MINUTE))
    before = store.get("t" * 32)
    assert not fire(store, "t" * 32, MINUTE, "r2" + "0" * 30)
    assert store.get("t" * 32) == before  # the advance was rolled back with the refused run
    assert [r.run_id for r in store.runs("t" * 32)] == ["r1" + "0" * 30]
    # and a run id is taken once, whatever the occasion:
    store.save(dataclasses.replace(before, next_fire=2 * MINUTE))
    assert not fire(store, "t" * 32, 2 * MINUTE, "r1" + "0" * 30)
    assert store.get("t" * 32).next_fire == 2 * MINUTE
    assert store.get_run("r1" + "0" * 30).scheduled_for == MINUTE


def test_concurrent_schedulers_fire_an_occasion_once(store):
    store.add(task("t" * 32, next_fire=MINUTE))
    won: list[bool] = []
    barrier = threading.Barrier(4)

    def scheduler(n: int) -> None:
        barrier.wait()
        won.append(fire(store, "t" * 32, MINUTE, f"{n}" * 32))

    threads = [threading.Thread(target=scheduler, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False, False, False, True]
    assert len(store.runs("t" * 32)) == 1 and store.get("t" * 32).occurrences == 1


# -- runs --------------------------------------------------------------------------------------------


def _three_runs(store: TaskStore) -> None:
    store.add(task("t" * 32, next_fire=MINUTE))
    store.add(task("u" * 32, next_fire=MINUTE))
    for i, run_id in enumerate(("b", "a", "c"), start=1):
        assert fire(store, "t" * 32, i * MINUTE, run_id * 32)
    assert fire(store, "u" * 32, MINUTE, "z" * 32)


def test_runs_are_newest_occasion_first_of_one_task(store):
    _three_runs(store)
    assert [r.run_id[0] for r in store.runs("t" * 32)] == ["c", "a", "b"]
    assert [r.run_id[0] for r in store.runs("t" * 32, limit=2)] == ["c", "a"]
    assert [r.run_id[0] for r in store.runs("u" * 32)] == ["z"]
    assert store.runs("v" * 32) == []
    assert store.get_run("q" * 32) is None


def test_open_runs_are_the_scheduled_and_executing_ones_oldest_first(store):
    _three_runs(store)
    store.update_run("b" * 32, 10, status=RunStatus.EXECUTING)
    store.finish_run("a" * 32, RunStatus.SUCCEEDED, "done", 11, max_failures=3)
    assert [r.run_id[0] for r in store.open_runs()] == ["b", "z", "c"]  # same occasion: by run id
    assert [r.run_id[0] for r in store.open_runs("t" * 32)] == ["b", "c"]
    assert [r.run_id[0] for r in store.open_runs(limit=1)] == ["b"]
    assert [r.run_id[0] for r in store.open_runs("t" * 32, limit=1)] == ["b"]
    assert store.open_runs("v" * 32) == []


def test_update_run_changes_what_is_given_when_the_status_is_expected(store):
    _three_runs(store)
    before = store.get_run("a" * 32)
    started = store.update_run(
        "a" * 32, 50, status=RunStatus.EXECUTING, job_id="j" * 33, expected=frozenset({RunStatus.SCHEDULED})
    )
    assert started == dataclasses.replace(before, status=RunStatus.EXECUTING, job_id="j" * 33, updated=50)
    assert store.get_run("a" * 32) == started
    refused = store.update_run("a" * 32, 60, result="x", expected=frozenset({RunStatus.SCHEDULED}))
    assert refused is None and store.get_run("a" * 32) == started
    noted = store.update_run("a" * 32, 70, result="waiting for a slot")
    assert noted == dataclasses.replace(started, result="waiting for a slot", updated=70)
    assert store.update_run("a" * 32, 80, result="") == dataclasses.replace(noted, result="", updated=80)
    assert store.update_run("a" * 32, 90) == dataclasses.replace(noted, result="", updated=90)  # only touched
    assert store.update_run("q" * 32, 90, status=RunStatus.FAILED) is None


def test_finish_run_ends_an_open_run_once(store):
    _three_runs(store)
    ended = store.finish_run("a" * 32, RunStatus.SUCCEEDED, "ok", 500, max_failures=3)
    assert (ended.status, ended.result, ended.updated) == (RunStatus.SUCCEEDED, "ok", 500)
    assert store.get_run("a" * 32) == ended
    assert store.finish_run("a" * 32, RunStatus.FAILED, "late", 600, max_failures=3) is None
    assert store.get_run("a" * 32) == ended and store.get("t" * 32).consecutive_failures == 0
    assert store.finish_run("q" * 32, RunStatus.FAILED, "?", 600, max_failures=3) is None


def test_failures_in_a_row_fail_the_task_and_a_success_resets_the_streak(store):
    _three_runs(store)
    store.finish_run("b" * 32, RunStatus.FAILED, "boom", 100, max_failures=2)
    after = store.get("t" * 32)
    assert (after.consecutive_failures, after.state, after.updated) == (1, TaskState.ACTIVE, 100)
    store.finish_run("a" * 32, RunStatus.SUCCEEDED, "ok", 200, max_failures=2)
    assert store.get("t" * 32).consecutive_failures == 0 and store.get("t" * 32).updated == 200
    next_fire = store.get("t" * 32).next_fire
    assert next_fire > 0
    store.finish_run("c" * 32, RunStatus.FAILED, "boom", 300, max_failures=1)
    after = store.get("t" * 32)
    assert (after.consecutive_failures, after.state, after.next_fire) == (1, TaskState.FAILED, 0)
    assert store.get("u" * 32).consecutive_failures == 0  # another task's count is its own


def test_failures_of_a_task_not_active_are_counted_but_do_not_change_its_state(store):
    _three_runs(store)
    paused = dataclasses.replace(store.get("t" * 32), state=TaskState.PAUSED)
    store.save(paused)
    store.finish_run("b" * 32, RunStatus.FAILED, "boom", 100, max_failures=1)
    after = store.get("t" * 32)
    assert (after.state, after.next_fire, after.consecutive_failures) == (
        TaskState.PAUSED,
        paused.next_fire,
        1,
    )


def test_delete_run(store):
    _three_runs(store)
    assert store.delete_run("a" * 32) is True and store.delete_run("a" * 32) is False
    assert store.get_run("a" * 32) is None
    assert [r.run_id[0] for r in store.runs("t" * 32)] == ["c", "b"]
    assert store.get("t" * 32).occurrences == 3  # the task's counters are history, not a count of rows


def test_records_read_back_share_nothing_with_the_caller(store):
    parameters = {"x": [1]}
    store.add(dataclasses.replace(task("t" * 32), parameters=parameters))
    parameters["x"].append("changed by the caller")
    store.get("t" * 32).parameters["x"].append("changed by a reader")
    store.list()[0].parameters["y"] = "added by a reader"
    assert store.get("t" * 32).parameters == {"x": [1]}
