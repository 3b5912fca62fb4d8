"""The app's admin pages in-process: the users page for an administrator (list, add, disable, enable),
a plain user refused (page and f=json), a bad role showing the service's message, CSRF-less POST refused."""

from __future__ import annotations

from fastapi.testclient import TestClient

from nbjobs.roots.server import Server
from tests.web.test_ui_app import APP, ORIGIN, app_client, sign_in  # noqa: F401  (fixture)

USERS = APP + "/admin/users"


def _add(client: TestClient, csrf: str, username: str, role: str):
    data = {"csrf": csrf, "username": username, "password": "a long password", "role": role}
    return client.post(USERS + "/add", data=data, headers=ORIGIN, follow_redirects=False)


def test_users_page_lists_adds_disables_and_enables(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "admin")
    page = app_client.get(USERS)
    assert page.status_code == 200
    assert ">alice<" in page.text and ">org_admin<" in page.text
    assert 'href="' + USERS + '"' in page.text  # the Admin nav entry
    added = _add(app_client, csrf, "carol", "org_user")
    assert added.status_code == 303, added.text
    assert nb.users.get("carol").role == "org_user"
    off = app_client.post(USERS + "/carol/disabled", data={"csrf": csrf, "disabled": "true"}, headers=ORIGIN,
                          follow_redirects=False)  # fmt: skip
    assert off.status_code == 303
    assert nb.users.get("carol").disabled
    app_client.post(USERS + "/carol/disabled", data={"csrf": csrf, "disabled": "false"}, headers=ORIGIN)
    assert not nb.users.get("carol").disabled


def test_bad_role_shows_the_service_message_and_adds_nothing(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "admin")
    answer = _add(app_client, csrf, "dave", "king")
    assert answer.status_code == 400
    assert "Invalid role &#39;king&#39;" in answer.text or "Invalid role 'king'" in answer.text
    assert all(u.username != "dave" for u in nb.users.list())


def test_plain_user_is_refused(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "alice")
    page = app_client.get(USERS)
    assert page.status_code == 403
    assert "Administrators only" in page.text
    assert 'href="' + USERS + '"' not in app_client.get(APP + "/jobs").text
    as_json = app_client.get(USERS, params={"f": "json"})
    assert as_json.json()["error"]["code"] == 403
    form = {"csrf": csrf, "disabled": "true"}
    refused = app_client.post(USERS + "/bob/disabled", data=form, headers=ORIGIN)
    assert refused.status_code == 403
    assert not nb.users.get("bob").disabled


def test_post_without_csrf_is_refused(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    sign_in(app_client, "admin")
    answer = app_client.post(USERS + "/bob/disabled", data={"disabled": "true"}, headers=ORIGIN)
    assert answer.status_code == 403
    assert not nb.users.get("bob").disabled
