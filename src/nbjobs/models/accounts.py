"""Accounts: users, their roles, tokens, and the principal a request acts as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who is asking: the service layer decides visibility from this."""

    username: str
    is_admin: bool = False


ORG_ADMIN = "org_admin"


ORG_USER = "org_user"


ROLES = (ORG_ADMIN, ORG_USER)


@dataclass(frozen=True)
class User:
    """A built-in account. ``password_hash`` is an argon2 hash; the password is never kept."""

    username: str
    password_hash: str
    role: str
    privileges: tuple[str, ...]
    created: int
    modified: int
    full_name: str = ""
    email: str = ""
    disabled: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == ORG_ADMIN

    def principal(self) -> Principal:
        return Principal(self.username, is_admin=self.is_admin)


@dataclass(frozen=True)
class Token:
    """An issued token, known only by the sha256 of its text."""

    token_hash: str
    username: str
    created: int
    expires: int
    revoked: bool = False
    client: str = ""
