"""``nbjobs notify``: notification settings (SMTP, the SSRF allow-list), test messages, task rules and
delivery logs, over a data directory's database (a running server picks changes up at once)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nbjobs.cli.options import data_dir_option

if TYPE_CHECKING:  # imported where used, to keep `nbjobs --help` fast
    from nbjobs.service.notifications.service import NotificationService


@contextmanager
def _service(data_dir: Path | None) -> Iterator[NotificationService]:
    from nbjobs.errors import NbJobsError
    from nbjobs.roots.operator import Operator
    from nbjobs.settings import load_settings

    try:
        operator = Operator.open(load_settings(data_dir=data_dir))
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    try:
        yield operator.notifications
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        operator.close()


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ms else "-"


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group()
def notify() -> None:
    """Notifications of job events: settings, test messages, task rules, delivery logs."""


@notify.command("settings")
@data_dir_option
def settings(data_dir: Path | None) -> None:
    """The SMTP settings (password hidden), the allow-list and the retry policy, as JSON."""
    from nbjobs.service.authz import OPERATOR

    with _service(data_dir) as service:
        _echo(service.settings_view(OPERATOR))


@notify.command("smtp")
@click.option("--host", help="SMTP server host.")
@click.option("--port", type=int, help="SMTP port (587 STARTTLS, 465 SSL, 25 none).")
@click.option("--security", type=click.Choice(["none", "starttls", "ssl"]))
@click.option("--username")
@click.option("--password", help="Write-only: never shown again.")
@click.option("--from", "from_address", help="The From address.")
@click.option("--timeout", "timeout_seconds", type=float, help="Seconds per SMTP command.")
@click.option("--no-verify-tls", is_flag=True, default=None, help="Accept any certificate (tests only).")
@data_dir_option
def smtp(data_dir: Path | None, **given: Any) -> None:
    """Change the SMTP settings (options not given keep their value)."""
    from nbjobs.service.authz import OPERATOR

    wire = {
        "host": "host",
        "port": "port",
        "security": "security",
        "username": "username",
        "password": "password",
        "from_address": "fromAddress",
        "timeout_seconds": "timeoutSeconds",
    }
    changes = {wire[k]: v for k, v in given.items() if k in wire and v is not None}
    if given.get("no_verify_tls"):
        changes["verifyTls"] = False
    with _service(data_dir) as service:
        _echo(service.update_settings(OPERATOR, smtp=changes)["smtp"])


@notify.command("allow")
@click.argument("entries", nargs=-1)
@click.option("--clear", is_flag=True, help="Empty the allow-list.")
@data_dir_option
def allow(entries: tuple[str, ...], clear: bool, data_dir: Path | None) -> None:
    """Replace the allow-list: hosts or networks (CIDR) notification URLs may reach although they are
    loopback or private, e.g. `nbjobs notify allow 10.20.0.0/16 hooks.internal`."""
    from nbjobs.service.authz import OPERATOR

    if not entries and not clear:
        raise click.UsageError("give entries, or --clear")
    with _service(data_dir) as service:
        _echo(service.update_settings(OPERATOR, allow_list=[] if clear else list(entries))["allowList"])


@notify.command("test")
@click.option("--email", default="", help="Send a test mail to these addresses (comma-separated).")
@click.option("--url", default="", help="POST a signed test payload to this URL.")
@click.option("--secret", default="", help="The HMAC key for --url.")
@data_dir_option
def test(email: str, url: str, secret: str, data_dir: Path | None) -> None:
    """Send a test notification now with the stored settings; exit 1 when it fails."""
    from nbjobs.service.authz import OPERATOR

    with _service(data_dir) as service:
        outcome = service.send_test(OPERATOR, email=email, url=url, secret=secret)
    click.echo(("sent: " if outcome.ok else "failed: ") + outcome.detail)
    if not outcome.ok:
        raise SystemExit(1)


@notify.command("task")
@click.argument("task_id")
@click.argument("rules")
@data_dir_option
def task_rules(task_id: str, rules: str, data_dir: Path | None) -> None:
    """Set the notification RULES (a JSON list, `[]` to remove) every run of TASK_ID gets."""
    from nbjobs.roots.operator import Operator
    from nbjobs.settings import load_settings

    operator = Operator.open(load_settings(data_dir=data_dir))
    try:
        if operator.tasks.get(task_id) is None:
            raise click.ClickException(f"Task '{task_id}' does not exist.")
        service = operator.notifications
        try:
            parsed = service.parse(rules)
        except Exception as exc:
            raise click.ClickException(str(exc)) from exc
        service.set_scope_rules(f"task:{task_id}", parsed)
        _echo([r.to_wire() for r in service.scope_rules(f"task:{task_id}")])
    finally:
        operator.close()


@notify.command("deliveries")
@click.argument("job_id", required=False)
@click.option("--status", default="", help="pending | sent | gave_up (all jobs only).")
@click.option("--num", default=50, show_default=True)
@data_dir_option
def deliveries(job_id: str | None, status: str, num: int, data_dir: Path | None) -> None:
    """The delivery log: of JOB_ID, or the newest of every job; one line per attempt under each."""
    from nbjobs.service.authz import OPERATOR

    with _service(data_dir) as service:
        rows = (
            service.job_deliveries(OPERATOR.principal(), job_id)
            if job_id
            else service.recent(OPERATOR, status=status, limit=num)
        )
        for delivery, attempts in rows:
            click.echo(
                f"{delivery.delivery_id}  {delivery.job_id}  {delivery.event:<13} {delivery.rule.channel:<7} "
                f"{delivery.status:<7} attempts {delivery.attempts}  {delivery.rule.target}"
            )
            for a in attempts:
                mark = "ok " if a.ok else "err"
                click.echo(f"    #{a.number} {_when(a.at)} {a.duration_ms:>5} ms  {mark}  {a.detail}")
