"""Web tools in the admin API: analyzeNotebook, createService, the list, one service, edit, delete."""

from __future__ import annotations

import json

from nbjobs.service.webtools.params import register
from tests.conftest import notebook_bytes
from tests.web.conftest import Caller


def _props(item_id: str, title: str = "Area", **json_props: object) -> str:
    return json.dumps(
        {
            "description": "circle maths",
            "provider": "notebooks",
            "type": "GPServer",
            "jsonProperties": {
                "title": title,
                "notebookId": item_id,
                "tasks": [{"type": "notebook", "name": title}],
                **json_props,
            },
        }
    )


def add_bytes(caller: Caller, data: bytes, name: str = "tool.ipynb") -> str:
    answer = caller.post(
        f"/sharing/rest/content/users/{caller.username}/addItem",
        files={"file": (name, data, "application/x-ipynb+json")},
        type="Notebook",
        title=name.removesuffix(".ipynb"),
    ).json()
    assert answer["success"] is True, answer
    return answer["id"]


def publish(caller: Caller, item_id: str, title: str = "Area", **json_props: object) -> dict:
    return caller.post(
        "/admin/services/createService", serviceProperties=_props(item_id, title, **json_props)
    ).json()


def test_publish_answers_the_item_id_and_the_service_is_listed_and_readable(alice):
    item = alice.add_notebook("webtool.ipynb")
    created = publish(alice, item)
    assert created["status"] == "success"
    name = created["itemId"]
    assert len(name) == 32 and created["url"].endswith(f"/arcgis/rest/services/{name}/GPServer")
    listing = alice.get("/admin/services").json()
    assert listing["total"] == 1 and listing["services"][0]["id"] == name
    assert listing["services"][0]["type"] == "GPServer"
    service = alice.get(f"/admin/services/{name}.GPServer").json()
    assert service["provider"] == "notebooks" and service["serviceName"] == name
    assert service["portalProperties"]["portalItems"] == [{"itemID": name, "type": "GPServer"}]
    assert service["properties"] == {"tasks": [item]}
    assert service["jsonProperties"]["snapshotId"].startswith("execute-notebook-snapshot-")
    assert [p["name"] for p in service["parameters"]["outputs"]][:2] == ["area", "label"]


def test_the_list_is_paged_and_users_see_only_their_own(alice, bob, admin, clock):
    names = []
    for i in range(3):
        names.append(publish(alice, alice.add_notebook("webtool.ipynb"), f"T{i}")["itemId"])
        clock.advance(1)
    publish(bob, bob.add_notebook("webtool.ipynb"), "B")
    page = alice.get("/admin/services", start=2, num=1).json()
    assert (page["total"], page["start"], page["num"], page["nextStart"]) == (3, 2, 1, 3)
    assert page["services"][0]["id"] == names[1]
    assert alice.get("/admin/services", start=3, num=1).json()["nextStart"] == -1
    assert bob.get("/admin/services").json()["total"] == 1
    assert admin.get("/admin/services", num=500).json()["total"] == 4
    assert bob.get(f"/admin/services/{names[0]}.GPServer").json()["code"] == 404


def test_analyze_reports_missing_inputs_and_invalid_outputs_in_the_arcgis_shape(alice):
    data, _ = register(notebook_bytes("webtool.ipynb"), ["I2:String"], ["never_set:Double"])
    item = add_bytes(alice, data)
    answer = alice.post("/admin/services/analyzeNotebook", itemId=item).json()
    assert answer["status"] == "success" and answer["errors"] == []
    assert "Unable to find webtool input parameter 'I2' in the Notebook." in answer["warnings"]
    assert any(w.startswith("Invalid webtool output parameter 'never_set'") for w in answer["warnings"])
    assert set(answer) == {"errors", "warnings", "messages", "status"}
    empty = alice.post("/admin/services/analyzeNotebook", itemId="").json()
    assert empty == {
        "errors": ["An empty Notebook ItemID is not allowed for this operation."],
        "warnings": [],
        "messages": [],
        "status": "success",
    }


def test_a_notebook_with_declaration_errors_cannot_be_published(alice):
    nb = json.loads(notebook_bytes("webtool.ipynb"))
    nb["metadata"]["nbjobs"]["webtool"]["inputs"].append({"name": "x", "type": "Raster"})
    item = add_bytes(alice, json.dumps(nb).encode())
    assert alice.post("/admin/services/analyzeNotebook", itemId=item).json()["errors"]
    answer = publish(alice, item)
    assert (
        answer["code"] == 400 and answer["messages"][0] == "The notebook cannot be published as a web tool."
    )
    assert "Unknown web tool parameter type 'Raster'" in answer["messages"][1]


def test_publishing_twice_is_refused(alice):
    item = alice.add_notebook("webtool.ipynb")
    first = publish(alice, item)["itemId"]
    again = publish(alice, item)
    assert again["code"] == 409 and first in again["messages"][0]


def test_publishing_someone_elses_notebook_is_refused(alice, bob, admin):
    item = alice.add_notebook("webtool.ipynb")
    answer = publish(bob, item)
    assert answer["code"] == 400 and answer["messages"][0] == "Item does not exist or is inaccessible."
    by_admin = publish(admin, item)
    assert by_admin["code"] == 403
    assert by_admin["messages"][0] == "The notebook must belong to the user publishing the service."


def test_publishing_needs_the_publish_web_tools_privilege(nb, client):
    nb.users.add("writer", "writer-password", privileges=("premium:publisher:createNotebooks",))
    writer = Caller(client, "writer", nb.tokens.issue(nb.users.get("writer")).token)
    item = add_bytes(writer, notebook_bytes("webtool.ipynb"))
    answer = publish(writer, item)
    assert answer["code"] == 403 and "portal:publisher:publishServerGPServices" in answer["messages"][-1]


def test_bad_service_properties_are_clear_400s(alice):
    item = alice.add_notebook("webtool.ipynb")
    post = alice.post
    assert post("/admin/services/createService").json()["messages"] == ["serviceProperties is required."]
    assert post("/admin/services/createService", serviceProperties="[1]").json()["code"] == 400
    no_id = post("/admin/services/createService", serviceProperties=json.dumps({"jsonProperties": {}})).json()
    assert no_id["messages"] == ["serviceProperties.jsonProperties.notebookId is required."]
    wrong = json.dumps({"type": "MapServer", "jsonProperties": {"notebookId": item}})
    assert (
        "Unsupported service type"
        in post("/admin/services/createService", serviceProperties=wrong).json()["messages"][0]
    )
    two = json.dumps({"jsonProperties": {"notebookId": item, "tasks": [{"name": "a"}, {"name": "b"}]}})
    assert (
        "exactly one task"
        in post("/admin/services/createService", serviceProperties=two).json()["messages"][0]
    )


def test_edit_re_snapshots_the_notebook_and_delete_removes_the_tool(alice):
    item = alice.add_notebook("webtool.ipynb")
    name = publish(alice, item)["itemId"]
    before = alice.get(f"/admin/services/{name}.GPServer").json()
    changed, _ = register(notebook_bytes("webtool.ipynb"), ["extra:String"], [])
    alice.post(
        f"/sharing/rest/content/users/alice/items/{item}/update",
        files={"file": ("tool.ipynb", changed, "application/x-ipynb+json")},
    )
    still = alice.get(f"/admin/services/{name}.GPServer").json()
    assert still["jsonProperties"]["snapshotId"] == before["jsonProperties"]["snapshotId"]
    assert "extra" not in [p["name"] for p in still["parameters"]["inputs"]]
    edited = alice.post(
        f"/admin/services/{name}.GPServer/edit", serviceProperties=json.dumps({"description": "new"})
    ).json()
    assert edited["status"] == "success"
    after = alice.get(f"/admin/services/{name}.GPServer").json()
    assert after["jsonProperties"]["snapshotId"] != before["jsonProperties"]["snapshotId"]
    assert "extra" in [p["name"] for p in after["parameters"]["inputs"]]
    assert after["description"] == "new"
    assert alice.post(f"/admin/services/{name}.GPServer/delete").json() == {"status": "success"}
    assert alice.get(f"/admin/services/{name}.GPServer").json()["code"] == 404
    assert alice.get("/admin/services").json()["total"] == 0


def test_deleting_the_notebook_deletes_the_tool(alice):
    item = alice.add_notebook("webtool.ipynb")
    name = publish(alice, item)["itemId"]
    assert alice.post(f"/sharing/rest/content/users/alice/items/{item}/delete").json()["success"] is True
    assert alice.get(f"/admin/services/{name}.GPServer").json()["code"] == 404
    assert alice.get("/admin/services").json()["total"] == 0
    gp = alice.get(f"/rest/services/{name}/GPServer").json()
    assert gp["error"]["code"] == 404 and gp["error"]["message"] == f"Service {name}/GPServer not found"


def test_others_cannot_edit_or_delete_a_tool(alice, bob):
    name = publish(alice, alice.add_notebook("webtool.ipynb"))["itemId"]
    assert bob.post(f"/admin/services/{name}.GPServer/edit").json()["code"] == 404
    assert bob.post(f"/admin/services/{name}.GPServer/delete").json()["code"] == 404
    assert alice.get(f"/admin/services/{name}.GPServer").json()["serviceName"] == name
