"""UserService and TokenService over the in-memory stores."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from nbjobs.clock import ManualClock
from nbjobs.errors import InvalidCredentials, InvalidRequest, InvalidToken, PermissionDenied, UserExists
from nbjobs.models.accounts import ORG_ADMIN
from nbjobs.service.accounts.tokens import MINUTE_MS, TokenService
from nbjobs.service.accounts.users import UserService
from nbjobs.service.authz import CREATE_NOTEBOOKS, require_privilege
from nbjobs.store.memory.users import MemoryTokenStore, MemoryUserStore

PW = "a long password"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def users(clock: ManualClock) -> UserService:
    return UserService(MemoryUserStore(), clock, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def tokens(users: UserService, clock: ManualClock) -> TokenService:
    return TokenService(MemoryTokenStore(), users.store, clock, default_minutes=60, max_minutes=120)


def test_add_and_authenticate(users):
    user = users.add("alice", PW)
    assert user.password_hash != PW and user.password_hash.startswith("$argon2")
    assert CREATE_NOTEBOOKS in user.privileges and not user.is_admin
    assert users.authenticate("alice", PW).username == "alice"
    assert users.authenticate("ALICE", PW).username == "alice"


def test_bad_logins_answer_alike(users):
    users.add("alice", PW)
    with pytest.raises(InvalidCredentials) as wrong:
        users.authenticate("alice", "nope nope")
    with pytest.raises(InvalidCredentials) as unknown:
        users.authenticate("nobody", PW)
    assert (wrong.value.message, wrong.value.details) == (unknown.value.message, unknown.value.details)


def test_rejects_bad_names_roles_passwords_and_duplicates(users):
    for kwargs in ({"username": "../x"}, {"role": "king"}, {"password": "short"}):
        args = {"username": "bob", "password": PW, **kwargs}
        with pytest.raises(InvalidRequest):
            users.add(args.pop("username"), args.pop("password"), **args)
    users.add("bob", PW)
    with pytest.raises(UserExists):
        users.add("bob", PW)


def test_disabled_user_cannot_log_in(users):
    users.add("alice", PW)
    users.set_disabled("alice")
    with pytest.raises(InvalidCredentials):
        users.authenticate("alice", PW)


def test_ensure_admin_once(users):
    generated = users.ensure_admin("admin")
    assert generated and users.authenticate("admin", generated).role == ORG_ADMIN
    assert users.ensure_admin("admin") is None


def test_privileges(users):
    viewer = users.add("viewer", PW, privileges=())
    with pytest.raises(PermissionDenied):
        require_privilege(viewer, CREATE_NOTEBOOKS)
    require_privilege(users.add("boss", PW, role=ORG_ADMIN, privileges=()), CREATE_NOTEBOOKS)


def test_tokens_expire_are_capped_and_revocable(users, tokens, clock):
    alice = users.add("alice", PW)
    issued = tokens.issue(alice, 10_000)
    assert issued.expires == clock() + 120 * MINUTE_MS
    assert tokens.authenticate(issued.token).username == "alice"
    clock.advance(121 * MINUTE_MS)
    with pytest.raises(InvalidToken, match="Expired"):
        tokens.authenticate(issued.token)
    fresh = tokens.issue(alice)
    assert tokens.revoke(fresh.token)
    with pytest.raises(InvalidToken):
        tokens.authenticate(fresh.token)
    with pytest.raises(InvalidToken):
        tokens.authenticate("forged")


def test_tokens_of_disabled_users_stop_working(users, tokens):
    alice = users.add("alice", PW)
    issued = tokens.issue(alice)
    users.set_disabled("alice")
    with pytest.raises(InvalidToken):
        tokens.authenticate(issued.token)
