"""Sign-in lockout: too many failed password checks for one username, or from one client address, in a
window locks further attempts (even correct ones) for a while. On the injected clock; per process."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from nbjobs.clock import Clock
from nbjobs.errors import TooManyLogons

MAX_KEYS = 100_000  # above this many tracked names and addresses, idle entries are dropped


@dataclass
class _Entry:
    failures: deque[int] = field(default_factory=deque)  # epoch ms of recent failures, oldest first
    in_flight: int = 0  # attempts admitted and not yet settled
    locked_until: int = 0


@dataclass(frozen=True)
class Attempt:
    """One admitted password check; settle it with ``LoginLimiter.failed`` or ``succeeded``."""

    user_key: str
    address_key: str


class LoginLimiter:
    """Counts failed sign-ins per username and per client address in a sliding window.

    ``max_failures`` failures for one username (``max_failures_per_address`` from one address) within
    ``window_seconds`` lock that name (address) for ``lockout_seconds``. A locked attempt is refused
    before the password is checked, so the right password does not open an active lock, and attempts
    during a lock do not extend it. Admission counts attempts still being checked, so concurrent guesses
    cannot overshoot the limit. A success clears its username's failures, not its address's (one valid
    account must not reset an address that is guessing others). A limit of 0 turns that key off.

    Per process: each server process keeps its own counters, so N processes allow up to N times the
    failures, and a restart forgets them.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        max_failures: int = 0,
        max_failures_per_address: int = 0,
        window_seconds: float = 900.0,
        lockout_seconds: float = 900.0,
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.max_failures_per_address = max_failures_per_address
        self.window_ms = int(window_seconds * 1000)
        self.lockout_ms = int(lockout_seconds * 1000)
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _limit(self, key: str) -> int:
        return self.max_failures if key.startswith("user:") else self.max_failures_per_address

    def _keys(self, username: str, address: str) -> list[str]:
        keys = []
        if self.max_failures > 0:
            keys.append("user:" + username.strip().lower())
        if self.max_failures_per_address > 0 and address:
            keys.append("addr:" + address)
        return keys

    def admit(self, username: str, address: str = "") -> Attempt:
        """Admit one password check, or raise TooManyLogons while the name or the address is locked."""
        now = self.clock()
        keys = self._keys(username, address)
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    continue
                self._prune(entry, now)
                if entry.locked_until > now or len(entry.failures) + entry.in_flight >= self._limit(key):
                    raise TooManyLogons()
            if len(self._entries) > MAX_KEYS:
                self._sweep(now)
            for key in keys:
                self._entries.setdefault(key, _Entry()).in_flight += 1
        user_key = next((k for k in keys if k.startswith("user:")), "")
        address_key = next((k for k in keys if k.startswith("addr:")), "")
        return Attempt(user_key, address_key)

    def failed(self, attempt: Attempt) -> None:
        """The password check failed: count it; a key reaching its limit is locked from now."""
        now = self.clock()
        with self._lock:
            for key in (attempt.user_key, attempt.address_key):
                entry = self._settle(key)
                if entry is None:
                    continue
                entry.failures.append(now)
                self._prune(entry, now)
                if len(entry.failures) >= self._limit(key):
                    entry.locked_until = now + self.lockout_ms
                    entry.failures.clear()

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: forget the username's failures."""
        with self._lock:
            entry = self._settle(attempt.user_key)
            if entry is not None:
                entry.failures.clear()
            self._settle(attempt.address_key)

    def release(self, attempt: Attempt) -> None:
        """The check ended without a verdict (an error): count nothing."""
        with self._lock:
            self._settle(attempt.user_key)
            self._settle(attempt.address_key)

    def locked(self, username: str = "", address: str = "") -> bool:
        """Whether an attempt for this name or from this address would be refused now."""
        now = self.clock()
        with self._lock:
            for key in self._keys(username, address):
                entry = self._entries.get(key)
                if entry is not None:
                    self._prune(entry, now)
                    if entry.locked_until > now or len(entry.failures) >= self._limit(key):
                        return True
        return False

    def _settle(self, key: str) -> _Entry | None:
        entry = self._entries.get(key) if key else None
        if entry is not None and entry.in_flight > 0:
            entry.in_flight -= 1
        return entry

    def _prune(self, entry: _Entry, now: int) -> None:
        while entry.failures and entry.failures[0] <= now - self.window_ms:
            entry.failures.popleft()

    def _sweep(self, now: int) -> None:
        for key, entry in list(self._entries.items()):
            self._prune(entry, now)
            if not entry.failures and not entry.in_flight and entry.locked_until <= now:
                del self._entries[key]
