"""``nbjobs users``: manage the built-in accounts in a data directory's database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nbjobs.cli.options import data_dir_option
from nbjobs.errors import NbJobsError
from nbjobs.models.accounts import ORG_USER, ROLES

if TYPE_CHECKING:  # imported where used, to keep `nbjobs --help` fast
    from nbjobs.roots.operator import Operator
    from nbjobs.service.accounts.tokens import TokenService
    from nbjobs.service.accounts.users import UserService

_data_dir = data_dir_option


def _services(data_dir: Path | None) -> tuple[UserService, TokenService, Operator]:
    from nbjobs.roots.operator import Operator
    from nbjobs.settings import load_settings

    operator = Operator.open(load_settings(data_dir=data_dir))
    return operator.users, operator.tokens, operator


def _password_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help=help_text)


@click.group()
def users() -> None:
    """Add, list, change and disable users."""


@users.command("add")
@click.argument("name")
@_password_option("The new user's password (prompted when omitted).")
@click.option("--role", type=click.Choice(ROLES), default=ORG_USER, show_default=True)
@_data_dir
def add(name: str, password: str, role: str, data_dir: Path | None) -> None:
    """Create user NAME (an org_user gets the notebook privileges)."""
    service, _, store = _services(data_dir)
    try:
        user = service.add(name, password, role=role)
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        store.close()
    click.echo(f"added {user.username} ({user.role})")


@users.command("list")
@_data_dir
def list_users(data_dir: Path | None) -> None:
    """List users: name, role, state."""
    service, _, store = _services(data_dir)
    try:
        for user in service.list():
            state = "disabled" if user.disabled else "enabled"
            click.echo(f"{user.username}\t{user.role}\t{state}")
    finally:
        store.close()


@users.command("passwd")
@click.argument("name")
@_password_option("The new password (prompted when omitted).")
@_data_dir
def passwd(name: str, password: str, data_dir: Path | None) -> None:
    """Set the password of user NAME and revoke the tokens issued to it."""
    service, tokens, store = _services(data_dir)
    try:
        service.set_password(name, password)
        tokens.revoke_user(name)
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        store.close()
    click.echo(f"password of {name} changed")


@users.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
@_data_dir
def disable(name: str, enable: bool, data_dir: Path | None) -> None:
    """Disable user NAME (its tokens stop working at once), or --enable it again."""
    service, tokens, store = _services(data_dir)
    try:
        service.set_disabled(name, not enable)
        if not enable:
            tokens.revoke_user(name)
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        store.close()
    click.echo(f"{name} {'enabled' if enable else 'disabled'}")
