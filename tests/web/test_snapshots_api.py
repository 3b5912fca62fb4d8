"""The snapshots API at /admin/notebooks/snapshots over a real SQLite store: the arcgis client's parameters
and the keys it reads, the limit, save_version's versions through the API, and every bad input answered in
the admin envelope (never a 500)."""

from __future__ import annotations

import json

import pytest

from nbjobs.models.accounts import Principal
from nbjobs.roots.server import Server
from tests.conftest import notebook_bytes

SNAPSHOTS = "/admin/notebooks/snapshots"


def create(caller, item_id: str, **data) -> dict:
    return caller.post(SNAPSHOTS + "/create", itemId=item_id, **{"name": "first", **data}).json()


def keys(caller, item_id: str) -> list[str]:
    answer = caller.post(SNAPSHOTS + "/list", itemId=item_id).json()
    return [s["resourceKey"] for s in answer["snapshots"]]


def error_of(answer) -> tuple[int, str]:
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "error", body
    return body["code"], " ".join(body["messages"])


def test_create_list_download_as_the_arcgis_client_reads_them(alice) -> None:
    item = alice.add_notebook()
    made = create(alice, item, description="before the change", privateAccess="false", notebookJSON="")
    assert made["status"] == "success" and made["snapshotResourceKey"].startswith("snapshot-")
    listed = alice.post(SNAPSHOTS + "/list", itemId=item).json()
    assert listed["status"] == "success"
    [snap] = listed["snapshots"]
    assert snap["resourceKey"] == made["snapshotResourceKey"] and isinstance(snap["created"], int)
    props = snap["properties"]
    assert (props["name"], props["description"], props["automatic"], props["source"]) == (
        "first", "before the change", False, "api",
    )  # fmt: skip
    assert props["size"] == len(notebook_bytes("parameters.ipynb")) and "runtime" in props
    # what SnapShot.download posts: no f, so an attachment the client saves to a file
    answer = alice.client.post(
        "/arcgis" + SNAPSHOTS + "/download",
        data={"token": alice.token, "itemId": item, "resourceKey": snap["resourceKey"]},
    )
    assert answer.content == notebook_bytes("parameters.ipynb")
    assert answer.headers["content-disposition"] == 'attachment; filename="first.ipynb"'
    inline = alice.get(SNAPSHOTS + "/download", itemId=item, resourceKey=snap["resourceKey"])
    assert inline.headers["content-type"] == "application/json" and inline.json()["nbformat"] == 4


def test_create_from_notebook_json(alice) -> None:
    item = alice.add_notebook()
    other = notebook_bytes("trivial.ipynb").decode()
    key = create(alice, item, notebookJSON=other)["snapshotResourceKey"]
    answer = alice.get(SNAPSHOTS + "/download", itemId=item, resourceKey=key)
    assert answer.json() == json.loads(other)


def test_the_limit_refuses_a_manual_create_naming_it(alice, nb: Server, admin) -> None:
    assert (
        admin.post("/admin/notebooks/configuration/update", maxSnapshotsPerNotebookItem=2).json()["status"]
        == "success"
    )
    nb.config._cached = None  # the service caches the stored values for a moment
    item = alice.add_notebook()
    create(alice, item, name="one")
    create(alice, item, name="two")
    code, message = error_of(alice.post(SNAPSHOTS + "/create", itemId=item, name="three"))
    assert code == 400 and "maximum of 2 snapshots (maxSnapshotsPerNotebookItem)" in message
    assert len(keys(alice, item)) == 2


def test_restore_then_convert_to_item(alice, nb: Server) -> None:
    item = alice.add_notebook()
    key = create(alice, item, name="v1")["snapshotResourceKey"]
    nb.web.snapshots.save_version(
        Principal("alice"), item, notebook_bytes("trivial.ipynb"), source="JupyterLab"
    )
    assert nb.items.store.get_data(item) == notebook_bytes("trivial.ipynb")
    listed = alice.post(SNAPSHOTS + "/list", itemId=item).json()["snapshots"]
    assert [s["properties"]["name"] for s in listed] == ["Before save from JupyterLab", "v1"]
    assert listed[0]["properties"]["automatic"] is True
    restored = alice.post(
        SNAPSHOTS + "/restore",
        itemId=item,
        resourceKey=key,
        preserveCurrentAsSnapshot="true",
        title="",
        description="",
    )
    assert restored.json() == {"status": "success"}
    assert nb.items.store.get_data(item) == notebook_bytes("parameters.ipynb")
    assert len(keys(alice, item)) == 3
    converted = alice.post(
        SNAPSHOTS + "/convertToItem", itemId=item, resourceKey=key, notebookTitle="Copy"
    ).json()
    assert converted["status"] == "success"
    info = alice.get(f"/sharing/rest/content/items/{converted['itemId']}").json()
    assert (info["title"], info["owner"]) == ("Copy", "alice")


def test_delete_takes_the_clients_bare_key_or_a_json_list(alice) -> None:
    item = alice.add_notebook()
    a, b, c = (create(alice, item, name=n)["snapshotResourceKey"] for n in "abc")
    assert alice.post(SNAPSHOTS + "/delete", itemId=item, resourceKeys=a).json()["status"] == "success"
    answer = alice.post(SNAPSHOTS + "/delete", itemId=item, resourceKeys=json.dumps([b, c])).json()
    assert answer == {"status": "success", "deleted": [b, c]}
    assert keys(alice, item) == []


@pytest.mark.parametrize(
    ("path", "data", "code", "text"),
    [
        ("/create", {"name": ""}, 400, "'name' is required"),
        ("/create", {"notebookJSON": '{"cells": 3}'}, 400, "not a notebook"),
        ("/create", {"notebookJSON": "not json"}, 400, "not a notebook"),
        ("/create", {"notebookJSON": "{" + " " * 70_000 + "}"}, 413, "bytes this server accepts"),
        ("/create", {"privateAccess": "maybe"}, 400, "'privateAccess'"),
        ("/restore", {"resourceKey": "snapshot-nope.json"}, 400, "'snapshot-nope.json' does not exist"),
        ("/restore", {}, 400, "'resourceKey' is required"),
        ("/download", {"resourceKey": "snapshot-nope.json"}, 400, "does not exist"),
        (
            "/convertToItem",
            {"resourceKey": "snapshot-nope.json", "notebookTitle": "t"},
            400,
            "does not exist",
        ),
        ("/delete", {"resourceKeys": "["}, 400, "'resourceKeys': not valid JSON"),
        ("/delete", {"resourceKeys": "[1, 2]"}, 400, "expected a JSON list of resource keys"),
        ("/delete", {"resourceKeys": ""}, 400, "'resourceKeys' is required"),
        ("/delete", {"resourceKeys": '["snapshot-nope.json"]'}, 400, "does not exist"),
    ],
)
def test_bad_inputs_get_a_clear_error_in_the_admin_envelope(alice, path, data, code, text) -> None:
    item = alice.add_notebook()
    create(alice, item)
    got_code, message = error_of(alice.post(SNAPSHOTS + path, itemId=item, **{"name": "n", **data}))
    assert (got_code, text in message) == (code, True), message
    assert len(keys(alice, item)) == 1


def test_convert_needs_a_title(alice) -> None:
    item = alice.add_notebook()
    key = create(alice, item)["snapshotResourceKey"]
    code, message = error_of(alice.post(SNAPSHOTS + "/convertToItem", itemId=item, resourceKey=key))
    assert code == 400 and "'notebookTitle' is required" in message


@pytest.mark.parametrize("path", ["/create", "/list", "/restore", "/delete", "/download", "/convertToItem"])
def test_another_users_item_answers_exactly_like_an_unknown_one(alice, bob, path) -> None:
    item = alice.add_notebook()
    key = create(alice, item)["snapshotResourceKey"]
    fields = {"name": "x", "resourceKey": key, "resourceKeys": key, "notebookTitle": "t"}
    theirs = error_of(bob.post(SNAPSHOTS + path, itemId=item, **fields))
    unknown = error_of(bob.post(SNAPSHOTS + path, itemId="f" * 32, **fields))
    assert theirs[0] == unknown[0] == 400
    assert theirs[1].replace(item, "<id>") == unknown[1].replace("f" * 32, "<id>")
    assert "Item does not exist or is inaccessible." in theirs[1]
    assert keys(alice, item) == [key]


def test_an_admin_manages_anyones_snapshots(alice, admin) -> None:
    item = alice.add_notebook()
    key = create(admin, item, name="by the admin")["snapshotResourceKey"]
    assert keys(alice, item) == [key]


def test_the_resource_page_lists_its_operations(alice) -> None:
    assert "convertToItem" in alice.get(SNAPSHOTS).json()["operations"]
    page = alice.client.get("/arcgis" + SNAPSHOTS, params={"token": alice.token})
    assert page.status_code == 200 and "restore" in page.text


def test_deleting_the_item_deletes_its_snapshots(alice, nb: Server) -> None:
    item = alice.add_notebook()
    create(alice, item)
    alice.post(f"/sharing/rest/content/users/alice/items/{item}/delete")
    assert nb.web.snapshots.store.list(item) == []
