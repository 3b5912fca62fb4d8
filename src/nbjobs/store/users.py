"""Users and their access tokens: records, the store protocols and the SQL implementation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbjobs.errors import UserExists
from nbjobs.models.accounts import Token, User
from nbjobs.store.tables import tokens, users


def _user_from_row(row: Any) -> User:
    m = row._mapping
    return User(
        username=m["username"],
        password_hash=m["password_hash"],
        role=m["role"],
        privileges=tuple(m["privileges"] or ()),
        created=m["created"],
        modified=m["modified"],
        full_name=m["full_name"],
        email=m["email"],
        disabled=bool(m["disabled"]),
    )


def _user_row(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "password_hash": user.password_hash,
        "role": user.role,
        "privileges": list(user.privileges),
        "created": user.created,
        "modified": user.modified,
        "full_name": user.full_name,
        "email": user.email,
        "disabled": user.disabled,
    }


class SqlUserStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, user: User) -> None:
        if self.get(user.username) is not None:
            raise UserExists(f"User '{user.username}' already exists.")
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(users).values(**_user_row(user)))
        except IntegrityError as exc:
            raise UserExists(f"User '{user.username}' already exists.") from exc

    def get(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
            if row is None:
                row = conn.execute(
                    select(users).where(func.lower(users.c.username) == username.lower())
                ).first()
        return _user_from_row(row) if row else None

    def list(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_user_from_row(r) for r in conn.execute(select(users).order_by(users.c.username))]

    def save(self, user: User) -> None:
        row = _user_row(user)
        del row["username"]
        with self.engine.begin() as conn:
            conn.execute(update(users).where(users.c.username == user.username).values(**row))

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


class SqlTokenStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, token: Token) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(tokens).values(
                    token_hash=token.token_hash,
                    username=token.username,
                    created=token.created,
                    expires=token.expires,
                    revoked=token.revoked,
                    client=token.client,
                )
            )

    def get(self, token_hash: str) -> Token | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens).where(tokens.c.token_hash == token_hash)).first()
        if row is None:
            return None
        m = row._mapping
        return Token(
            m["token_hash"], m["username"], m["created"], m["expires"], bool(m["revoked"]), m["client"]
        )

    def revoke(self, token_hash: str) -> bool:
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    update(tokens).where(tokens.c.token_hash == token_hash).values(revoked=True)
                ).rowcount
                == 1
            )

    def revoke_user(self, username: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                update(tokens)
                .where(tokens.c.username == username, tokens.c.revoked.is_(False))
                .values(revoked=True)
            ).rowcount

    def delete_expired(self, now: int) -> int:
        with self.engine.begin() as conn:
            return conn.execute(delete(tokens).where(tokens.c.expires < now)).rowcount
