"""One contract for the user and token stores: in-memory, SQLite, PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine

from nbjobs.errors import UserExists
from nbjobs.models.accounts import ORG_ADMIN, ORG_USER, Token, User
from nbjobs.models.portal_stores import TokenStore, UserStore
from nbjobs.store.memory.users import MemoryTokenStore, MemoryUserStore
from nbjobs.store.users import SqlTokenStore, SqlUserStore
from tests.unit.contracts.common import DUPLICATE, assert_implements


@pytest.fixture
def users(engine: Engine | None) -> UserStore:
    return MemoryUserStore() if engine is None else SqlUserStore(engine)


@pytest.fixture
def tokens(engine: Engine | None, users: UserStore) -> TokenStore:
    for name in ("alice", "bob"):  # tokens reference their user (a foreign key in SQL)
        users.add(user(name))
    return MemoryTokenStore() if engine is None else SqlTokenStore(engine)


def user(name: str, **fields) -> User:
    return User(
        name, f"$argon2id$hash-of-{name}", ORG_USER, ("premium:user:createNotebooks",), 10, 20, **fields
    )


def test_implementations_match_the_protocols():
    assert_implements(UserStore, SqlUserStore, MemoryUserStore)
    assert_implements(TokenStore, SqlTokenStore, MemoryTokenStore)


# -- users -------------------------------------------------------------------------------------------


def test_add_then_get_round_trips_every_field(users):
    alice = User(
        "alice",
        "$argon2id$v=19$m=1024,t=1,p=1$abc",
        ORG_ADMIN,
        ("premium:user:createNotebooks", "premium:user:advancedNotebooks"),
        created=1_716_000_000_123,
        modified=1_716_000_000_456,
        full_name="Alice Liddell",
        email="alice@example.com",
        disabled=True,
    )
    users.add(alice)
    assert users.get("alice") == alice
    assert users.get("nobody") is None
    users.add(User("viewer", "h", ORG_USER, (), 1, 1))
    assert users.get("viewer").privileges == ()


def test_get_compares_names_case_insensitively(users):
    users.add(user("alice"))
    assert users.get("ALICE").username == "alice"
    assert users.get("Alice") == users.get("alice")


def test_a_taken_name_is_refused_in_any_case_and_the_first_user_kept(users):
    users.add(user("alice", email="first@example.com"))
    for name in ("alice", "ALICE"):
        with pytest.raises(UserExists):
            users.add(user(name, email="second@example.com"))
    assert users.count() == 1
    assert users.get("alice").email == "first@example.com"


def test_list_is_by_name_and_count_counts(users):
    assert users.list() == [] and users.count() == 0
    for name in ("carol", "alice", "bob"):
        users.add(user(name))
    assert [u.username for u in users.list()] == ["alice", "bob", "carol"]
    assert users.list()[0] == user("alice")
    assert users.count() == 3


def test_save_replaces_every_stored_field(users):
    users.add(user("alice"))
    changed = User(
        "alice",
        "$argon2id$new",
        ORG_ADMIN,
        (),
        created=11,
        modified=99,
        full_name="A. L.",
        email="a@example.com",
        disabled=True,
    )
    users.save(changed)
    assert users.get("alice") == changed
    users.save(dataclasses.replace(changed, disabled=False, privileges=("p:1", "p:2")))
    assert users.get("alice").disabled is False and users.get("alice").privileges == ("p:1", "p:2")


def test_save_never_adds_a_user_and_matches_the_stored_name_exactly(users):
    users.save(user("nobody"))
    assert users.get("nobody") is None and users.count() == 0
    users.add(user("alice"))
    users.save(user("ALICE", email="x@example.com"))
    assert users.count() == 1 and users.get("alice") == user("alice")


# -- tokens ------------------------------------------------------------------------------------------


def test_token_add_then_get_round_trips_every_field(tokens):
    issued = Token("a" * 64, "alice", 100, 200, revoked=True, client="referer:https://example.com")
    tokens.add(issued)
    tokens.add(Token("b" * 64, "bob", 300, 400))
    assert tokens.get("a" * 64) == issued
    assert tokens.get("b" * 64) == Token("b" * 64, "bob", 300, 400, revoked=False, client="")
    assert tokens.get("c" * 64) is None


def test_a_token_hash_is_recorded_once(tokens):
    tokens.add(Token("a" * 64, "alice", 100, 200))
    with pytest.raises(DUPLICATE):
        tokens.add(Token("a" * 64, "bob", 300, 400))
    assert tokens.get("a" * 64) == Token("a" * 64, "alice", 100, 200)


def test_revoke_marks_one_token_and_answers_whether_it_exists(tokens):
    tokens.add(Token("a" * 64, "alice", 1, 1000))
    tokens.add(Token("b" * 64, "alice", 1, 1000))
    assert tokens.revoke("a" * 64) is True
    assert tokens.get("a" * 64).revoked is True and tokens.get("b" * 64).revoked is False
    assert tokens.revoke("a" * 64) is True  # already revoked: still a known token
    assert tokens.get("a" * 64) == Token("a" * 64, "alice", 1, 1000, revoked=True)
    assert tokens.revoke("c" * 64) is False


def test_revoke_user_counts_only_the_tokens_it_revoked(tokens):
    tokens.add(Token("a" * 64, "alice", 1, 1000))
    tokens.add(Token("b" * 64, "alice", 1, 1000))
    tokens.add(Token("c" * 64, "alice", 1, 1000, revoked=True))
    tokens.add(Token("d" * 64, "bob", 1, 1000))
    assert tokens.revoke_user("alice") == 2
    assert all(tokens.get(h * 64).revoked for h in "abc")
    assert tokens.get("d" * 64).revoked is False
    assert tokens.revoke_user("alice") == 0
    assert tokens.revoke_user("nobody") == 0


def test_delete_expired_forgets_tokens_that_expired_strictly_before_now(tokens):
    tokens.add(Token("a" * 64, "alice", 1, 100))
    tokens.add(Token("b" * 64, "alice", 1, 100, revoked=True))
    tokens.add(Token("c" * 64, "bob", 1, 200))
    tokens.add(Token("d" * 64, "bob", 1, 300))
    assert tokens.delete_expired(200) == 2
    assert tokens.get("a" * 64) is None and tokens.get("b" * 64) is None
    assert tokens.get("c" * 64) is not None and tokens.get("d" * 64) is not None  # expires == now: kept
    assert tokens.delete_expired(200) == 0
    assert tokens.delete_expired(10_000) == 2
