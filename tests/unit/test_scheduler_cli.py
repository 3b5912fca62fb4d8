"""``nbjobs tasks list|show|runs`` over a data directory."""

from __future__ import annotations

import json

from argon2 import PasswordHasher
from click.testing import CliRunner

from nbjobs.cli import main
from nbjobs.clock import ManualClock
from nbjobs.roots.server import Server
from nbjobs.service.automation.tasks import TaskSpec
from nbjobs.service.content.items import ItemFields
from nbjobs.settings import load_settings
from tests.conftest import notebook_bytes


def test_tasks_list_show_runs(tmp_path):
    clock = ManualClock(1_716_000_000_000)
    nb = Server.from_settings(load_settings({}, data_dir=tmp_path, workers=0), clock=clock)
    nb.prepare()
    nb.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    alice = nb.users.add("alice", "password-alice")
    item = nb.items.add(alice.principal(), "alice", notebook_bytes("trivial.ipynb"), type="Notebook",
                        fields=ItemFields())  # fmt: skip
    spec = TaskSpec(type="ExecuteNotebook", item_id=item.item_id, minute="*/1", title="minutely")
    task = nb.tasks.create(alice, "alice", spec)
    clock.advance(60_000)
    nb.scheduler.tick()
    nb.store.close()
    runner = CliRunner()
    listed = runner.invoke(main, ["tasks", "list", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert task.task_id in listed.output and "minutely" in listed.output and "active" in listed.output
    shown = runner.invoke(main, ["tasks", "show", task.task_id, "--data-dir", str(tmp_path)])
    assert json.loads(shown.output)["occurrences"] == 1
    runs = runner.invoke(main, ["tasks", "runs", task.task_id, "--data-dir", str(tmp_path)])
    assert runs.exit_code == 0 and "executing" in runs.output and " j" in runs.output
    missing = runner.invoke(main, ["tasks", "show", "nope", "--data-dir", str(tmp_path)])
    assert missing.exit_code != 0 and "does not exist" in missing.output
