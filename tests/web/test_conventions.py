"""ArcGIS conventions: formats, envelopes, HTTP 200, unknown routes, OpenAPI, the portal resources."""

from __future__ import annotations

import json

from fastapi import FastAPI

from nbjobs.web.app import create_app
from tests.web.conftest import CTX


def test_formats(alice, client):
    compact = alice.get("/admin/notebooks/jobs")
    assert compact.headers["content-type"].startswith("application/json")
    pretty = alice.get("/admin/notebooks/jobs", f="pjson")
    assert json.loads(pretty.text) == compact.json()
    assert "\n" in pretty.text
    page = client.get(CTX + "/admin/notebooks/jobs", params={"token": alice.token})
    assert page.headers["content-type"].startswith("text/html")
    page = client.get(CTX + "/admin/notebooks", params={"token": alice.token, "f": "html"}).text
    assert "<form method='post'" in page and "executeNotebook" in page


def test_unknown_route_and_method(client):
    portal = client.get(CTX + "/sharing/rest/nothing", params={"f": "json"})
    admin = client.get(CTX + "/admin/nothing", params={"f": "json"})
    assert portal.status_code == admin.status_code == 200
    assert portal.json() == {"error": {"code": 404, "message": "Resource not found.", "details": []}}
    assert admin.json() == {"status": "error", "messages": ["Resource not found."], "code": 404}
    method = client.put(CTX + "/admin/notebooks/jobs", params={"f": "json"})
    assert method.json()["code"] == 405


def test_unexpected_error_is_an_envelope_without_traceback(nb, caplog):
    app: FastAPI = create_app(nb.web)

    def explode() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/arcgis/admin/explode", explode)
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/arcgis/admin/explode", params={"f": "json"})
    assert answer.status_code == 200
    assert answer.json()["code"] == 500
    assert "secret" not in answer.text
    assert "secret internals" in caplog.text


def test_openapi_documents_every_route(client):
    spec = client.get(CTX + "/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/arcgis/sharing/rest/generateToken",
        "/arcgis/sharing/rest/content/users/{username}/addItem",
        "/arcgis/admin/notebooks/executeNotebook",
        "/arcgis/admin/notebooks/jobs/{job_id}/cancel",
        "/arcgis/admin/system/jobs/deleteAll",
        "/arcgis/admin/jobs/{job_id}",
    ):
        assert path in paths
    execute = paths["/arcgis/admin/notebooks/executeNotebook"]["post"]
    form = execute["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert "notebookParameters" in form


def test_portal_resources(client, alice):
    assert client.get(CTX + "/sharing/rest", params={"f": "json"}).json() == {"currentVersion": "11.3"}
    info = client.get(CTX + "/sharing/rest/info", params={"f": "json"}).json()
    assert info["authInfo"]["isTokenBasedSecurity"] is True
    me = alice.get("/sharing/rest/portals/self").json()
    assert me["user"]["username"] == "alice"
    servers = alice.get(f"/sharing/rest/portals/{me['id']}/servers").json()["servers"]
    assert servers[0]["serverFunction"] == "NotebookServer"
    assert servers[0]["adminUrl"] == "https://testserver/arcgis"
    user = alice.get("/sharing/rest/community/users/alice").json()
    assert "premium:publisher:createNotebooks" in user["privileges"]
    assert alice.get("/sharing/rest/community/users/bob").json()["error"]["code"] == 404


def test_admin_root_version(alice):
    root = alice.get("/admin").json()
    assert [int(p) for p in root["version"].split(".")]
