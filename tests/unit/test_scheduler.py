"""Tasks and the scheduler over in-memory stores, with a frozen clock that tests move by hand."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from argon2 import PasswordHasher

from nbjobs.clock import ManualClock
from nbjobs.errors import (
    InvalidParameters,
    InvalidRequest,
    ItemNotFound,
    PermissionDenied,
    TaskLimitReached,
    TaskNotFound,
    UnsupportedTaskType,
)
from nbjobs.models.accounts import ORG_ADMIN
from nbjobs.models.automation import RunStatus, TaskState
from nbjobs.models.items import Item
from nbjobs.models.jobs import Failure, FailureReason, JobStatus, JobUpdate
from nbjobs.service.accounts.users import UserService
from nbjobs.service.automation.scheduler import NotebookLauncher, Scheduler
from nbjobs.service.automation.tasks import TaskService, TaskSpec, next_occasions
from nbjobs.service.content.items import ItemFields, ItemService
from nbjobs.service.jobs.execute_notebook import NotebookExecution
from nbjobs.service.jobs.service import JobService
from nbjobs.settings import load_settings
from nbjobs.store.memory.items import MemoryItemStore
from nbjobs.store.memory.jobs import MemoryJobStore
from nbjobs.store.memory.tasks import MemoryTaskStore
from nbjobs.store.memory.users import MemoryUserStore
from tests.conftest import notebook_bytes

MINUTE = 60_000
HOUR = 60 * MINUTE


def at(text: str, tz: str = "UTC") -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


@dataclass
class World:
    clock: ManualClock
    users: UserService
    items: ItemService
    item_store: MemoryItemStore
    jobs: JobService
    tasks: TaskService
    task_store: MemoryTaskStore
    scheduler: Scheduler

    def user(self, name: str = "alice"):
        return self.users.get(name)

    def notebook(self, owner: str = "alice") -> str:
        item = self.items.add(
            self.user(owner).principal(),
            owner,
            notebook_bytes("parameters.ipynb"),
            type="Notebook",
            fields=ItemFields(title="nb"),
        )
        return item.item_id

    def create(self, owner: str = "alice", **fields) -> str:
        fields.setdefault("item_id", self.notebook(owner))
        fields.setdefault("type", "ExecuteNotebook")
        return self.tasks.create(self.user(owner), owner, TaskSpec(**fields)).task_id

    def tick_at(self, when: int):
        self.clock.now = when
        return self.scheduler.tick(when)

    def end_job(self, job_id: str, ok: bool = True) -> None:
        store = self.jobs.store
        now = self.clock()
        if ok:
            store.claim(job_id, 1, "w", now, HOUR)
            store.transition(job_id, JobStatus.COMPLETED, now)
        else:
            failure = Failure(FailureReason.CELL_ERROR, "boom")
            store.transition(job_id, JobStatus.FAILED, now, update=JobUpdate(failure=failure))

    def runs(self, task_id: str):
        return list(reversed(self.task_store.runs(task_id, 1000)))  # oldest first


@pytest.fixture
def world() -> World:
    clock = ManualClock(at("2024-05-17T07:00:00"))  # a Friday
    users = UserService(
        MemoryUserStore(), clock, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    users.add("alice", "password-alice")
    users.add("bob", "password-bob")
    users.add("admin", "password-admin", role=ORG_ADMIN)
    users.add("viewer", "password-viewer", privileges=("premium:publisher:createNotebooks",))
    item_store = MemoryItemStore()
    items = ItemService(item_store, clock, max_bytes=1 << 20)
    jobs = JobService(MemoryJobStore(), load_settings({}), clock)
    notebooks = NotebookExecution(jobs, items, item_store, clock)
    task_store = MemoryTaskStore()
    tasks = TaskService(task_store, items, users, clock, max_active=20)
    scheduler = Scheduler(task_store, jobs.store, NotebookLauncher(users, notebooks), clock)
    return World(clock, users, items, item_store, jobs, tasks, task_store, scheduler)


def test_weekdays_at_six_fire_executenotebook_jobs_carrying_task_and_run(world: World):
    task_id = world.create(
        minute="0", hour="6", day_of_month="?", day_of_week="MON-FRI",
        parameters={"notebookParameters": '{"name": "Ada"}', "saveInjectedParameters": True},
    )  # fmt: skip
    task = world.task_store.get(task_id)
    assert task.next_fire == at("2024-05-20T06:00:00") and task.state == TaskState.ACTIVE
    assert world.tick_at(at("2024-05-18T06:00:00")).fired == 0  # Saturday: nothing
    report = world.tick_at(at("2024-05-20T06:00:02"))
    assert report.fired == 1
    (run,) = world.runs(task_id)
    assert run.status == RunStatus.EXECUTING and run.scheduled_for == at("2024-05-20T06:00:00")
    job = world.jobs.store.get(run.job_id)
    assert job.type == "executeNotebook" and job.username == "alice"
    assert (job.inputs.task_id, job.inputs.run_id) == (task_id, run.run_id)
    assert job.inputs.notebook_parameters == {"name": "Ada"} and job.inputs.save_injected_parameters
    assert world.tick_at(at("2024-05-20T06:00:30")).fired == 0  # the same occasion never fires twice
    world.end_job(run.job_id)
    world.tick_at(at("2024-05-20T06:01:00"))
    assert world.task_store.get_run(run.run_id).status == RunStatus.SUCCEEDED
    assert "completed" in world.task_store.get_run(run.run_id).result
    assert world.task_store.get(task_id).next_fire == at("2024-05-21T06:00:00")
    assert world.task_store.get(task_id).last_start == at("2024-05-20T06:00:02")


def test_max_occurrences_completes_the_task(world: World):
    task_id = world.create(minute="*/1", max_occurrences=2)
    for minute in (1, 2, 3, 4):
        world.tick_at(at("2024-05-17T07:00:00") + minute * MINUTE)
        for run in world.runs(task_id):
            if run.status == RunStatus.EXECUTING:
                world.end_job(run.job_id)
    task = world.task_store.get(task_id)
    assert task.state == TaskState.COMPLETED and task.next_fire == 0 and task.occurrences == 2
    assert [r.status for r in world.runs(task_id)] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]


def test_end_date_completes_the_task(world: World):
    task_id = world.create(minute="0", hour="*", end_date=at("2024-05-17T09:30:00"))
    for hour in (8, 9, 10, 11):
        world.tick_at(at(f"2024-05-17T{hour:02d}:00:00"))
    assert len(world.runs(task_id)) == 2
    assert world.task_store.get(task_id).state == TaskState.COMPLETED


def test_start_date_delays_the_first_occasion(world: World):
    task_id = world.create(minute="0", hour="*", start_date=at("2024-06-01T12:00:00"))
    assert world.task_store.get(task_id).next_fire == at("2024-06-01T12:00:00")


def test_five_consecutive_failures_stop_the_task_and_a_success_resets_the_count(world: World):
    task_id = world.create(minute="*/1")
    outcomes = [False, False, True, False, False, False, False, False]
    for i, ok in enumerate(outcomes, start=1):
        world.tick_at(at("2024-05-17T07:00:00") + i * MINUTE)
        (run,) = [r for r in world.runs(task_id) if r.status == RunStatus.EXECUTING]
        world.end_job(run.job_id, ok=ok)
        world.tick_at(at("2024-05-17T07:00:30") + i * MINUTE)
    task = world.task_store.get(task_id)
    assert task.state == TaskState.FAILED and task.consecutive_failures == 5 and task.next_fire == 0
    assert [r.status for r in world.runs(task_id)].count(RunStatus.FAILED) == 7
    assert "boom" in world.runs(task_id)[-1].result
    assert world.tick_at(at("2024-05-17T08:00:00")).fired == 0
    # enabling again starts a fresh streak, from now
    enabled = world.tasks.set_active(world.user(), "alice", task_id, True)
    assert enabled.state == TaskState.ACTIVE and enabled.consecutive_failures == 0


def test_a_run_that_cannot_start_fails_and_counts(world: World):
    task_id = world.create(minute="*/1")
    item_id = world.task_store.get(task_id).item_id
    world.items.delete(world.user().principal(), item_id)
    world.tick_at(at("2024-05-17T07:01:00"))
    (run,) = world.runs(task_id)
    assert run.status == RunStatus.FAILED and "could not start" in run.result and "Item" in run.result
    assert world.task_store.get(task_id).consecutive_failures == 1


def test_overlap_skip_records_skipped_runs(world: World):
    task_id = world.create(minute="*/1", max_occurrences=3)
    for minute in (1, 2, 3):
        world.tick_at(at("2024-05-17T07:00:00") + minute * MINUTE)
    statuses = [r.status for r in world.runs(task_id)]
    assert statuses == [RunStatus.EXECUTING, RunStatus.SKIPPED, RunStatus.SKIPPED]
    assert "had not finished" in world.runs(task_id)[1].result
    assert world.task_store.get(task_id).occurrences == 1  # skipped occasions do not count


def test_overlap_queue_keeps_one_waiting_run(world: World):
    task_id = world.create(minute="*/1", overlap="queue")
    for minute in (1, 2, 3):
        world.tick_at(at("2024-05-17T07:00:00") + minute * MINUTE)
    first, queued, skipped = world.runs(task_id)
    assert (first.status, queued.status, skipped.status) == (
        RunStatus.EXECUTING, RunStatus.SCHEDULED, RunStatus.SKIPPED,
    )  # fmt: skip
    world.end_job(first.job_id)
    report = world.tick_at(at("2024-05-17T07:03:10"))
    assert report.started_from_queue == 1
    started = world.task_store.get_run(queued.run_id)
    assert started.status == RunStatus.EXECUTING and started.job_id
    assert world.jobs.store.get(started.job_id).inputs.run_id == queued.run_id


def test_misfire_after_downtime_fires_once_then_resumes_from_now(world: World):
    task_id = world.create(minute="0", hour="*")
    assert world.task_store.get(task_id).next_fire == at("2024-05-17T08:00:00")
    report = world.tick_at(at("2024-05-17T11:20:00"))  # down from 07:00 to 11:20: three occasions missed
    assert report.fired == 1
    (run,) = world.runs(task_id)
    assert run.scheduled_for == at("2024-05-17T08:00:00") and "Fired late" in run.result
    assert world.task_store.get(task_id).next_fire == at("2024-05-17T12:00:00")
    assert world.tick_at(at("2024-05-17T11:21:00")).fired == 0


def test_disable_stops_firing_and_enable_resumes_from_now_without_a_burst(world: World):
    task_id = world.create(minute="0", hour="*")
    paused = world.tasks.set_active(world.user(), "alice", task_id, False)
    assert paused.state == TaskState.PAUSED and paused.next_fire == 0
    world.tick_at(at("2024-05-17T10:00:00"))
    assert world.runs(task_id) == []
    world.clock.now = at("2024-05-17T10:30:00")
    enabled = world.tasks.set_active(world.user(), "alice", task_id, True)
    assert enabled.next_fire == at("2024-05-17T11:00:00")


def test_update_reschedules_from_the_next_occasion(world: World):
    task_id = world.create(minute="0", hour="6")
    updated = world.tasks.update(world.user(), "alice", task_id, TaskSpec(hour="9", title="later"))
    assert updated.next_fire == at("2024-05-17T09:00:00") and updated.title == "later"


def test_dst_spring_forward_and_fall_back(world: World):
    berlin = "Europe/Berlin"
    world.clock.now = at("2024-03-30T23:50:00", berlin)
    daily = world.create(minute="30", hour="2", time_zone=berlin)
    hourly = world.create(minute="0", hour="*", time_zone=berlin)
    assert world.task_store.get(daily).next_fire == at("2024-03-31T03:00:00", berlin)  # 02:30 does not exist
    # tick every five minutes through the spring-forward night
    for t in range(at("2024-03-31T00:00:00", berlin), at("2024-03-31T05:01:00", berlin), 5 * MINUTE):
        world.tick_at(t)
        for task_id in (daily, hourly):
            for run in world.runs(task_id):
                if run.status == RunStatus.EXECUTING:
                    world.end_job(run.job_id)
    assert [r.scheduled_for for r in world.runs(daily)] == [at("2024-03-31T01:00:00")]  # 03:00 CEST
    # the clock jumps 02:00 -> 03:00: occasions at 00:00, 01:00, 03:00, 04:00, 05:00 local (no 02:00)
    hours = [
        datetime.fromtimestamp(r.scheduled_for / 1000, ZoneInfo(berlin)).hour for r in world.runs(hourly)
    ]
    assert hours == [0, 1, 3, 4, 5]
    # fall back: 02:00-02:59 happens twice; the hourly task fires at 02:00 once
    world.clock.now = at("2024-10-27T00:30:00", berlin)
    fall = world.create(minute="0", hour="*", time_zone=berlin)
    start, end = at("2024-10-26T22:30:00"), at("2024-10-27T03:05:00")  # UTC: 00:30 CEST to 04:05 CET
    for t in range(start, end, 5 * MINUTE):
        world.tick_at(t)
        for run in world.runs(fall):
            if run.status == RunStatus.EXECUTING:
                world.end_job(run.job_id)
    fired = [r.scheduled_for for r in world.runs(fall)]
    # 01:00 CEST, 02:00 CEST, 03:00 CET, 04:00 CET: four occasions in four and a half real hours
    assert fired == [at("2024-10-26T23:00:00"), at("2024-10-27T00:00:00"), at("2024-10-27T02:00:00"),
                     at("2024-10-27T03:00:00")]  # fmt: skip


def test_two_schedulers_fire_each_occasion_once(world: World):
    other = Scheduler(world.task_store, world.jobs.store, world.scheduler.launcher, world.clock)
    task_ids = [world.create(minute="*/1") for _ in range(10)]
    barrier = threading.Barrier(2)
    now = at("2024-05-17T07:01:00")

    def run(s: Scheduler) -> None:
        barrier.wait()
        s.tick(now)

    threads = [threading.Thread(target=run, args=(s,)) for s in (world.scheduler, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(world.runs(t)) == 1 for t in task_ids)
    assert world.jobs.store.count() == 10


# -- bad input ----------------------------------------------------------------------------------------


def test_malformed_cron_fields_store_nothing(world: World):
    with pytest.raises(InvalidRequest, match="Invalid cron field hour '25'"):
        world.create(minute="0", hour="25")
    with pytest.raises(InvalidRequest, match="Unknown time zone"):
        world.create(time_zone="Nowhere/Land")
    assert world.task_store.list() == []


def test_start_date_after_end_date(world: World):
    with pytest.raises(InvalidRequest, match="startDate .* is after endDate"):
        world.create(start_date=at("2024-07-01T00:00:00"), end_date=at("2024-06-01T00:00:00"))
    with pytest.raises(InvalidRequest, match="endDate .* is in the past"):
        world.create(end_date=at("2024-01-01T00:00:00"))


def test_item_the_user_does_not_own(world: World):
    bobs = world.notebook("bob")
    with pytest.raises(ItemNotFound):
        world.create(item_id=bobs)
    admins_view = world.notebook("admin")
    with pytest.raises(ItemNotFound):
        world.create(item_id=admins_view)
    with pytest.raises(ItemNotFound):  # an admin's task is still its own: it runs the admin's notebooks
        world.create("admin", item_id=bobs)


def test_task_for_a_non_notebook_item(world: World):
    world.item_store.add(Item("f" * 32, "alice", "map", "Web Map", 1, 1), b"{}")
    with pytest.raises(InvalidRequest, match="ExecuteNotebook tasks need a Notebook item"):
        world.create(item_id="f" * 32)


def test_unsupported_task_type(world: World):
    with pytest.raises(UnsupportedTaskType, match="Unsupported task type 'ExecuteReport'"):
        world.create(type="ExecuteReport")
    with pytest.raises(UnsupportedTaskType, match="Unsupported task type 'Nope'"):
        world.create(type="Nope")


def test_twenty_one_active_tasks(world: World):
    item_id = world.notebook()
    ids = [world.create(item_id=item_id) for _ in range(20)]
    assert world.tasks.active_available("alice") == 0
    with pytest.raises(TaskLimitReached, match=r"maximum number of active tasks \(20\)"):
        world.create(item_id=item_id)
    paused = world.create(item_id=item_id, is_active=False)  # inactive tasks do not count
    with pytest.raises(TaskLimitReached):
        world.tasks.set_active(world.user(), "alice", paused, True)
    world.tasks.set_active(world.user(), "alice", ids[0], False)
    world.tasks.set_active(world.user(), "alice", paused, True)
    assert world.tasks.active_available("alice") == 0
    assert world.tasks.active_available("bob") == 20


def test_schedule_privilege_is_required(world: World):
    item_id = world.notebook("viewer")
    with pytest.raises(PermissionDenied) as info:
        world.create("viewer", item_id=item_id)
    assert "premium:publisher:scheduleNotebooks" in " ".join(info.value.details)


def test_bad_notebook_parameters(world: World):
    with pytest.raises(InvalidParameters):
        world.create(parameters={"notebookParameters": "[1, 2]"})
    with pytest.raises(InvalidRequest, match="Unknown task parameters bogus"):
        world.create(parameters={"bogus": 1})


def test_others_tasks_are_invisible(world: World):
    task_id = world.create()
    with pytest.raises(PermissionDenied):
        world.tasks.get(world.user("bob"), "alice", task_id)
    with pytest.raises(TaskNotFound):
        world.tasks.get(world.user("bob"), "bob", task_id)
    assert world.tasks.get(world.user("admin"), "alice", task_id).owner == "alice"


def test_run_update_and_delete(world: World):
    task_id = world.create(minute="*/1")
    world.tick_at(at("2024-05-17T07:01:00"))
    (run,) = world.runs(task_id)
    alice = world.user()
    changed = world.tasks.update_run(alice, "alice", task_id, run.run_id, status="skipped", result="by hand")
    assert (changed.status, changed.result) == (RunStatus.SKIPPED, "by hand")
    with pytest.raises(InvalidRequest, match="Invalid run status 'done'"):
        world.tasks.update_run(alice, "alice", task_id, run.run_id, status="done", result=None)
    world.tasks.delete_run(alice, "alice", task_id, run.run_id)
    assert world.runs(task_id) == []


def test_next_occasions_are_the_ones_the_scheduler_fires(world: World):
    task_id = world.create(
        minute="30", hour="6", day_of_month="?", day_of_week="MON,THU", time_zone="Europe/Berlin",
        start_date=at("2024-05-23T00:00:00"), max_occurrences=4,
    )  # fmt: skip
    task = world.task_store.get(task_id)
    times = next_occasions(task, world.clock(), 5)
    berlin = [at(d, "Europe/Berlin") for d in ("2024-05-23T06:30", "2024-05-27T06:30", "2024-05-30T06:30")]
    assert times == [*berlin, at("2024-06-03T06:30", "Europe/Berlin")]  # start date kept; four at most
    for when in times:
        world.tick_at(when)
        for run in world.runs(task_id):
            if run.status == RunStatus.EXECUTING:
                world.end_job(run.job_id)
    assert [r.scheduled_for for r in world.runs(task_id)] == times
    assert next_occasions(world.task_store.get(task_id), world.clock()) == []  # completed


def test_preview_is_what_create_and_update_would_store(world: World):
    spec = TaskSpec(minute="0", hour="*/6", time_zone="Asia/Kolkata")
    times = world.tasks.preview(spec)
    assert len(times) == 5 and all(b - a == 6 * HOUR for a, b in zip(times, times[1:], strict=False))
    task_id = world.create(minute="0", hour="*/6", time_zone="Asia/Kolkata", is_active=False)
    task = world.task_store.get(task_id)
    later = at("2024-07-01T00:00:00")
    assert world.tasks.preview(TaskSpec(), task) == times  # a paused task: as if resumed now
    assert world.tasks.preview(TaskSpec(start_date=later), task)[0] == at("2024-07-01T00:30:00")
    world.tasks.set_active(world.user(), "alice", task_id, True)
    assert world.task_store.get(task_id).next_fire == times[0]
    with pytest.raises(InvalidRequest, match="Invalid cron field hour '24'"):
        world.tasks.preview(TaskSpec(hour="24"))
    with pytest.raises(InvalidRequest, match="is after endDate"):
        world.tasks.preview(TaskSpec(start_date=later, end_date=later - 1))


def test_find_and_visible_by_owner_or_admin(world: World):
    mine = world.create()
    theirs = world.create("bob")
    assert world.tasks.find(world.user(), mine).task_id == mine
    with pytest.raises(TaskNotFound):
        world.tasks.find(world.user(), theirs)
    with pytest.raises(TaskNotFound):
        world.tasks.find(world.user(), "0" * 32)
    assert world.tasks.find(world.user("admin"), theirs).owner == "bob"
    assert [t.task_id for t in world.tasks.visible(world.user())] == [mine]
    assert {t.task_id for t in world.tasks.visible(world.user("admin"))} == {mine, theirs}
