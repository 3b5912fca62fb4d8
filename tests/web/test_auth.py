"""generateToken, the OAuth2 implicit grant, token transports and the 498/499 answers."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

from nbjobs.service.accounts.tokens import MINUTE_MS
from tests.web.conftest import CTX, PASSWORD


def _token(client, path="/sharing/rest/generateToken", **data):
    body = {"f": "json", "username": "alice", "password": PASSWORD, **data}
    return client.post(CTX + path, data=body)


def test_generate_token_portal_and_admin(client, clock):
    for path in ("/sharing/rest/generateToken", "/admin/generateToken"):
        answer = _token(client, path, expiration="30").json()
        assert set(answer) == {"token", "expires", "ssl"}
        assert answer["expires"] == clock() + 30 * MINUTE_MS
        assert answer["ssl"] is True


def test_token_accepted_from_every_transport(client):
    token = _token(client).json()["token"]
    url = CTX + "/sharing/rest/community/self"
    assert client.get(url, params={"f": "json", "token": token}).json()["username"] == "alice"
    assert client.post(url, data={"f": "json", "token": token}).json()["username"] == "alice"
    for header in ("X-Esri-Authorization", "Authorization"):
        answer = client.get(url, params={"f": "json"}, headers={header: f"Bearer {token}"})
        assert answer.json()["username"] == "alice"


def test_wrong_password_and_unknown_user_answer_alike(client):
    wrong = _token(client, password="not the password").json()
    unknown = _token(client, username="nobody").json()
    assert wrong == unknown
    assert wrong["error"]["code"] == 400
    assert wrong["error"]["message"] == "Unable to generate token."


def test_missing_credentials(client):
    answer = client.post(CTX + "/sharing/rest/generateToken", data={"f": "json"})
    assert answer.status_code == 200
    assert answer.json()["error"]["code"] == 400


def test_missing_token_is_499_on_portal_and_admin(client):
    portal = client.get(CTX + "/sharing/rest/community/self", params={"f": "json"}).json()
    admin = client.get(CTX + "/admin/notebooks/jobs", params={"f": "json"}).json()
    assert portal == {"error": {"code": 499, "message": "Token Required.", "details": []}}
    assert admin == {"status": "error", "messages": ["Token Required."], "code": 499}


def test_forged_token_is_498(client):
    answer = client.get(CTX + "/admin/notebooks/jobs", params={"f": "json", "token": "forged"}).json()
    assert answer == {"status": "error", "messages": ["Invalid token."], "code": 498}


def test_expired_token_is_498(client, clock):
    token = _token(client, expiration="1").json()["token"]
    clock.advance(2 * MINUTE_MS)
    answer = client.get(CTX + "/sharing/rest/community/self", params={"f": "json", "token": token}).json()
    assert answer["error"]["code"] == 498


def test_expiration_is_capped(client, clock, nb):
    answer = _token(client, expiration=str(10**9)).json()
    assert answer["expires"] == clock() + nb.settings.accounts.max_token_minutes * MINUTE_MS


def test_disabled_user_cannot_sign_in_and_its_tokens_stop(client, nb):
    token = _token(client).json()["token"]
    nb.users.set_disabled("alice")
    answer = _token(client).json()
    assert answer["error"]["code"] == 400
    assert "disabled" in answer["error"]["details"][0]
    stale = client.get(CTX + "/sharing/rest/community/self", params={"f": "json", "token": token}).json()
    assert stale["error"]["code"] == 498


def test_revoked_token_is_498(client, nb):
    token = _token(client).json()["token"]
    assert nb.tokens.revoke(token)
    answer = client.get(CTX + "/sharing/rest/community/self", params={"f": "json", "token": token}).json()
    assert answer["error"]["code"] == 498


def test_tokens_are_stored_hashed(client, nb):
    from sqlalchemy import select

    from nbjobs.store.tables import tokens

    token = _token(client).json()["token"]
    with nb.store.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(select(tokens.c.token_hash))]
    assert stored and token not in stored


def _authorize(client, **params):
    query = {
        "client_id": "arcgisonline",
        "response_type": "token",
        "redirect_uri": "https://testserver",
        "state": "xyz",
        "expiration": "120",
        **params,
    }
    return client.get(CTX + "/sharing/rest/oauth2/authorize", params=query)


def test_oauth_implicit_grant(client):
    page = _authorize(client).text
    info = json.loads(re.search(r"var oAuthInfo = (\{.*?\});", page).group(1))
    answer = client.post(
        CTX + "/sharing/oauth2/signin",
        data={"oauth_state": info["oauth_state"], "username": "alice", "password": PASSWORD},
        follow_redirects=False,
    )
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == "https://testserver"
    fragment = parse_qs(location.fragment)
    assert fragment["state"] == ["xyz"]
    assert int(fragment["expires_in"][0]) == 120 * 60
    token = fragment["access_token"][0]
    me = client.get(CTX + "/sharing/rest/community/self", params={"f": "json", "token": token}).json()
    assert me["username"] == "alice"


def test_oauth_refuses_foreign_redirect_and_code_grant(client):
    assert "Invalid redirect_uri" in _authorize(client, redirect_uri="https://evil.example").text
    assert "Invalid client_id" in _authorize(client, response_type="code").text


def test_oauth_wrong_password_stays_on_the_form(client):
    info = json.loads(re.search(r"var oAuthInfo = (\{.*?\});", _authorize(client).text).group(1))
    answer = client.post(
        CTX + "/sharing/oauth2/signin",
        data={"oauth_state": info["oauth_state"], "username": "alice", "password": "wrong password"},
        follow_redirects=False,
    )
    assert answer.status_code == 200
    assert "Invalid username or password." in answer.text


def test_oauth_forged_state(client):
    answer = client.post(
        CTX + "/sharing/oauth2/signin",
        data={"oauth_state": "e30.forged", "username": "alice", "password": PASSWORD, "f": "json"},
        follow_redirects=False,
    )
    assert answer.json()["error"]["code"] == 400


def test_html_sign_in_sets_a_cookie_for_browsing(client):
    answer = client.post(
        CTX + "/admin/generateToken", data={"f": "html", "username": "admin", "password": PASSWORD}
    )
    assert "nbjobs_token" in answer.cookies
    page = client.get(CTX + "/admin/notebooks")
    assert page.headers["content-type"].startswith("text/html")
    assert "executeNotebook" in page.text
