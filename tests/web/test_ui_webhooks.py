"""The app's webhook receiver pages in-process: an administrator creates a receiver and sees its secret once
(never in a later page), a real signed delivery shows in the log with its job, bad fields show the
service's message, enable/disable/delete; a plain user refused (page and f=json); CSRF-less POST refused."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from nbjobs.models.accounts import Principal
from nbjobs.roots.server import Server
from nbjobs.service.automation.webhooks import SECRET_LENGTH, ReceiverSpec, new_secret
from nbjobs.service.content.items import ItemFields
from tests.conftest import notebook_bytes
from tests.web.test_ui_app import APP, CTX, ORIGIN, app_client, sign_in  # noqa: F401  (fixture)

HOOKS = APP + "/webhooks"
SECRET = "It's a Secret to Everybody 32 ch"
BODY = '{"event": "ping"}'


def _item(nb: Server, owner: str = "alice") -> str:
    fields = ItemFields(title="On event", filename="parameters.ipynb")
    data = notebook_bytes("parameters.ipynb")
    return nb.items.add(Principal(owner), owner, data, type="Notebook", fields=fields).item_id


def _create(client: TestClient, csrf: str, item_id: str, **fields: str):
    data = {"csrf": csrf, "name": "github", "itemId": item_id, "username": "alice",
            "signatureHeaders": "x-hub-signature-256", **fields}  # fmt: skip
    return client.post(HOOKS + "/create", data=data, headers=ORIGIN, follow_redirects=False)


def _receiver_id(page: str) -> str:
    found = re.search(r'action="/arcgis/app/webhooks/([0-9a-f-]{36})/delete"', page)
    assert found, "no receiver id in the page"
    return found.group(1)


def test_new_secret_is_random_url_safe_and_of_the_required_length() -> None:
    made = {new_secret() for _ in range(20)}
    assert len(made) == 20
    assert all(len(s) == SECRET_LENGTH and re.fullmatch(r"[A-Za-z0-9_-]+", s) for s in made)


def test_the_secret_is_shown_once_on_creation_and_in_no_later_page(
    app_client: TestClient,  # noqa: F811
    nb: Server,
) -> None:
    item = _item(nb)
    csrf = sign_in(app_client, "admin")
    created = _create(app_client, csrf, item, parameters='{"name": "from-github"}')
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    [receiver] = nb.webhooks.store.list()
    secret = receiver.secret
    assert len(secret) == SECRET_LENGTH  # none typed: a fresh one was made
    assert f'<code class="mono" data-secret>{secret}</code>' in created.text
    assert receiver.username == "alice" and receiver.parameters == {"name": "from-github"}
    url = f"https://testserver{CTX}/rest/events/webhooks/{receiver.receiver_id}"
    assert url in created.text and "x-hub-signature-256: sha256=" in created.text
    later = [
        app_client.get(HOOKS),
        app_client.get(HOOKS, params={"f": "json"}),
        app_client.get(f"{HOOKS}/{receiver.receiver_id}"),
        app_client.get(f"{HOOKS}/{receiver.receiver_id}", params={"f": "json"}),
    ]
    for answer in later:
        assert answer.status_code == 200
        assert secret not in answer.text and secret not in html.unescape(answer.text)
        assert "data-secret" not in answer.text
    listing = later[0].text
    assert ">github</a>" in listing and "On event" in listing and ">enabled<" in listing
    page = html.unescape(later[2].text)
    assert url in page and '"name": "from-github"' in page and "Ready: a signed event" in page
    assert 'openssl dgst -sha256 -hmac "$SECRET"' in page  # the recipe, with the secret left out


def test_a_delivery_signed_as_the_page_shows_starts_a_job_and_is_in_the_log(
    app_client: TestClient,  # noqa: F811
    nb: Server,
    clock,
) -> None:
    item = _item(nb)
    csrf = sign_in(app_client, "admin")
    created = _create(app_client, csrf, item, secret=SECRET)
    assert created.status_code == 200, created.text
    receiver_id = _receiver_id(created.text)
    page = html.unescape(created.text)
    signature = re.search(r"-H 'x-hub-signature-256: (sha256=[0-9a-f]{64})'", page).group(1)
    assert f"--data-binary '{BODY}'" in page
    # the pasteable example, sent to the real sink as the docs say: no token, the signature authorizes
    sink = f"{CTX}/rest/events/webhooks/{receiver_id}"
    headers = {"content-type": "application/json", "x-hub-signature-256": signature}
    answer = app_client.post(sink, content=BODY.encode(), headers=headers)
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["jobId"]
    assert nb.store.get(job_id).username == "alice"
    clock.advance(1000)
    forged = app_client.post(sink, content=b'{"event": "forged"}', headers=headers)
    assert forged.json()["error"]["code"] == 403
    log = app_client.get(f"{HOOKS}/{receiver_id}").text
    assert f'href="{APP}/jobs/{job_id}"' in log and "Job submitted" in log
    assert "The event signature does not match its body." in log and "not valid" in log
    assert log.index("does not match") < log.index(job_id)  # newest first
    listing = app_client.get(HOOKS).text
    assert "refused" in listing.split(">github</a>", 1)[1]  # the last delivery was the forged one


def test_bad_fields_show_the_service_message_and_create_nothing(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    item = _item(nb)
    csrf = sign_in(app_client, "admin")
    cases = [
        ({"secret": "short but typed"}, "secret must be exactly 32 characters long; got 15."),
        ({"parameters": "{not json"}, "Invalid value for &#39;parameters&#39;: not valid JSON."),
        ({"parameters": '{"webhook_payload": 1}'}, "parameters cannot set webhook_payload"),
        ({"signatureHeaders": ""}, "signatureHeaders is required"),
        ({"name": ""}, "name is required."),
        ({"username": "nosuchuser"}, "nosuchuser"),
        ({"itemId": "0" * 32}, "does not exist or is inaccessible"),
    ]
    for fields, message in cases:
        answer = _create(app_client, csrf, item, **fields)
        assert answer.status_code == 400, (fields, answer.text)
        assert "The receiver was not created:" in answer.text and message in answer.text, fields
        assert 'role="alert"' in answer.text
        if "secret" in fields:
            assert fields["secret"] not in answer.text  # a typed secret is not sent back either
    refused = app_client.post(HOOKS + "/create?f=json", data={"csrf": csrf, "name": "x", "itemId": item,
                              "secret": "short", "signatureHeaders": "x-sig"}, headers=ORIGIN)  # fmt: skip
    assert refused.json()["error"]["code"] == 400
    assert nb.webhooks.store.list() == []


def test_disable_enable_and_delete_a_receiver(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    item = _item(nb)
    csrf = sign_in(app_client, "admin")
    receiver_id = _receiver_id(_create(app_client, csrf, item).text)
    page = f"{HOOKS}/{receiver_id}"
    off = app_client.post(page + "/disabled", data={"csrf": csrf, "disabled": "true"}, headers=ORIGIN,
                          follow_redirects=False)  # fmt: skip
    assert off.status_code == 303 and off.headers["location"] == page
    assert nb.webhooks.store.get(receiver_id).disabled
    shown = app_client.get(page).text
    assert ">disabled<" in shown and "is disabled" in shown and ">Enable</button>" in shown
    app_client.post(page + "/disabled", data={"csrf": csrf, "disabled": "false"}, headers=ORIGIN)
    assert not nb.webhooks.store.get(receiver_id).disabled
    gone = app_client.post(page + "/delete", data={"csrf": csrf}, headers=ORIGIN, follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == HOOKS
    assert nb.webhooks.store.get(receiver_id) is None
    assert app_client.get(page).status_code == 404


def test_a_plain_user_is_refused_and_others_receivers_are_unknown(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    spec = ReceiverSpec(name="bobs", item_id=_item(nb, "bob"), secret=SECRET,
                        signature_headers=("x-hub-signature-256",), username="bob")  # fmt: skip
    receiver = nb.webhooks.create(nb.users.get("admin"), spec)
    csrf = sign_in(app_client, "alice")
    page = app_client.get(HOOKS)
    assert page.status_code == 403 and "Only administrators manage webhook receivers." in page.text
    assert app_client.get(HOOKS, params={"f": "json"}).json()["error"]["code"] == 403
    assert f'href="{HOOKS}"' not in app_client.get(APP + "/jobs").text
    created = _create(app_client, csrf, _item(nb))
    assert created.status_code == 403
    # a receiver alice does not run as: exactly the unknown-id answer (the id masked)
    real = app_client.get(f"{HOOKS}/{receiver.receiver_id}")
    unknown = app_client.get(f"{HOOKS}/00000000-0000-0000-0000-000000000000")
    assert real.status_code == unknown.status_code == 404
    assert real.text.replace(receiver.receiver_id, "<id>") == unknown.text.replace(
        "00000000-0000-0000-0000-000000000000", "<id>"
    )
    for action, data in (("/disabled", {"disabled": "true"}), ("/delete", {})):
        refused = app_client.post(f"{HOOKS}/{receiver.receiver_id}{action}", data={"csrf": csrf, **data},
                                  headers=ORIGIN)  # fmt: skip
        assert refused.status_code == 403
    assert nb.webhooks.store.get(receiver.receiver_id) == receiver
    assert [r.name for r in nb.webhooks.store.list()] == ["bobs"]


def test_the_run_as_user_reads_its_receiver_but_cannot_change_it(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    spec = ReceiverSpec(name="bobs", item_id=_item(nb, "bob"), secret=SECRET,
                        signature_headers=("x-hub-signature-256",), username="bob")  # fmt: skip
    receiver = nb.webhooks.create(nb.users.get("admin"), spec)
    sign_in(app_client, "bob")
    page = app_client.get(f"{HOOKS}/{receiver.receiver_id}")
    assert page.status_code == 200 and "bobs" in page.text  # as the API's GET of the receiver
    assert "/delete" not in page.text and "/disabled" not in page.text and SECRET not in page.text


def test_post_without_csrf_is_refused(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    item = _item(nb)
    sign_in(app_client, "admin")
    answer = app_client.post(HOOKS + "/create", data={"name": "x", "itemId": item}, headers=ORIGIN)
    assert answer.status_code == 403 and "did not come from a page of this server" in answer.text
    assert nb.webhooks.store.list() == []
