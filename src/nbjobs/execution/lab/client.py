"""The few calls nbjobs makes to a user's Jupyter server, over its REST API with its token (sync httpx).

Any API server can make them: the address is one the API servers reach (docs/interactive.md).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx


class LabUnreachable(Exception):
    """The Jupyter server did not answer, or answered with an error."""


class LabClient:
    def __init__(self, address: str, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.root = address.rstrip("/") + "/" + base_url.strip("/") + "/"
        self._headers = {"Authorization": f"token {token}"}
        self._timeout = timeout

    def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        try:
            response = httpx.request(
                method, self.root + path, headers=self._headers, timeout=timeout or self._timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise LabUnreachable(f"the notebook server did not answer: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise LabUnreachable(f"the notebook server answered {response.status_code} to {method} {path}")
        return response

    def _json(self, method: str, path: str, shape: type, **kwargs: Any) -> Any:
        """The answer's JSON, which must be a ``shape`` (dict or list): anything else is the server
        misbehaving (or something else listening on its port), reported like no answer at all."""
        response = self._call(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, shape):
            raise LabUnreachable(
                f"the notebook server answered {method} {path} with no JSON {shape.__name__}"
            )
        return data

    def _records(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self._json("GET", path, list) if isinstance(r, dict)]

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "api/status", dict, timeout=5.0)
        return result

    def put_notebook(self, path: str, notebook: bytes) -> None:
        """Write a notebook file into the server's root directory (replacing one of that name)."""
        model = {"type": "notebook", "format": "json", "content": json.loads(notebook)}
        self._call("PUT", "api/contents/" + quote(path), json=model)

    def get_notebook(self, path: str) -> bytes:
        """The notebook file as the server has it now (what was last saved in JupyterLab)."""
        model = self._json(
            "GET", "api/contents/" + quote(path), dict, params={"type": "notebook", "content": 1}
        )
        if not isinstance(model.get("content"), dict):
            raise LabUnreachable(f"the notebook server answered GET api/contents/{path} with no notebook")
        return (json.dumps(model["content"], ensure_ascii=False, indent=1) + "\n").encode()

    def sessions(self) -> list[dict[str, Any]]:
        return self._records("api/sessions")

    def kernels(self) -> list[dict[str, Any]]:
        return self._records("api/kernels")

    def end_sessions_of(self, path: str) -> int:
        """Shut down the kernels of the sessions open on ``path``; returns how many."""
        ended = 0
        for session in self.sessions():
            if session.get("path") == path and session.get("id"):
                self._call("DELETE", "api/sessions/" + quote(str(session["id"])))
                ended += 1
        return ended
