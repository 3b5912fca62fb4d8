"""The email channel: a message per delivery over SMTP (plain, STARTTLS or SSL; optional login).

The body names the job, its status and reason and, for a cell error, the failing cell's index, the
exception and its traceback (ANSI colour codes stripped); the executed notebook can ride along as HTML.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from nbjobs.errors import InvalidNotificationRule

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
SECURITY = ("none", "starttls", "ssl")
_ADDRESS = re.compile(
    r"^[^@\s,;<>\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z0-9-]{2,63}$|^[^@\s,;<>\"]{1,64}@localhost$"
)


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def parse_addresses(text: str) -> tuple[str, ...]:
    """Comma-separated addresses; InvalidNotificationRule naming the first bad one."""
    addresses = tuple(a.strip() for a in text.split(",") if a.strip())
    if not addresses:
        raise InvalidNotificationRule("an email rule needs at least one address in 'email'")
    if len(addresses) > 20:
        raise InvalidNotificationRule("an email rule may name at most 20 addresses")
    for address in addresses:
        if not _ADDRESS.match(address):
            raise InvalidNotificationRule(f"{address!r} is not an email address")
    return addresses


@dataclass(frozen=True)
class SmtpSettings:
    host: str = ""
    port: int = 587
    security: str = "starttls"  # none | starttls | ssl
    username: str = ""
    password: str = ""
    from_address: str = ""
    timeout_seconds: float = 10.0
    verify_tls: bool = True

    def to_wire(self) -> dict[str, Any]:
        """As the admin API shows it: the password is write-only."""
        return {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username": self.username,
            "passwordSet": bool(self.password),
            "fromAddress": self.from_address,
            "timeoutSeconds": self.timeout_seconds,
            "verifyTls": self.verify_tls,
        }

    def to_store(self) -> dict[str, Any]:
        return {**self.to_wire(), "password": self.password}

    @classmethod
    def from_store(cls, data: dict[str, Any]) -> SmtpSettings:
        return cls(
            host=data.get("host", ""),
            port=int(data.get("port", 587)),
            security=data.get("security", "starttls"),
            username=data.get("username", ""),
            password=data.get("password", ""),
            from_address=data.get("fromAddress", ""),
            timeout_seconds=float(data.get("timeoutSeconds", 10.0)),
            verify_tls=bool(data.get("verifyTls", True)),
        )


def compose(
    smtp: SmtpSettings, to: tuple[str, ...], payload: dict[str, Any], notebook_html: str | None
) -> EmailMessage:
    job = payload.get("job", {})
    event = payload.get("event", "")
    failure = job.get("failure") or {}
    subject = f"[nbjobs] job {job.get('id', '')} {event}"
    if failure.get("reason"):
        subject += f" ({failure['reason']})"
    lines = [
        f"Job:      {job.get('id', '')}",
        f"Event:    {event}",
        f"Status:   {job.get('status', '')}",
        f"Owner:    {job.get('username', '')}",
        f"Notebook: {job.get('itemId', '')}",
    ]
    if job.get("taskId"):
        lines.append(f"Task:     {job['taskId']}")
    if failure:
        lines += [
            "",
            f"Reason:   {failure.get('reason', '')}",
            f"Message:  {strip_ansi(failure.get('message', ''))}",
        ]
        if failure.get("cellIndex") is not None:
            lines += [
                "",
                f"Failing cell: {failure['cellIndex']}",
                f"{failure.get('ename', '')}: {strip_ansi(str(failure.get('evalue', '')))}",
                "",
                "Traceback:",
                *(strip_ansi(t) for t in failure.get("traceback", [])),
            ]
    lines += ["", f"Idempotency key: {payload.get('idempotencyKey', '')}"]
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = smtp.from_address or f"nbjobs@{smtp.host or 'localhost'}"
    message["To"] = ", ".join(to)
    message["Message-ID"] = make_msgid(domain="nbjobs")
    message["X-Nbjobs-Idempotency-Key"] = payload.get("idempotencyKey", "")
    message.set_content("\n".join(lines) + "\n")
    if notebook_html is not None:
        message.add_attachment(
            notebook_html.encode("utf-8"),
            maintype="text",
            subtype="html",
            filename=f"{job.get('id', 'job')}.html",
        )
    return message


def send(smtp: SmtpSettings, message: EmailMessage) -> None:
    """Send over SMTP; raises OSError / smtplib.SMTPException on any failure."""
    if not smtp.host:
        raise smtplib.SMTPException("no SMTP server is configured (admin notifications/settings)")
    context = ssl.create_default_context()
    if not smtp.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client: smtplib.SMTP
    if smtp.security == "ssl":
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout_seconds, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds)
    try:
        if smtp.security == "starttls":
            client.starttls(context=context)
        if smtp.username:
            client.login(smtp.username, smtp.password)
        client.send_message(message)
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
