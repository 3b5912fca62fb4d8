"""Built-in users: passwords (argon2), roles and ArcGIS privilege strings."""

from __future__ import annotations

import dataclasses
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from nbjobs.clock import Clock
from nbjobs.errors import InvalidCredentials, InvalidRequest, UserNotFound
from nbjobs.models.accounts import ORG_ADMIN, ORG_USER, ROLES, User
from nbjobs.models.portal_stores import UserStore
from nbjobs.service.accounts.login_limit import LoginLimiter
from nbjobs.service.authz import default_privileges, may_act_for

MIN_PASSWORD_LENGTH = 8
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


class UserService:
    """Account management and password checks. Unknown user and wrong password fail alike."""

    def __init__(
        self,
        store: UserStore,
        clock: Clock,
        hasher: PasswordHasher | None = None,
        *,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self.limiter = limiter or LoginLimiter(clock)  # the default limits nothing

    def add(
        self,
        username: str,
        password: str,
        *,
        role: str = ORG_USER,
        privileges: tuple[str, ...] | None = None,
        full_name: str = "",
        email: str = "",
    ) -> User:
        """Create a user; raises InvalidRequest for a bad name, role or password, UserExists if taken."""
        if not _USERNAME.match(username):
            raise InvalidRequest(f"Invalid username {username!r}: use letters, digits and _ . @ -")
        if role not in ROLES:
            raise InvalidRequest(f"Invalid role {role!r}: use one of {', '.join(ROLES)}")
        now = self.clock()
        user = User(
            username=username,
            password_hash=self._hash(password),
            role=role,
            privileges=tuple(privileges) if privileges is not None else default_privileges(role),
            created=now,
            modified=now,
            full_name=full_name,
            email=email,
        )
        self.store.add(user)
        return user

    def view(self, caller: User, username: str) -> User:
        """The user ``username`` as ``caller`` may see it: themselves, or anyone for an administrator;
        others answer as unknown users."""
        if not may_act_for(caller.principal(), username):
            raise UserNotFound(f"User '{username}' does not exist or is inaccessible.")
        return self.get(username)

    def get(self, username: str) -> User:
        user = self.store.get(username)
        if user is None:
            raise UserNotFound(f"User '{username}' does not exist or is inaccessible.")
        return user

    def list(self) -> list[User]:
        return self.store.list()

    def set_password(self, username: str, password: str) -> User:
        user = dataclasses.replace(
            self.get(username), password_hash=self._hash(password), modified=self.clock()
        )
        self.store.save(user)
        return user

    def set_disabled(self, username: str, disabled: bool = True) -> User:
        user = dataclasses.replace(self.get(username), disabled=disabled, modified=self.clock())
        self.store.save(user)
        return user

    def authenticate(self, username: str, password: str, *, address: str = "") -> User:
        """The enabled user with this password, else InvalidCredentials; TooManyLogons while the name or
        the client ``address`` is locked out by failed attempts (checked before the password)."""
        attempt = self.limiter.admit(username or "", address)
        try:
            user = self._check_password(username, password)
        except InvalidCredentials:
            self.limiter.failed(attempt)
            raise
        except BaseException:  # e.g. the store is down: not a failed guess
            self.limiter.release(attempt)
            raise
        self.limiter.succeeded(attempt)
        if user.disabled:
            raise InvalidCredentials("Unable to generate token.", details=["This account has been disabled."])
        if self.hasher.check_needs_rehash(user.password_hash):
            self.store.save(dataclasses.replace(user, password_hash=self._hash(password)))
        return user

    def _check_password(self, username: str, password: str) -> User:
        user = self.store.get(username or "")
        if user is None:
            self._hash("timing-equaliser")  # an unknown name costs as much as a wrong password
            raise _bad_login()
        try:
            self.hasher.verify(user.password_hash, password or "")
        except (VerificationError, InvalidHashError):
            raise _bad_login() from None
        return user

    def ensure_admin(self, username: str, password: str = "") -> str | None:
        """On an empty user table, create the administrator; returns its password when generated here."""
        if self.store.count() > 0:
            return None
        generated = None if password else secrets.token_urlsafe(12)
        self.add(username, password or generated or "", role=ORG_ADMIN)
        return generated

    def _hash(self, password: str) -> str:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InvalidRequest(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
        return self.hasher.hash(password)


def _bad_login() -> InvalidCredentials:
    return InvalidCredentials("Unable to generate token.", details=["Invalid username or password."])
