"""Portal items: upload, read, download, update, delete; visibility; bad uploads."""

from __future__ import annotations

import json

from tests.conftest import notebook_bytes


def test_add_and_read_item(alice):
    item_id = alice.add_notebook(tags="a,b", description="demo")
    assert len(item_id) == 32 and int(item_id, 16) >= 0
    info = alice.get(f"/sharing/rest/content/items/{item_id}").json()
    assert info["id"] == item_id
    assert info["owner"] == "alice"
    assert info["type"] == "Notebook"
    assert info["tags"] == ["a", "b"]
    data = alice.get(f"/sharing/rest/content/items/{item_id}/data")
    assert data.content == notebook_bytes("parameters.ipynb")
    listing = alice.get("/sharing/rest/content/users/alice").json()
    assert [i["id"] for i in listing["items"]] == [item_id]


def test_update_and_delete(alice):
    item_id = alice.add_notebook()
    files = {"file": ("trivial.ipynb", notebook_bytes("trivial.ipynb"), "application/x-ipynb+json")}
    answer = alice.post(
        f"/sharing/rest/content/users/alice/items/{item_id}/update", files=files, title="new"
    ).json()
    assert answer == {"success": True, "id": item_id}
    assert alice.get(f"/sharing/rest/content/items/{item_id}").json()["title"] == "new"
    assert alice.get(f"/sharing/rest/content/items/{item_id}/data").content == notebook_bytes("trivial.ipynb")
    assert alice.post(f"/sharing/rest/content/users/alice/items/{item_id}/delete").json()["success"] is True
    assert alice.get(f"/sharing/rest/content/items/{item_id}").json()["error"]["code"] == 400


def test_others_items_are_invisible_but_not_to_admin(alice, bob, admin):
    item_id = alice.add_notebook()
    unknown = bob.get("/sharing/rest/content/items/" + "0" * 32).json()
    for answer in (
        bob.get(f"/sharing/rest/content/items/{item_id}").json(),
        bob.post(f"/sharing/rest/content/users/alice/items/{item_id}/delete").json(),
        bob.post(f"/sharing/rest/content/users/bob/items/{item_id}/update", title="x").json(),
    ):
        assert answer["error"]["code"] == unknown["error"]["code"] == 400
        assert answer["error"]["message"] == unknown["error"]["message"]
    data = bob.get(f"/sharing/rest/content/items/{item_id}/data").json()
    assert data["error"]["code"] == 400
    assert bob.get("/sharing/rest/content/users/alice").json()["items"] == []
    assert admin.get(f"/sharing/rest/content/items/{item_id}").json()["owner"] == "alice"
    assert [i["id"] for i in admin.get("/sharing/rest/content/users/alice").json()["items"]] == [item_id]
    assert alice.get(f"/sharing/rest/content/items/{item_id}").json()["title"] == "parameters.ipynb"


def test_cannot_add_to_another_users_content(bob):
    files = {"file": ("t.ipynb", notebook_bytes("trivial.ipynb"), "application/x-ipynb+json")}
    answer = bob.post("/sharing/rest/content/users/alice/addItem", files=files, type="Notebook").json()
    assert answer["error"]["code"] == 403


def test_upload_that_is_not_a_notebook(alice, nb):
    files = {"file": ("x.ipynb", notebook_bytes("not_a_notebook.ipynb"), "application/x-ipynb+json")}
    answer = alice.post("/sharing/rest/content/users/alice/addItem", files=files, type="Notebook").json()
    assert answer["error"]["code"] == 400
    assert "not a notebook" in answer["error"]["message"]
    assert nb.items.store.list() == []


def test_upload_of_wrong_type_or_without_file(alice, nb):
    files = {"file": ("t.ipynb", notebook_bytes("trivial.ipynb"), "application/x-ipynb+json")}
    assert (
        alice.post("/sharing/rest/content/users/alice/addItem", files=files, type="CSV").json()["error"][
            "code"
        ]
        == 400
    )
    assert (
        alice.post("/sharing/rest/content/users/alice/addItem", type="Notebook").json()["error"]["code"]
        == 400
    )
    assert nb.items.store.list() == []


def test_upload_as_text_field(alice):
    text = notebook_bytes("trivial.ipynb").decode()
    answer = alice.post("/sharing/rest/content/users/alice/addItem", type="Notebook", text=text).json()
    assert answer["success"] is True


def test_oversized_upload_is_refused_cleanly(alice, nb):
    big = json.dumps({"cells": [], "padding": "x" * (2 * 1024 * 1024)}).encode()
    files = {"file": ("big.ipynb", big, "application/x-ipynb+json")}
    answer = alice.post("/sharing/rest/content/users/alice/addItem", files=files, type="Notebook")
    assert answer.status_code == 200
    assert answer.json()["error"]["code"] == 413
    assert nb.items.store.list() == []


def test_upload_over_item_limit_but_under_body_limit(alice, nb):
    big = json.dumps({"cells": [], "padding": "x" * (100 * 1024)}).encode()  # > 64 KiB item limit
    files = {"file": ("big.ipynb", big, "application/x-ipynb+json")}
    answer = alice.post("/sharing/rest/content/users/alice/addItem", files=files, type="Notebook").json()
    assert answer["error"]["code"] == 413
