"""Which server a client command talks to: ``--url``/``--token`` (env ``NBJOBS_URL``/``NBJOBS_TOKEN``)
over the stored login, and the certificate options every command shares."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from nbjobs.cli.client import config
from nbjobs.cli.client.api import Api, candidate_bases, verify_of
from nbjobs.cli.client.errors import ClientError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Target:
    """The server options as given on the command line (empty: take the stored login's)."""

    url: str = ""
    token: str = ""
    ca_cert: str = ""
    insecure: bool = False

    def login(self) -> config.Login:
        """The effective login: the stored one, overridden by what was given."""
        stored = config.load(config.login_path())
        url = self.url or (stored.url if stored else "")
        if not url:
            raise ClientError("not signed in: run 'nbjobs login URL' (or give --url and --token)")
        same = stored is not None and _same_server(stored.url, url)
        token = self.token or (stored.token if stored and same else "")
        if not token:
            raise ClientError(f"not signed in to {url}: run 'nbjobs login {url}' (or give --token)")
        return config.Login(
            url=candidate_bases(url)[0] if self.url else url,
            token=token,
            username=stored.username if stored and same and not self.token else "",
            ca_cert=self.ca_cert or (stored.ca_cert if stored and same else ""),
            insecure=self.insecure or (stored.insecure if stored and same and not self.ca_cert else False),
        )

    def open(self) -> tuple[Api, config.Login]:
        """A session with the effective server, and the login it was opened with."""
        login = self.login()
        return Api(login.url, login.token, verify=verify_of(login.ca_cert, login.insecure)), login


def _same_server(a: str, b: str) -> bool:
    return candidate_bases(a)[0] == candidate_bases(b)[0]


def certificate_options(command: F) -> F:
    """``--ca-cert`` and ``--insecure``, passed on as ``ca_cert`` and ``insecure``."""
    command = click.option(
        "--insecure",
        is_flag=True,
        help="Do not verify the server's certificate at all (a self-signed server, on a trusted network).",
    )(command)
    return click.option(
        "--ca-cert",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Trust the server's certificate from this PEM file (e.g. its data dir's nbjobs-cert.pem).",
    )(command)


def server_options(command: F) -> F:
    """``--url``, ``--token``, ``--ca-cert``, ``--insecure``, handed to the command as ``target``."""

    @functools.wraps(command)
    def wrapper(
        *args: Any, url: str | None, token: str | None, ca_cert: Path | None, insecure: bool, **kwargs: Any
    ) -> Any:
        target = Target(url or "", token or "", str(ca_cert.resolve()) if ca_cert else "", insecure)
        return command(*args, target=target, **kwargs)

    wrapped = certificate_options(wrapper)
    wrapped = click.option(
        "--token",
        envvar="NBJOBS_TOKEN",
        metavar="TOKEN",
        help="A token to use instead of the stored login's. [env NBJOBS_TOKEN]",
    )(wrapped)
    wrapped = click.option(
        "--url",
        envvar="NBJOBS_URL",
        metavar="URL",
        help="The server's base URL, instead of the stored login's. [env NBJOBS_URL]",
    )(wrapped)
    return wrapped  # type: ignore[return-value]
