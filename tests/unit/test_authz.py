"""Authorization is decided in the services (``service/authz.py``), whoever calls them: a route, the
CLI (as the operator) or a test."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from nbjobs.clock import ManualClock
from nbjobs.errors import PermissionDenied, UserNotFound
from nbjobs.models.accounts import ORG_ADMIN, ORG_USER, Principal, User
from nbjobs.service import authz
from nbjobs.service.accounts.users import UserService
from nbjobs.service.runtimes.environments import FakeEnvironments
from nbjobs.service.runtimes.fields import RuntimeFields
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.service.system.config import ConfigService
from nbjobs.settings import load_settings
from nbjobs.store.memory.config import MemoryConfigStore
from nbjobs.store.memory.runtimes import MemoryRuntimeStore
from nbjobs.store.memory.users import MemoryUserStore


def user(name: str, role: str = ORG_USER, privileges: tuple[str, ...] | None = None) -> User:
    given = authz.default_privileges(role) if privileges is None else privileges
    return User(name, "", role, given, 0, 0)


ADMIN, ALICE, VIEWER = user("admin", ORG_ADMIN), user("alice"), user("viewer", privileges=())


@pytest.fixture
def runtimes(tmp_path: Path) -> RuntimeService:
    service = RuntimeService(
        MemoryRuntimeStore(),
        ManualClock(),
        kernels=tmp_path / "kernels",
        environments=FakeEnvironments({}),
    )
    service.ensure_default()
    return service


def test_only_administrators_change_runtimes(runtimes: RuntimeService):
    default = runtimes.default().runtime_id
    for attempt in (
        lambda: runtimes.register(ALICE, RuntimeFields(name="Mine", image_id="python3")),
        lambda: runtimes.update(ALICE, default, RuntimeFields(max_cpu=1)),
        lambda: runtimes.unregister(ALICE, default),
        lambda: runtimes.restore(ALICE),
        lambda: runtimes.check(ALICE),
    ):
        with pytest.raises(PermissionDenied, match="Only administrators can change runtimes"):
            attempt()
    spec = runtimes.register(ADMIN, RuntimeFields(name="Second", image_id="python3"))
    assert runtimes.register(authz.OPERATOR, RuntimeFields(name="Third", image_id="python3")).name == "Third"
    assert runtimes.read(ALICE, spec.runtime_id) == spec  # notebook users read them


def test_reading_runtimes_needs_the_notebook_privilege(runtimes: RuntimeService):
    with pytest.raises(PermissionDenied) as denied:
        runtimes.readable(VIEWER)
    assert denied.value.details == [f"Missing privilege {authz.CREATE_NOTEBOOKS}"]
    assert [r.is_default for r in runtimes.readable(ALICE)] == [True]


def test_only_administrators_change_the_configuration(tmp_path: Path):
    config = ConfigService(load_settings({}, data_dir=tmp_path), MemoryConfigStore(), ManualClock())
    with pytest.raises(PermissionDenied, match="Only administrators can change the server configuration"):
        config.update(ALICE, {"maxExecuteNotebookTimeMinutes": 30})
    assert config.update(ADMIN, {"maxExecuteNotebookTimeMinutes": 30})["maxExecuteNotebookTimeMinutes"] == 30


def test_a_user_sees_themselves_and_an_administrator_anyone():
    users = UserService(MemoryUserStore(), ManualClock(), PasswordHasher(time_cost=1, memory_cost=1024))
    for name in ("alice", "bob"):
        users.add(name, "long enough pw", role=ORG_USER)
    alice = users.get("alice")
    assert users.view(alice, "ALICE").username == "alice"  # usernames compare case-insensitively
    assert users.view(ADMIN, "bob").username == "bob"
    with pytest.raises(UserNotFound, match="does not exist or is inaccessible"):
        users.view(alice, "bob")


def test_the_rules():
    admin, alice = Principal("admin", is_admin=True), Principal("alice")
    assert authz.may_see(alice, "alice") and not authz.may_see(alice, "Alice") and authz.may_see(admin, "bob")
    assert authz.may_act_for(alice, "ALICE") and not authz.may_act_for(alice, "bob")
    assert authz.owner_scope(admin) is None and authz.owner_scope(alice) == "alice"
    with pytest.raises(PermissionDenied, match="machines"):
        authz.require_admin(alice, authz.MACHINES)
    authz.require_admin(admin, authz.MACHINES)
    assert authz.OPERATOR.is_admin and authz.OPERATOR.privileges == authz.ADMIN_PRIVILEGES
