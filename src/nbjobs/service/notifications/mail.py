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

from nbjobs.errors import InvalidNotificationRule, InvalidRequest
from nbjobs.service.notifications.webhook import Outcome

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


def smtp_outcome(smtp: SmtpSettings, message: Any) -> Outcome:
    try:
        send(smtp, message)
    except TimeoutError:
        return Outcome(False, f"SMTP timed out after {smtp.timeout_seconds:g} s")
    except smtplib.SMTPResponseException as exc:
        text = (
            exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        )
        return Outcome(False, f"SMTP {exc.smtp_code}: {text}")
    except smtplib.SMTPRecipientsRefused as exc:
        return Outcome(False, f"SMTP refused the recipients: {exc.recipients}")
    except (OSError, smtplib.SMTPException) as exc:
        return Outcome(False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return Outcome(True, "SMTP accepted the message")


def merge_smtp(current: SmtpSettings, given: dict[str, Any]) -> SmtpSettings:
    if not isinstance(given, dict):
        raise InvalidRequest("smtp must be a JSON object")
    unknown = sorted(set(given) - _SMTP_KEYS)
    if unknown:
        raise InvalidRequest(f"smtp has unknown keys {unknown}; known: {sorted(_SMTP_KEYS)}")
    data = {**current.to_store(), **given}
    host, port, security = data.get("host"), data.get("port"), data.get("security")
    if not isinstance(host, str) or len(host) > 253 or any(c.isspace() for c in host):
        raise InvalidRequest("smtp.host must be a host name or address")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidRequest("smtp.port must be a whole number from 1 to 65535")
    if security not in SECURITY:
        raise InvalidRequest(f"smtp.security must be one of {list(SECURITY)}")
    timeout = data.get("timeoutSeconds")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 60:
        raise InvalidRequest("smtp.timeoutSeconds must be a number of seconds from 0.1 to 60")
    for key in ("username", "password", "fromAddress"):
        if not isinstance(data.get(key), str) or len(data[key]) > 512:
            raise InvalidRequest(f"smtp.{key} must be a string")
    if data["fromAddress"]:
        try:
            parse_addresses(data["fromAddress"])
        except InvalidNotificationRule:
            raise InvalidRequest(
                f"smtp.fromAddress {data['fromAddress']!r} is not an email address"
            ) from None
    if not isinstance(data.get("verifyTls"), bool):
        raise InvalidRequest("smtp.verifyTls must be true or false")
    return SmtpSettings.from_store(data)


def notebook_as_html(data: bytes) -> str:
    """The executed notebook as HTML (nbconvert's lab template), for an email attachment."""
    import nbformat
    from nbconvert import HTMLExporter  # imported on first use: it loads Jinja templates and Pygments

    node = nbformat.reads(data.decode("utf-8"), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(node)
    return str(body)


_SMTP_KEYS = {
    "host",
    "port",
    "security",
    "username",
    "password",
    "fromAddress",
    "timeoutSeconds",
    "verifyTls",
}
