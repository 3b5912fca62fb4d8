"""In-memory user and token stores: the fakes unit tests use in place of the SQL ones."""

from __future__ import annotations

import dataclasses

from nbjobs.errors import UserExists
from nbjobs.models.accounts import Token, User
from nbjobs.store.memory.shared import refuse_taken


class MemoryUserStore:
    def __init__(self) -> None:
        self._users: dict[str, User] = {}

    def add(self, user: User) -> None:
        if self.get(user.username) is not None:
            raise UserExists(f"User '{user.username}' already exists.")
        self._users[user.username] = user

    def get(self, username: str) -> User | None:
        if username in self._users:
            return self._users[username]
        return next((u for u in self._users.values() if u.username.lower() == username.lower()), None)

    def list(self) -> list[User]:
        return sorted(self._users.values(), key=lambda u: u.username)

    def save(self, user: User) -> None:
        if user.username in self._users:  # like SQL: the stored name matched exactly; never an insert
            self._users[user.username] = user

    def count(self) -> int:
        return len(self._users)


class MemoryTokenStore:
    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}

    def add(self, token: Token) -> None:
        refuse_taken(token.token_hash, self._tokens)
        self._tokens[token.token_hash] = token

    def get(self, token_hash: str) -> Token | None:
        return self._tokens.get(token_hash)

    def revoke(self, token_hash: str) -> bool:
        token = self._tokens.get(token_hash)
        if token is None:
            return False
        self._tokens[token_hash] = dataclasses.replace(token, revoked=True)
        return True

    def revoke_user(self, username: str) -> int:
        mine = [t for t in self._tokens.values() if t.username == username and not t.revoked]
        for token in mine:
            self._tokens[token.token_hash] = dataclasses.replace(token, revoked=True)
        return len(mine)

    def delete_expired(self, now: int) -> int:
        old = [h for h, t in self._tokens.items() if t.expires < now]
        for h in old:
            del self._tokens[h]
        return len(old)
