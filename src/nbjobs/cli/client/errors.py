"""What the client reports when it cannot do what was asked: always one line on stderr and a status.

``error <code>: <message>`` for an answer of the server (its ArcGIS code), exit status 1; ``cannot reach
…`` / ``certificate verify failed …`` / no login, exit status 2, as click's usage errors.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Iterable
from typing import IO, Any

import click

EXIT_SERVER_ERROR = 1
EXIT_USAGE = 2  # bad usage, no login, the server unreachable or not trusted


class ClientError(click.ClickException):
    """A failure shown as one line, without click's "Error:" prefix."""

    exit_code = EXIT_USAGE

    def format_message(self) -> str:
        return self.message

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), err=True)


class ServerError(ClientError):
    """The server answered with an ArcGIS error envelope (or an HTTP error without one)."""

    exit_code = EXIT_SERVER_ERROR

    def __init__(self, code: int, message: str, details: Iterable[str] = ()) -> None:
        self.code = code
        self.details = [d for d in details if d and d != message]
        line = " ".join(f"error {code}: {message or 'request failed'}".split())
        if self.details:
            line += " (" + "; ".join(" ".join(d.split()) for d in self.details) + ")"
        super().__init__(line)


class Unreachable(ClientError):
    """The server could not be reached, or its certificate was not trusted."""


def check_envelope(answer: Any) -> Any:
    """``answer`` itself, unless it is one of the two ArcGIS error envelopes: then ``ServerError``."""
    if not isinstance(answer, dict):
        return answer
    error = answer.get("error")
    if isinstance(error, dict):  # portal: {"error": {"code", "message", "details"}}
        details = error.get("details") or []
        raise ServerError(_code(error.get("code")), str(error.get("message", "")), _texts(details))
    if answer.get("status") == "error":  # admin: {"status": "error", "messages": [...], "code"}
        messages = _texts(answer.get("messages") or [])
        raise ServerError(_code(answer.get("code")), messages[0] if messages else "", messages[1:])
    return answer


def _code(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 500


def _texts(values: Any) -> list[str]:
    return [str(v) for v in values] if isinstance(values, list) else [str(values)]


def transport_error(url: str, exc: BaseException) -> Unreachable:
    """The one line for a request that got no answer: refused, unresolvable, timed out, not trusted."""
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason or "untrusted certificate"
            return Unreachable(f"certificate verify failed for {url} ({reason}); use --ca-cert or --insecure")
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return Unreachable(f"certificate verify failed for {url}; use --ca-cert or --insecure")
    for cause in _chain(exc):
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return Unreachable(f"cannot reach {url}: connection refused")
    if "Connection refused" in text or "[Errno 111]" in text:
        return Unreachable(f"cannot reach {url}: connection refused")
    if isinstance(exc, TimeoutError) or type(exc).__name__.endswith("Timeout"):
        return Unreachable(f"cannot reach {url}: timed out")
    detail = " ".join(text.split()) or type(exc).__name__
    return Unreachable(f"cannot reach {url}: {detail}")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
