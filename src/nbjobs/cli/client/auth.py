"""``nbjobs login URL`` and ``nbjobs logout``: a token stored for the other client commands."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from nbjobs.cli.client import config
from nbjobs.cli.client.api import Api, find_base, verify_of
from nbjobs.cli.client.errors import ClientError
from nbjobs.cli.client.target import certificate_options

DEFAULT_EXPIRATION_MINUTES = 7 * 24 * 60  # the server caps it (NBJOBS_MAX_TOKEN_MINUTES)


@click.command()
@click.argument("url")
@click.option("-u", "--username", help="Who signs in. [default: prompted]")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin, not a prompt."
)
@click.option(
    "--expiration",
    type=click.IntRange(min=1),
    default=DEFAULT_EXPIRATION_MINUTES,
    show_default=True,
    metavar="MINUTES",
    help="How long the token is valid (the server may grant less).",
)
@certificate_options
def login(
    url: str,
    username: str | None,
    password_stdin: bool,
    expiration: int,
    ca_cert: Path | None,
    insecure: bool,
) -> None:
    """Sign in to the server at URL and store the token for the other commands.

    URL is the server's base, https://HOST:PORT/CONTEXT (as `nbjobs serve` prints it); without the
    context, the one the server redirects / to is used, and a pasted .../admin or .../sharing/rest tail
    is dropped. --ca-cert / --insecure are remembered with the login. The token is stored in
    $XDG_CONFIG_HOME/nbjobs/login.json (default ~/.config/nbjobs/), readable by you alone.

    \b
    Example:
      nbjobs login https://nb.example.org:8443/arcgis -u alice --ca-cert nbjobs-cert.pem
    """
    ca = str(ca_cert.resolve()) if ca_cert else ""
    verify = verify_of(ca, insecure)
    base = find_base(url, verify)
    if not username:
        username = click.prompt("Username", err=True)
    password = _read_password() if password_stdin else click.prompt("Password", hide_input=True, err=True)
    with Api(base, verify=verify) as api:
        answer = api.post(
            "/sharing/rest/generateToken",
            {
                "username": username,
                "password": password,
                "expiration": expiration,
                "client": "referer",
                "referer": base,
            },
        )
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise ClientError(f"no token in the answer of {base}/sharing/rest/generateToken")
    expires = int(answer.get("expires") or 0)
    path = config.login_path()
    config.save(path, config.Login(base, token, username, expires, ca, insecure))
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires / 1000)) if expires else "unknown"
    click.echo(f"signed in to {base} as {username} (token valid until {until}); stored in {path}", err=True)


def _read_password() -> str:
    line = sys.stdin.readline()
    if not line:
        raise ClientError("--password-stdin: nothing on stdin")
    return line.rstrip("\r\n")


@click.command()
def logout() -> None:
    """Revoke the stored token on its server, then forget the login. The file is removed even when the
    server cannot be reached (the token then stays valid until it expires: the line says so)."""
    path = config.login_path()
    stored = config.load(path)
    if stored is None:
        config.remove(path)
        click.echo("not signed in", err=True)
        return
    revoked = "revoked the token"
    try:
        with Api(stored.url, verify=verify_of(stored.ca_cert, stored.insecure)) as api:
            api.post("/sharing/rest/oauth2/revokeToken", {"auth_token": stored.token})
    except ClientError as exc:
        revoked = f"could not revoke the token ({exc}); it stays valid until it expires"
    config.remove(path)
    click.echo(f"signed out: {revoked}, removed {path}", err=True)
