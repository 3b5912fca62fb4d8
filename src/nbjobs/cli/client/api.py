"""One signed-in HTTP session with a server: JSON calls, downloads and streams, every failure one line.

httpx is imported when a session opens, not with this module: ``nbjobs --help`` loads every command.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from nbjobs.cli.client.errors import ClientError, ServerError, check_envelope, transport_error

if TYPE_CHECKING:
    import httpx

TIMEOUT_SECONDS = 60.0
CONNECT_SECONDS = 10.0
STREAM_READ_SECONDS = 45.0  # three 15 s heartbeats without a byte: the stream is dropped
USER_AGENT = "nbjobs-cli"
# Paths a user may paste after the context: the base is what precedes them.
_SUFFIXES = ("/sharing/rest", "/sharing", "/admin", "/app")


def verify_of(ca_cert: str = "", insecure: bool = False) -> ssl.SSLContext | bool:
    """httpx's ``verify``: no checks, the given CA bundle, or the system's trust store."""
    if insecure:
        return False
    if ca_cert:
        try:
            return ssl.create_default_context(cafile=ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"cannot read the CA certificate {ca_cert}: {exc}") from None
    return ssl.create_default_context()


class Api:
    """Calls under the server's base URL (``https://host:port/<context>``), the token on each."""

    def __init__(self, base: str, token: str = "", *, verify: ssl.SSLContext | bool = True) -> None:
        self.base = base.rstrip("/")
        self.token = token
        import httpx

        headers = {"User-Agent": USER_AGENT}
        timeout = httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_SECONDS)
        self.http = httpx.Client(verify=verify, timeout=timeout, headers=headers, follow_redirects=False)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            return self.http.request(method, self.base + path, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(self.base, exc) from None

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` with ``f=json``; the decoded answer, or ``ServerError`` for an error envelope."""
        response = self._send("GET", path, params={"f": "json", **params}, headers=self._headers())
        return _json(response)

    def post(self, path: str, data: Mapping[str, Any] | None = None, files: Any = None) -> Any:
        body = {"f": "json", **{k: str(v) for k, v in (data or {}).items()}}
        response = self._send("POST", path, data=body, files=files, headers=self._headers())
        return _json(response)

    def download(self, path: str) -> bytes:
        """The bytes of a file answer; an error envelope (JSON, not the file's own type) raises."""
        response = self._send("GET", path, headers=self._headers())
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        if kind == "application/json" or response.status_code != 200:
            _json(response)
            raise ServerError(response.status_code, f"unexpected answer from {path}")
        return response.content

    @contextmanager
    def stream(self, path: str, headers: Mapping[str, str] | None = None) -> Iterator[httpx.Response]:
        """An open streaming GET (the caller reads its lines); connection failures raise ``Unreachable``."""
        import httpx

        timeout = httpx.Timeout(STREAM_READ_SECONDS, connect=CONNECT_SECONDS)
        request = self.http.build_request(
            "GET", self.base + path, headers=self._headers(headers), timeout=timeout
        )
        try:
            response = self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise transport_error(self.base, exc) from None
        try:
            yield response
        finally:
            response.close()


def _json(response: httpx.Response) -> Any:
    try:
        answer = response.json()
    except ValueError:
        raise ServerError(response.status_code, _http_reason(response)) from None
    check_envelope(answer)
    if response.status_code >= 400:
        raise ServerError(response.status_code, _http_reason(response))
    return answer


def _http_reason(response: httpx.Response) -> str:
    if response.status_code == 200:
        return f"not a JSON answer from {response.request.url.copy_with(query=None)}"
    return response.reason_phrase or "request failed"


def candidate_bases(url: str) -> list[str]:
    """What ``url`` may mean as a server base: as given (minus a pasted /admin, /sharing/rest, … tail)."""
    parts = urlsplit(url.strip() if "://" in url else f"https://{url.strip()}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"not a server URL: {url!r} (expected https://host:port/<context>)")
    path = parts.path.rstrip("/")
    for suffix in _SUFFIXES:
        at = path.find(suffix)
        if at >= 0 and (len(path) == at + len(suffix) or path[at + len(suffix)] == "/"):
            path = path[:at]
            break
    return [urlunsplit((parts.scheme, parts.netloc, path, "", ""))]


def find_base(url: str, verify: ssl.SSLContext | bool) -> str:
    """The server base behind ``url``: the URL itself when ``<url>/sharing/rest/info`` answers, else the
    context the server's ``/`` redirects to (so ``https://host:port`` finds ``https://host:port/arcgis``)."""
    base = candidate_bases(url)[0]
    origin = urlunsplit((*urlsplit(base)[:2], "", "", ""))
    with Api(base, verify=verify) as api:
        if _is_base(api):
            return base
    with Api(origin, verify=verify) as api:
        location = api._send("GET", "/").headers.get("location", "")
        context = urlsplit(location).path.strip("/").split("/")[0]
    if context and f"{origin}/{context}" != base:
        with Api(f"{origin}/{context}", verify=verify) as api:
            if _is_base(api):
                return api.base
    raise ClientError(f"no nbjobs server at {base} (expected https://host:port/<context>)")


def _is_base(api: Api) -> bool:
    response = api._send("GET", "/sharing/rest/info", params={"f": "json"})
    try:
        answer = response.json()
    except ValueError:
        return False
    return isinstance(answer, dict) and "authInfo" in answer
