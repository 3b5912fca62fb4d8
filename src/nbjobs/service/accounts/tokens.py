"""Access tokens: issued for a user, stored only as a hash, expiring and revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from nbjobs.clock import Clock
from nbjobs.errors import InvalidToken
from nbjobs.models.accounts import Token, User
from nbjobs.models.portal_stores import TokenStore, UserStore

MINUTE_MS = 60_000


@dataclass(frozen=True)
class IssuedToken:
    """The token text (shown once, to its holder) and when it expires (epoch ms)."""

    token: str
    expires: int
    username: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenService:
    def __init__(
        self,
        tokens: TokenStore,
        users: UserStore,
        clock: Clock,
        *,
        default_minutes: int = 60,
        max_minutes: int = 14 * 24 * 60,
    ) -> None:
        self.tokens = tokens
        self.users = users
        self.clock = clock
        self.default_minutes = default_minutes
        self.max_minutes = max_minutes

    def issue(self, user: User, minutes: int | None = None, *, client: str = "") -> IssuedToken:
        """A new token for ``user``, valid ``minutes`` (default, capped by the server maximum)."""
        minutes = self.default_minutes if not minutes or minutes <= 0 else min(minutes, self.max_minutes)
        text = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + minutes * MINUTE_MS
        self.tokens.add(Token(token_hash(text), user.username, now, expires, False, client[:255]))
        return IssuedToken(text, expires, user.username)

    def authenticate(self, token: str) -> User:
        """The enabled user holding this valid token, else InvalidToken (498)."""
        record = self.tokens.get(token_hash(token)) if token else None
        if record is None or record.revoked:
            raise InvalidToken("Invalid token.")
        if record.expires <= self.clock():
            raise InvalidToken("Token Expired.")
        user = self.users.get(record.username)
        if user is None or user.disabled:
            raise InvalidToken("Invalid token.")
        return user

    def revoke(self, token: str) -> bool:
        return self.tokens.revoke(token_hash(token))

    def revoke_user(self, username: str) -> int:
        return self.tokens.revoke_user(username)

    def purge_expired(self) -> int:
        return self.tokens.delete_expired(self.clock())
