"""Notification rules as a client sends them: a JSON list, checked at the edge with clear errors.

[{"events": ["failed", "timedOut"], "email": "ops@example.com", "attachNotebook": true},
 {"events": ["succeeded"], "url": "https://hooks.example.com/nb", "secret": "…at least 16…"},
 {"events": ["runningLonger"], "afterMinutes": 30, "email": "me@example.com"}]
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from nbjobs.errors import InvalidNotificationRule
from nbjobs.models.notifications import Channel, NotifyEvent, Rule
from nbjobs.service.notifications.mail import parse_addresses
from nbjobs.service.notifications.targets import AllowList, Resolver, check_url, system_resolver

MAX_RULES = 10
MIN_SECRET = 16
MAX_AFTER_MINUTES = 7 * 24 * 60
_KEYS = {"id", "events", "email", "url", "secret", "attachNotebook", "afterMinutes"}


def parse_rules(
    raw: str | list[Any] | None,
    allow: AllowList,
    *,
    resolve: Resolver = system_resolver,
    field: str = "notifications",
) -> tuple[Rule, ...]:
    """The rules in ``raw`` (JSON text or a decoded list); empty for None / "" / "[]"."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except RecursionError:
            raise InvalidNotificationRule(f"{field}: JSON nested too deeply") from None
        except ValueError as exc:
            raise InvalidNotificationRule(f"{field} is not JSON: {exc}") from None
    if not isinstance(raw, list):
        raise InvalidNotificationRule(f"{field} must be a JSON list of rules")
    if len(raw) > MAX_RULES:
        raise InvalidNotificationRule(f"{field} may hold at most {MAX_RULES} rules")
    rules = []
    for index, item in enumerate(raw):
        rules.append(_rule(item, f"{field}[{index}]", allow, resolve))
    ids = [r.rule_id for r in rules]
    if len(set(ids)) != len(ids):
        raise InvalidNotificationRule(f"{field}: two rules have the same id")
    return tuple(rules)


def _rule(item: Any, where: str, allow: AllowList, resolve: Resolver) -> Rule:
    if not isinstance(item, dict):
        raise InvalidNotificationRule(f"{where} must be an object")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise InvalidNotificationRule(f"{where} has unknown keys {unknown}; known: {sorted(_KEYS)}")
    events_raw = item.get("events")
    if not isinstance(events_raw, list) or not events_raw:
        raise InvalidNotificationRule(
            f"{where}.events must be a non-empty list of {[str(e) for e in NotifyEvent]}"
        )
    events = []
    for e in events_raw:
        try:
            events.append(NotifyEvent(e))
        except ValueError:
            raise InvalidNotificationRule(
                f"{where}.events: unknown event {e!r}; known: {[str(x) for x in NotifyEvent]}"
            ) from None
    rule_id = item.get("id") or secrets.token_hex(4)
    if (
        not isinstance(rule_id, str)
        or not rule_id.isascii()
        or not rule_id.replace("-", "").isalnum()
        or len(rule_id) > 32
    ):
        raise InvalidNotificationRule(f"{where}.id must be up to 32 letters, digits or '-'")
    after = item.get("afterMinutes", 0)
    if NotifyEvent.RUNNING_LONGER in events:
        if isinstance(after, bool) or not isinstance(after, int) or not 1 <= after <= MAX_AFTER_MINUTES:
            raise InvalidNotificationRule(
                f"{where}.afterMinutes must be a whole number of minutes from 1 to {MAX_AFTER_MINUTES} "
                "for the runningLonger event"
            )
    elif after:
        raise InvalidNotificationRule(f"{where}.afterMinutes is only for the runningLonger event")
    attach = item.get("attachNotebook", False)
    if not isinstance(attach, bool):
        raise InvalidNotificationRule(f"{where}.attachNotebook must be true or false")
    email, url = item.get("email"), item.get("url")
    if (email is None) == (url is None):
        raise InvalidNotificationRule(f"{where} needs exactly one of 'email' or 'url'")
    if email is not None:
        if not isinstance(email, str):
            raise InvalidNotificationRule(f"{where}.email must be a string of comma-separated addresses")
        if "secret" in item:
            raise InvalidNotificationRule(f"{where}.secret is only for 'url' rules")
        return Rule(
            rule_id,
            tuple(events),
            Channel.EMAIL,
            ",".join(parse_addresses(email)),
            attach_notebook=attach,
            after_minutes=after,
        )
    if not isinstance(url, str):
        raise InvalidNotificationRule(f"{where}.url must be a string")
    if attach:
        raise InvalidNotificationRule(f"{where}.attachNotebook is only for 'email' rules")
    secret = item.get("secret")
    if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= 256:
        raise InvalidNotificationRule(
            f"{where}.secret is required for 'url' rules: the HMAC-SHA256 key, {MIN_SECRET} to 256 characters"
        )
    check_url(url, allow, resolve)
    return Rule(rule_id, tuple(events), Channel.WEBHOOK, url, secret=secret, after_minutes=after)
