"""Webhook receivers over HTTP: the admin API, and the signed sink at both of its addresses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from tests.web.conftest import CTX, Caller

SECRET = "0123456789abcdef0123456789abcdef"
ADMIN_BASE = "/admin/notebooks/webhookReceivers"


def _create(admin: Caller, item_id: str, **fields: object) -> dict:
    body = {"name": "demo", "itemId": item_id, "secret": SECRET, "username": "alice",
            "signatureHeaders": "x-esrihook-signature, X-Hub-Signature-256",
            "parameters": json.dumps({"num": 1, "name": "esri"}), **fields}  # fmt: skip
    return admin.post(ADMIN_BASE + "/create", **body).json()


def _b64(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _github(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def receiver(admin: Caller, alice: Caller) -> dict:
    created = _create(admin, alice.add_notebook())
    return created["webhookReceiver"]


def test_admin_api_never_returns_the_secret(admin: Caller, receiver: dict):
    assert SECRET not in json.dumps(receiver)
    rid = receiver["id"]
    assert (
        receiver["username"] == "alice"
        and receiver["signatureHeaders"] == "x-esrihook-signature,x-hub-signature-256"
    )
    assert receiver["url"].endswith(f"{CTX}/rest/events/webhooks/{rid}")
    listing = admin.get(ADMIN_BASE).json()["webhookReceivers"]
    assert [r["id"] for r in listing] == [rid] and SECRET not in json.dumps(listing)
    one = admin.get(f"{ADMIN_BASE}/{rid}").json()
    assert one["parameters"] == '{"num": 1, "name": "esri"}' and "secret" not in one
    assert admin.post(f"{ADMIN_BASE}/{rid}/validate").json() == {"status": "success"}
    assert admin.post(f"{ADMIN_BASE}/{rid}/disable").json() == {"status": "success"}
    assert admin.get(f"{ADMIN_BASE}/{rid}").json()["disabled"] is True
    assert admin.post(f"{ADMIN_BASE}/{rid}/enable").json() == {"status": "success"}
    assert admin.post(f"{ADMIN_BASE}/{rid}/update", name="renamed").json() == {"status": "success"}
    assert admin.get(f"{ADMIN_BASE}/{rid}").json()["name"] == "renamed"
    assert admin.post(f"{ADMIN_BASE}/{rid}/delete").json() == {"status": "success"}
    assert admin.get(f"{ADMIN_BASE}/{rid}").json()["code"] == 404


def test_bad_receiver_input(admin: Caller, alice: Caller, bob: Caller):
    item_id = alice.add_notebook()
    assert "exactly 32 characters long; got 31" in _create(admin, item_id, secret=SECRET[:31])["messages"][0]
    assert "signatureHeaders is required" in _create(admin, item_id, signatureHeaders="")["messages"][0]
    assert "Item does not exist" in _create(admin, bob.add_notebook())["messages"][0]  # alice cannot read it
    assert (
        "cannot set webhook_payload"
        in _create(admin, item_id, parameters='{"webhook_payload": 1}')["messages"][0]
    )
    assert "apiToken is not a valid" in _create(admin, item_id, apiToken="forged")["messages"][0]
    assert alice.post(ADMIN_BASE + "/create", name="x").json()["code"] == 403  # administrators only
    assert admin.get(ADMIN_BASE).json()["webhookReceivers"] == []


def test_api_token_names_the_run_as_user(admin: Caller, bob: Caller):
    created = _create(admin, bob.add_notebook(), apiToken=bob.token, username="")
    assert created["webhookReceiver"]["username"] == "bob"


def _send(client, rid: str, body: bytes, headers: dict, *, family_b: bool = False):
    path = f"{CTX}{ADMIN_BASE}/{rid}" if family_b else f"{CTX}/rest/events/webhooks/{rid}"
    return client.post(path, content=body, headers={"content-type": "application/json", **headers})


def test_signed_events_start_jobs_with_payload_and_headers(
    client, nb, admin: Caller, alice: Caller, receiver
):
    rid = receiver["id"]
    body = json.dumps({"action": "opened", "number": 7}).encode()
    ok = _send(client, rid, body, {"X-Hub-Signature-256": _github(body), "X-GitHub-Event": "push",
                                   "Authorization": "Bearer secret-ish"})  # fmt: skip
    answer = ok.json()
    assert ok.status_code == 200 and answer["status"] == "success", answer
    job = alice.get(f"/admin/notebooks/jobs/{answer['jobId']}").json()
    params = job["inputs"]["notebookParameters"]
    assert job["username"] == "alice" and job["type"] == "executeNotebook"
    assert job["inputs"]["webhookReceiverId"] == rid  # the job names the receiver that started it
    assert params["num"] == 1 and params["name"] == "esri"
    assert params["webhook_payload"] == {"action": "opened", "number": 7}
    headers = params["webhook_headers"]
    assert headers["x-github-event"] == "push"
    assert "x-hub-signature-256" not in headers and "authorization" not in headers
    text = b"plain text event"
    family_b = _send(client, rid, text, {"x-esrihook-signature": _b64(text)}, family_b=True).json()
    assert family_b["status"] == "success"
    job = alice.get(f"/admin/notebooks/jobs/{family_b['jobId']}").json()
    assert job["inputs"]["notebookParameters"]["webhook_payload"] == "plain text event"
    log = alice.get(f"{ADMIN_BASE}/{rid}/deliveries").json()["deliveries"]  # the run-as user may read it
    assert {d["jobId"] for d in log} == {family_b["jobId"], answer["jobId"]}
    assert all(d["signatureOk"] and d["source"] for d in log)


def test_rejected_events(client, nb, admin: Caller, bob: Caller, receiver):
    rid = receiver["id"]
    body = b'{"a": 1}'
    forged = _send(client, rid, body, {"x-hub-signature-256": _github(body, "f" * 32)}).json()
    assert forged["error"]["code"] == 403 and "does not match" in forged["error"]["message"]
    replayed = _send(client, rid, body, {"x-signature": _b64(body)}).json()  # right HMAC, wrong header name
    assert replayed["error"]["code"] == 401 and "x-hub-signature-256" in replayed["error"]["message"]
    tampered = _send(client, rid, body + b" ", {"x-esrihook-signature": _b64(body)}).json()
    assert tampered["error"]["code"] == 403
    unknown = _send(client, "nope", body, {"x-esrihook-signature": _b64(body)}).json()
    assert unknown["error"]["code"] == 404
    family_b = _send(client, rid, body, {}, family_b=True).json()
    assert family_b["status"] == "error" and family_b["code"] == 401  # the admin envelope on /admin paths
    nb.webhooks.max_body_bytes = 100
    big = b"x" * 5000
    too_big = _send(client, rid, big, {"x-esrihook-signature": _b64(big)}).json()
    assert too_big["error"]["code"] == 413
    nb.webhooks.max_body_bytes = 10 * 1024 * 1024
    admin.post(f"{ADMIN_BASE}/{rid}/disable")
    disabled = _send(client, rid, body, {"x-esrihook-signature": _b64(body)}).json()
    assert disabled["error"]["code"] == 403 and "disabled" in disabled["error"]["message"]
    admin.post(f"{ADMIN_BASE}/{rid}/enable")
    log = admin.get(f"{ADMIN_BASE}/{rid}/deliveries").json()["deliveries"]
    assert len(log) == 6 and not any(d["jobId"] for d in log) and all(d["rejection"] for d in log)
    assert bob.get(f"{ADMIN_BASE}/{rid}/deliveries").json()["code"] == 404  # not bob's receiver


def test_fifty_megabyte_body_is_refused(client, receiver):
    body = b"x" * (50 * 1024 * 1024)
    answer = _send(client, receiver["id"], body, {"x-esrihook-signature": _b64(body)})
    assert answer.status_code == 200 and answer.json()["error"]["code"] == 413


def test_rate_limit_per_receiver(client, nb, clock, receiver):
    nb.webhooks.limiter.per_minute = 2
    body = b"{}"
    headers = {"x-esrihook-signature": _b64(body)}
    codes = [
        _send(client, receiver["id"], body, headers).json().get("error", {}).get("code") for _ in range(3)
    ]
    assert codes == [None, None, 429]
    clock.advance(30_000)  # one token back
    assert _send(client, receiver["id"], body, headers).json()["status"] == "success"


def test_disabled_run_as_user(client, nb, admin: Caller, receiver):
    nb.users.set_disabled("alice")
    body = b"{}"
    answer = _send(client, receiver["id"], body, {"x-esrihook-signature": _b64(body)}).json()
    assert answer["error"]["code"] == 403 and "'alice'" in answer["error"]["message"]
    assert "disabled" in admin.post(f"{ADMIN_BASE}/{receiver['id']}/validate").json()["messages"][0]
