"""Where a notification may go: the server-side request forgery guard for webhook URLs.

A URL's host is resolved and every address checked: loopback, private (RFC 1918, unique-local),
link-local (and so cloud metadata at 169.254.169.254), multicast, reserved and unspecified addresses are
refused, IPv4 and IPv6 (an IPv4-mapped IPv6 address is judged as its IPv4), unless the host name or a
network containing the address is on the admin's allow-list. The sender connects to the address it
checked (pinned), so a DNS answer that changes between check and connect cannot reach a refused one.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from nbjobs.errors import InvalidNotificationRule, NotificationTargetRefused

_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class AllowList:
    """Hosts (exact, lower-case) and networks a notification may reach although they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: list[str] | tuple[str, ...]) -> AllowList:
        """From entries such as ``127.0.0.1``, ``10.0.0.0/8``, ``::1``, ``hooks.internal``."""
        hosts: set[str] = set()
        networks = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not _HOST_NAME.fullmatch(entry) or len(entry) > 253:
                    raise InvalidNotificationRule(
                        f"allow-list entry {raw!r} is neither an address, a network (CIDR) nor a host name"
                    ) from None
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def entries(self) -> list[str]:
        return sorted(self.hosts) + [str(n) for n in self.networks]

    def union(self, other: AllowList) -> AllowList:
        return AllowList(self.hosts | other.hosts, self.networks + other.networks)

    def permits(self, host: str, address: IPAddress) -> bool:
        return host.lower() in self.hosts or any(address in n for n in self.networks)


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: where to connect (``address``, pinned) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str  # path and query
    address: str


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL; InvalidNotificationRule when it is not one."""
    if len(url) > 2000:
        raise InvalidNotificationRule("a notification URL may have at most 2000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidNotificationRule(f"notification URL {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidNotificationRule(f"notification URL {url!r} must start with https:// or http://")
    if not parts.hostname:
        raise InvalidNotificationRule(f"notification URL {url!r} has no host")
    if parts.username or parts.password:
        raise InvalidNotificationRule("a notification URL may not carry credentials; use the rule's secret")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80), path


def check_url(url: str, allow: AllowList, resolve: Resolver = system_resolver) -> Target:
    """The URL resolved and checked; NotificationTargetRefused when any address it resolves to is not
    public and not allow-listed (all must pass: a name with one public and one private address could be
    made to reach the private one)."""
    scheme, host, port, path = split_url(url)
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolve(host, port)]
        except (OSError, UnicodeError) as exc:
            raise InvalidNotificationRule(
                f"the host of notification URL {url!r} does not resolve: {exc}"
            ) from None
    if not addresses:
        raise InvalidNotificationRule(f"the host of notification URL {url!r} does not resolve")
    for address in addresses:
        if not is_public(address) and not allow.permits(host, address):
            raise NotificationTargetRefused(
                f"notification URL {url!r} points at {address}, a loopback, private or reserved address; "
                "an administrator may allow it (notifications/settings, allowList)"
            )
    return Target(scheme, host, port, path, str(addresses[0]))
