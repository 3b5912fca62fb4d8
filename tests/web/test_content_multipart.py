"""Items uploaded in parts, as the ArcGIS client does for large files: addItem multipart=true, addPart,
commit, status. Every bad input answers the portal error envelope and leaves no item behind."""

from __future__ import annotations

import pytest

from nbjobs.service.content.items import UPLOAD_TTL_MS
from tests.conftest import notebook_bytes

USERS = "/sharing/rest/content/users"


def _begin(caller, owner: str | None = None, folder: str = "", **fields: object) -> dict:
    where = f"{USERS}/{owner or caller.username}/{folder + '/' if folder else ''}addItem"
    fields = {"multipart": "true", "type": "Notebook", "title": "big", "fileName": "big.ipynb", **fields}
    return caller.post(where, **fields).json()


def _part(caller, item_id: str, part_num: object, data: bytes, owner: str = "alice") -> dict:
    files = {"file": (f"split{part_num}.split", data, "application/octet-stream")}
    return caller.post(f"{USERS}/{owner}/items/{item_id}/addPart", files=files, partNum=part_num).json()


def _commit(caller, item_id: str, owner: str = "alice", **fields: object) -> dict:
    return caller.post(f"{USERS}/{owner}/items/{item_id}/commit", id=item_id, **fields).json()


def _status(caller, item_id: str, owner: str = "alice") -> dict:
    return caller.post(f"{USERS}/{owner}/items/{item_id}/status").json()


def _split(data: bytes, n: int) -> list[bytes]:
    size = -(-len(data) // n)
    return [data[i : i + size] for i in range(0, len(data), size)]


def _error(answer: dict, code: int) -> str:
    assert set(answer) == {"error"}, answer
    assert answer["error"]["code"] == code, answer
    return answer["error"]["message"]


def _later(nb, clock, caller, ms: int) -> None:
    """Move the clock on, with a fresh token for ``caller`` (the old one would have expired)."""
    clock.advance(ms)
    caller.token = nb.tokens.issue(nb.users.get(caller.username)).token


def _nothing_left(nb, item_id: str) -> None:
    assert nb.items.store.get(item_id) is None
    assert nb.items.store.get_upload(item_id) is None
    assert nb.items.store.part_sizes(item_id) == {}


@pytest.fixture
def started(alice) -> str:
    answer = _begin(alice, tags="big,parts", description="in parts")
    assert answer["success"] is True, answer
    return answer["id"]


def test_upload_in_parts_creates_the_item_at_commit(alice, nb, started):
    data = notebook_bytes("parameters.ipynb")
    assert _status(alice, started) == {"itemId": started, "status": "partial", "statusMessage": "partial"}
    assert alice.get(f"/sharing/rest/content/items/{started}").json()["error"]["code"] == 400
    assert alice.get(f"{USERS}/alice").json()["items"] == []
    parts = _split(data, 3)
    for num in (3, 1, 2):  # the client sends parts concurrently, so in any order
        assert _part(alice, started, num, parts[num - 1]) == {"success": True}
    assert alice.get(f"/sharing/rest/content/items/{started}").json()["error"]["code"] == 400

    answer = _commit(
        alice, started, type="Notebook", title="committed", multipart="true", **{"async": "true"}
    )
    assert answer == {"success": True, "id": started}
    assert _status(alice, started) == {"itemId": started, "status": "completed", "statusMessage": "completed"}
    info = alice.get(f"/sharing/rest/content/items/{started}").json()
    assert info["title"] == "committed"  # commit's properties win over addItem's
    assert info["tags"] == ["big", "parts"] and info["description"] == "in parts"
    assert info["name"] == "big.ipynb" and info["size"] == len(data) and info["owner"] == "alice"
    assert alice.get(f"/sharing/rest/content/items/{started}/data").content == data
    assert nb.items.store.get_upload(started) is None
    assert nb.items.store.part_sizes(started) == {}


def test_a_single_part_and_a_folder_path(alice):
    item_id = _begin(alice, folder="some-folder")["id"]
    assert _part(alice, item_id, 1, notebook_bytes("trivial.ipynb"))["success"] is True
    assert _commit(alice, item_id)["success"] is True
    info = alice.get(f"/sharing/rest/content/items/{item_id}").json()
    assert info["title"] == "big" and info["type"] == "Notebook"


def test_sending_a_part_again_replaces_it(alice, started):
    data = notebook_bytes("trivial.ipynb")
    head, tail = _split(data, 2)
    _part(alice, started, 1, b"garbage")
    _part(alice, started, 2, tail)
    _part(alice, started, 1, head)
    assert _commit(alice, started)["success"] is True
    assert alice.get(f"/sharing/rest/content/items/{started}/data").content == data


def test_status_of_an_item_added_whole_is_completed(alice):
    item_id = alice.add_notebook()
    assert _status(alice, item_id)["status"] == "completed"


def test_bad_addItem_multipart_starts_nothing(alice, bob, nb):
    files = {"file": ("t.ipynb", notebook_bytes("trivial.ipynb"), "application/x-ipynb+json")}
    with_file = alice.post(f"{USERS}/alice/addItem", files=files, multipart="true", type="Notebook").json()
    assert "addPart" in _error(with_file, 400)
    assert "Unsupported item type" in _error(_begin(alice, type="CSV"), 400)
    _error(_begin(alice, multipart="maybe"), 400)
    _error(_begin(bob, owner="alice"), 403)
    assert nb.items.store.drop_uploads_before(2**62) == 0
    assert nb.items.store.list() == []


@pytest.mark.parametrize(
    ("part_num", "fragment"),
    [("", "partNum"), ("0", "1 to 10000"), ("10001", "1 to 10000"), ("x", "integer"), ("-2", "1 to 10000")],
)
def test_addPart_with_a_bad_part_number(alice, nb, started, part_num, fragment):
    assert fragment in _error(_part(alice, started, part_num, b"{}"), 400)
    assert nb.items.store.part_sizes(started) == {}


def test_addPart_without_a_file(alice, nb, started):
    answer = alice.post(f"{USERS}/alice/items/{started}/addPart", partNum=1).json()
    assert "'file'" in _error(answer, 400)
    assert nb.items.store.part_sizes(started) == {}


def test_unknown_and_others_uploads_answer_alike(alice, bob, nb, started):
    unknown = "0" * 32
    expected = _error(_status(alice, unknown), 400)
    assert expected == "Item does not exist or is inaccessible."
    for answer in (
        _part(alice, unknown, 1, b"{}"),
        _commit(alice, unknown),
        _part(bob, started, 1, b"{}"),
        _part(bob, started, 1, b"{}", owner="bob"),
        _commit(bob, started),
        _status(bob, started),
    ):
        assert _error(answer, 400) == expected
    assert nb.items.store.part_sizes(started) == {}
    assert nb.items.store.get_upload(started) is not None  # alice's upload is untouched


def test_admin_may_finish_a_users_upload(alice, admin, started):
    assert _status(admin, started)["status"] == "partial"
    _part(admin, started, 1, notebook_bytes("trivial.ipynb"))
    assert _commit(admin, started)["success"] is True
    assert alice.get(f"/sharing/rest/content/items/{started}").json()["owner"] == "alice"


def test_the_upload_limit_counts_all_parts(alice, nb, started):
    limit = nb.settings.limits.max_upload_bytes
    assert _part(alice, started, 1, b"x" * (limit // 2))["success"] is True
    assert _part(alice, started, 2, b"x" * (limit // 2))["success"] is True
    assert "larger than" in _error(_part(alice, started, 3, b"x" * 10), 413)
    assert sorted(nb.items.store.part_sizes(started)) == [1, 2]
    assert _part(alice, started, 2, b"x" * 10)["success"] is True  # replacing a part frees its bytes


def test_commit_without_parts_or_with_a_gap_changes_nothing(alice, nb, started):
    assert "No part" in _error(_commit(alice, started), 400)
    head, middle, tail = _split(notebook_bytes("trivial.ipynb"), 3)
    _part(alice, started, 1, head)
    _part(alice, started, 3, tail)
    assert "Part 2 is missing" in _error(_commit(alice, started), 400)
    assert nb.items.store.list() == []
    _part(alice, started, 2, middle)  # the upload survives a failed commit: fix it and commit again
    assert _commit(alice, started)["success"] is True


def test_commit_of_what_is_not_a_notebook(alice, nb, started):
    _part(alice, started, 1, notebook_bytes("not_a_notebook.ipynb"))
    assert "not a notebook" in _error(_commit(alice, started), 400)
    assert nb.items.store.list() == []
    assert _status(alice, started)["status"] == "partial"


def test_commit_of_another_type(alice, nb, started):
    _part(alice, started, 1, notebook_bytes("trivial.ipynb"))
    assert "Unsupported item type" in _error(_commit(alice, started, type="CSV"), 400)
    assert nb.items.store.list() == []


def test_commit_twice(alice, nb, started):
    _part(alice, started, 1, notebook_bytes("trivial.ipynb"))
    assert _commit(alice, started)["success"] is True
    _error(_commit(alice, started), 400)
    _error(_part(alice, started, 2, b"{}"), 400)
    assert [i.item_id for i in nb.items.store.list()] == [started]
    assert nb.items.store.part_sizes(started) == {}


def test_an_abandoned_upload_expires(alice, nb, clock, started):
    _part(alice, started, 1, notebook_bytes("trivial.ipynb"))
    _later(nb, clock, alice, UPLOAD_TTL_MS + 1)
    _error(_status(alice, started), 400)
    _error(_commit(alice, started), 400)
    _nothing_left(nb, started)


def test_starting_an_upload_clears_abandoned_ones(alice, nb, clock, started):
    _part(alice, started, 1, b"{}")
    _later(nb, clock, alice, UPLOAD_TTL_MS + 1)
    fresh = _begin(alice)["id"]
    _nothing_left(nb, started)
    assert nb.items.store.get_upload(fresh) is not None


def test_data_is_inline_json_for_f_json_and_an_attachment_otherwise(alice, client):
    # Item.get_data() of the client sends f=json and would save an attachment to a temp file instead.
    item_id = alice.add_notebook("trivial.ipynb")
    inline = alice.get(f"/sharing/rest/content/items/{item_id}/data")
    assert inline.headers["content-type"] == "application/json"
    assert "content-disposition" not in inline.headers
    assert inline.content == notebook_bytes("trivial.ipynb")
    url = f"/arcgis/sharing/rest/content/items/{item_id}/data"
    attached = client.get(url, params={"token": alice.token})
    assert attached.headers["content-disposition"] == 'attachment; filename="trivial.ipynb"'
    assert attached.content == notebook_bytes("trivial.ipynb")
