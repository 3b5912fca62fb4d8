"""The runtimes resource over HTTP: ArcGIS shapes, who may read and change, and every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nbjobs.models.runtimes import DEFAULT_RUNTIME

DEFAULT_ID = DEFAULT_RUNTIME.runtime_id
ARCGIS_KEYS = {
    "id", "name", "version", "imageId", "containerType", "maxCpu", "maxMemory", "maxMemoryUnit",
    "maxSwapMemory", "maxSwapMemoryUnit", "disabled", "requiresAdvancedPrivileges", "esriProvidedRuntime",
}  # fmt: skip


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A real interpreter without ipykernel: a venv made --without-pip."""
    root = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    return str(root / "bin" / "python")


def register(caller, **fields) -> dict:
    return caller.post("/admin/notebooks/runtimes/register", **fields).json()


def test_list_has_the_default_in_the_arcgis_shape(alice):
    answer = alice.get("/admin/notebooks/runtimes").json()
    assert answer["currentRuntimeVersion"] == "11.0"
    [runtime] = answer["runtimes"]
    assert set(runtime) >= ARCGIS_KEYS
    assert runtime["id"] == DEFAULT_ID and runtime["name"] == "Python 3 Standard"
    assert runtime["imageId"] == "python3" and runtime["containerType"] == "kernelspec"
    assert runtime["esriProvidedRuntime"] is True and runtime["disabled"] is False
    assert runtime["python"] == sys.executable
    assert alice.get(f"/admin/notebooks/runtimes/{DEFAULT_ID}").json() == runtime


def test_register_update_unregister(admin, alice, bare_python, nb):
    answer = register(
        admin,
        name="Bare",
        python=bare_python,
        maxCpu="1",
        maxMemory="2",
        maxMemoryUnit="g",
        requiresAdvancedPrivileges="true",
        containerType="docker",  # what the ArcGIS client sends; ignored here
    )
    runtime_id = answer["notebookRuntime"]["id"]
    view = alice.get(f"/admin/notebooks/runtimes/{runtime_id}").json()
    assert (view["name"], view["python"], view["maxCpu"], view["maxMemory"]) == (
        "Bare",
        bare_python,
        1.0,
        2.0,
    )
    assert view["imageId"] == "nbjobs-" + runtime_id[:12] and view["requiresAdvancedPrivileges"] is True
    assert view["esriProvidedRuntime"] is False
    kernel = nb.runtimes.kernels / view["imageId"] / "kernel.json"
    assert kernel.exists()

    updated = admin.post(f"/admin/notebooks/runtimes/{runtime_id}/update", maxMemory="512", maxMemoryUnit="m")
    assert updated.json() == {"status": "success"}
    view = alice.get(f"/admin/notebooks/runtimes/{runtime_id}").json()
    assert (view["maxMemory"], view["maxMemoryUnit"], view["maxCpu"]) == (512.0, "m", 1.0)
    assert [r["id"] for r in alice.get("/admin/notebooks/runtimes").json()["runtimes"]] == [
        DEFAULT_ID,
        runtime_id,
    ]

    assert admin.post(f"/admin/notebooks/runtimes/{runtime_id}/unregister").json() == {"status": "success"}
    assert alice.get(f"/admin/notebooks/runtimes/{runtime_id}").json()["code"] == 404
    assert not kernel.exists()


def test_register_accepts_multipart_like_the_arcgis_client(admin, bare_python):
    answer = admin.post(
        "/admin/notebooks/runtimes/register",
        files={"manifestFile": ("manifest.json", b"{}", "application/json")},
        name="Multipart",
        python=bare_python,
    ).json()
    assert len(answer["notebookRuntime"]["id"]) == 32


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"python": "{bare}"}, "needs a name"),
        ({"name": "python 3 standard", "python": "{bare}"}, "already exists"),
        ({"name": "X"}, "imageId"),
        ({"name": "X", "python": "/no/such/bin/python"}, "does not exist"),
        ({"name": "X", "python": "relative/python"}, "does not exist"),
        ({"name": "X", "imageId": "no-such-kernel"}, "no kernelspec named 'no-such-kernel'"),
        ({"name": "X", "python": "{bare}", "maxMemory": "-1"}, "maxMemory"),
        ({"name": "X", "python": "{bare}", "maxMemory": "lots"}, "expected a number"),
        ({"name": "X", "python": "{bare}", "maxCpu": "inf"}, "maxCpu"),
        ({"name": "X", "python": "{bare}", "maxMemoryUnit": "t"}, "b, k, m, g"),
        ({"name": "X", "python": "{bare}", "maxOutputBytes": "1.5"}, "maxOutputBytes"),
        ({"name": "X", "python": "{bare}", "requiresAdvancedPrivileges": "maybe"}, "true or false"),
    ],
)
def test_register_rejects_bad_input(admin, alice, bare_python, fields, message):
    fields = {k: v.format(bare=bare_python) for k, v in fields.items()}
    answer = register(admin, **fields)
    assert answer["status"] == "error" and answer["code"] == 400, answer
    assert message in " ".join(answer["messages"])
    assert len(alice.get("/admin/notebooks/runtimes").json()["runtimes"]) == 1


def test_update_rejects_bad_input(admin, bare_python):
    runtime_id = register(admin, name="Bare", python=bare_python)["notebookRuntime"]["id"]
    bad = admin.post(f"/admin/notebooks/runtimes/{runtime_id}/update", maxCpu="-2").json()
    assert bad["code"] == 400 and "maxCpu" in bad["messages"][0]
    taken = admin.post(f"/admin/notebooks/runtimes/{runtime_id}/update", name="Python 3 Standard").json()
    assert taken["code"] == 400
    assert admin.post("/admin/notebooks/runtimes/nope/update", maxCpu="1").json()["code"] == 404
    disable = admin.post(f"/admin/notebooks/runtimes/{DEFAULT_ID}/update", disabled="true").json()
    assert disable["code"] == 400 and "cannot be disabled" in disable["messages"][0]


def test_the_default_cannot_be_unregistered(admin):
    answer = admin.post(f"/admin/notebooks/runtimes/{DEFAULT_ID}/unregister").json()
    assert answer["code"] == 400 and "cannot be unregistered" in answer["messages"][0]
    assert admin.post("/admin/notebooks/runtimes/nope/unregister").json()["code"] == 404


def test_restore_keeps_only_the_default(admin, alice, bare_python):
    register(admin, name="A", python=bare_python)
    register(admin, name="B", python=bare_python)
    admin.post(f"/admin/notebooks/runtimes/{DEFAULT_ID}/update", maxCpu="3")
    assert admin.post("/admin/notebooks/runtimes/restore").json() == {"status": "success"}
    [runtime] = alice.get("/admin/notebooks/runtimes").json()["runtimes"]
    assert runtime["id"] == DEFAULT_ID and runtime["maxCpu"] == 0


def test_validate_runtimes_succeeds_then_reports_the_broken_ones(admin, bare_python, tmp_path: Path):
    ok = admin.post("/admin/notebooks/runtimes/validateRuntimes").json()
    assert ok["status"] == "success" and ok["runtimes"][0]["id"] == DEFAULT_ID
    register(admin, name="Bare", python=bare_python)
    gone = tmp_path / "gone-venv" / "bin" / "python"
    gone.parent.mkdir(parents=True)
    gone.symlink_to(bare_python)
    register(admin, name="Gone", python=str(gone))
    gone.unlink()  # the environment was deleted after registration
    answer = admin.post("/admin/notebooks/runtimes/validateRuntimes").json()
    assert answer["status"] == "error" and answer["code"] == 500
    text = "\n".join(answer["messages"])
    assert "Runtime 'Bare'" in text and "cannot import ipykernel" in text
    assert "Runtime 'Gone'" in text and "does not exist" in text
    assert "Python 3 Standard" not in text


def test_manifest_lists_the_libraries_of_that_environment(alice, admin, bare_python):
    libraries = alice.get(f"/admin/notebooks/runtimes/{DEFAULT_ID}/manifest").json()["libraries"]
    names = {lib["name"].lower() for lib in libraries}
    assert {"ipykernel", "nbjobs"} <= names
    assert set(libraries[0]) == {
        "name", "version", "build_string", "dist_name", "channel", "platform", "base_url", "build_number"
    }  # fmt: skip
    runtime_id = register(admin, name="Bare", python=bare_python)["notebookRuntime"]["id"]
    bare = {
        lib["name"].lower()
        for lib in alice.get(f"/admin/notebooks/runtimes/{runtime_id}/manifest").json()["libraries"]
    }
    assert "ipykernel" not in bare and "nbjobs" not in bare


def test_unknown_runtime_is_404(alice):
    for path in ("nope", "nope/manifest"):
        answer = alice.get(f"/admin/notebooks/runtimes/{path}").json()
        assert answer["code"] == 404 and answer["messages"] == ["Runtime 'nope' does not exist."]


def test_reading_needs_the_notebook_privilege_and_changing_needs_an_admin(viewer, alice, bare_python):
    assert viewer.get("/admin/notebooks/runtimes").json()["code"] == 403
    assert viewer.get(f"/admin/notebooks/runtimes/{DEFAULT_ID}/manifest").json()["code"] == 403
    assert register(alice, name="Mine", python=bare_python)["code"] == 403
    for op in ("restore", "validateRuntimes", f"{DEFAULT_ID}/update", f"{DEFAULT_ID}/unregister"):
        assert alice.post(f"/admin/notebooks/runtimes/{op}").json()["code"] == 403, op


def test_changing_operations_are_post_only(admin):
    for op in ("register", "restore", f"{DEFAULT_ID}/update", f"{DEFAULT_ID}/unregister"):
        assert admin.get(f"/admin/notebooks/runtimes/{op}").json()["code"] in (404, 405), op
    assert len(admin.get("/admin/notebooks/runtimes").json()["runtimes"]) == 1


def test_html_page_offers_the_operations(admin, client):
    page = client.get(f"/arcgis/admin/notebooks/runtimes?token={admin.token}").text
    assert "register" in page and "validateRuntimes" in page and "Python 3 Standard" in page


# -- start method and preload -----------------------------------------------------------------------


def view_of(caller, runtime_id: str) -> dict:
    return caller.get(f"/admin/notebooks/runtimes/{runtime_id}").json()


def test_the_default_view_says_fork_no_preload_and_no_status_yet(alice):
    view = view_of(alice, DEFAULT_ID)
    assert (view["preload"], view["startMethod"], view["startStatus"]) == ([], "fork", None)


def test_preload_and_start_method_as_a_json_list_or_commas(admin, alice, bare_python, nb, clock):
    answer = register(
        admin, name="Geo", python=bare_python, preload='["pandas", "numpy", "pandas"]', startMethod="Spawn"
    )
    runtime_id = answer["notebookRuntime"]["id"]
    view = view_of(alice, runtime_id)
    assert (view["preload"], view["startMethod"], view["startStatus"]) == (["pandas", "numpy"], "spawn", None)
    assert nb.runtimes.get(runtime_id).preload == ("pandas", "numpy")

    clock.advance(10)
    nb.runtimes.record_start_status(runtime_id, "spawn")
    assert view_of(alice, runtime_id)["startStatus"] == {
        "state": "spawn",
        "reason": "",
        "updated": nb.clock(),
    }
    same = admin.post(
        f"/admin/notebooks/runtimes/{runtime_id}/update", maxCpu="1", preload="", startMethod=""
    )
    assert same.json() == {"status": "success"}  # empty fields (an html form) leave both as they are
    view = view_of(alice, runtime_id)
    assert (view["preload"], view["startMethod"], view["startStatus"]["state"]) == (
        ["pandas", "numpy"],
        "spawn",
        "spawn",
    )

    update = f"/admin/notebooks/runtimes/{runtime_id}/update"
    assert admin.post(update, preload=" os.path, json ,, ", startMethod="FORK").json() == {
        "status": "success"
    }
    view = view_of(alice, runtime_id)
    assert (view["preload"], view["startMethod"], view["startStatus"]) == (["os.path", "json"], "fork", None)

    nb.runtimes.record_start_status(runtime_id, "fallback", "json starts a thread")
    fallback = view_of(alice, runtime_id)["startStatus"]
    assert (fallback["state"], fallback["reason"]) == ("fallback", "json starts a thread")
    assert admin.post(update, preload="[]").json() == {"status": "success"}
    view = view_of(alice, runtime_id)
    assert (view["preload"], view["startMethod"], view["startStatus"]) == ([], "fork", None)
    assert [r["preload"] for r in alice.get("/admin/notebooks/runtimes").json()["runtimes"]] == [[], []]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"preload": '{"pandas": 1}'}, "Invalid value for 'preload': expected a JSON array of module names"),
        ({"preload": '"pandas"'}, "Invalid value for 'preload': expected a JSON array of module names"),
        ({"preload": "[1, 2]"}, "expected a JSON array of module names (strings)"),
        ({"preload": '["pandas", null]'}, "expected a JSON array of module names"),
        ({"preload": '[["pandas"]]'}, "expected a JSON array of module names"),
        ({"preload": '["pandas"'}, "Invalid value for 'preload': not valid JSON"),
        ({"preload": "[" * 5000 + "]" * 5000}, "Invalid value for 'preload'"),
        ({"preload": '["my-module"]'}, "'my-module' is not a Python module name"),
        ({"preload": '[""]'}, "'' is not a Python module name"),
        ({"preload": "pandas,1abc"}, "'1abc' is not a Python module name"),
        ({"preload": "pandas numpy"}, "'pandas numpy' is not a Python module name"),
        ({"preload": ".hidden"}, "'.hidden' is not a Python module name"),
        ({"preload": ",".join(f"m{i}" for i in range(33))}, "33 modules (at most 32)"),
        (
            {"startMethod": "forkserver"},
            "Invalid value for 'startMethod': 'forkserver' (expected one of fork, spawn)",
        ),
    ],
)
def test_bad_preload_or_start_method_is_an_error_envelope(admin, alice, bare_python, fields, message):
    answer = register(admin, name="X", python=bare_python, **fields)
    assert answer["status"] == "error" and answer["code"] == 400, answer
    assert message in " ".join(answer["messages"])
    assert len(alice.get("/admin/notebooks/runtimes").json()["runtimes"]) == 1
    before = view_of(alice, DEFAULT_ID)
    answer = admin.post(f"/admin/notebooks/runtimes/{DEFAULT_ID}/update", **fields).json()
    assert answer["status"] == "error" and answer["code"] == 400, answer
    assert message in " ".join(answer["messages"])
    assert view_of(alice, DEFAULT_ID) == before


def test_only_an_admin_sets_preload_and_start_method(alice, viewer, bare_python):
    assert register(alice, name="Mine", python=bare_python, preload="pandas")["code"] == 403
    for caller in (alice, viewer):
        answer = caller.post(
            f"/admin/notebooks/runtimes/{DEFAULT_ID}/update", preload='["pandas"]', startMethod="spawn"
        ).json()
        assert answer["code"] == 403
    view = view_of(alice, DEFAULT_ID)
    assert (view["preload"], view["startMethod"]) == ([], "fork")
    assert len(alice.get("/admin/notebooks/runtimes").json()["runtimes"]) == 1


def test_html_forms_offer_preload_and_start_method(admin, client):
    for path in ("", f"/{DEFAULT_ID}"):
        page = client.get(f"/arcgis/admin/notebooks/runtimes{path}?token={admin.token}").text
        assert "name='preload'" in page and "name='startMethod'" in page, path


# -- executeNotebook and runtimes -------------------------------------------------------------------


def test_execute_records_the_chosen_runtime(admin, alice, bare_python, nb):
    item_id = alice.add_notebook()
    runtime_id = register(admin, name="Bare", python=bare_python)["notebookRuntime"]["id"]
    job_id = alice.execute(item_id, notebookRuntimeId=runtime_id)["jobId"]
    job = alice.get(f"/admin/notebooks/jobs/{job_id}").json()
    assert (job["notebookRuntimeId"], job["notebookRuntimeName"]) == (runtime_id, "Bare")
    default_job = alice.get(f"/admin/notebooks/jobs/{alice.execute(item_id)['jobId']}").json()
    assert default_job["notebookRuntimeId"] == DEFAULT_ID
    admin.post(f"/admin/notebooks/runtimes/{runtime_id}/unregister")  # history keeps its identity
    assert alice.get(f"/admin/notebooks/jobs/{job_id}").json()["notebookRuntimeName"] == "Bare"
    assert nb.store.count() == 2


def test_execute_on_a_bad_runtime_is_a_clear_error_and_creates_nothing(admin, alice, bare_python, nb):
    item_id = alice.add_notebook()
    unknown = alice.execute(item_id, notebookRuntimeId="f" * 32)
    assert unknown["code"] == 400 and unknown["messages"] == [f"Runtime '{'f' * 32}' does not exist."]
    off = register(admin, name="Off", python=bare_python, disabled="true")["notebookRuntime"]["id"]
    disabled = alice.execute(item_id, notebookRuntimeId=off)
    assert disabled["code"] == 400 and disabled["messages"] == [f"Runtime 'Off' ({off}) is disabled."]
    adv = register(admin, name="Adv", python=bare_python, requiresAdvancedPrivileges="true")[
        "notebookRuntime"
    ]["id"]
    denied = alice.execute(item_id, notebookRuntimeId=adv)
    assert denied["code"] == 403 and "premium:publisher:createAdvancedNotebooks" in " ".join(
        denied["messages"]
    )
    assert nb.store.count() == 0
    assert admin.execute(admin.add_notebook(), notebookRuntimeId=adv)["status"] == "success"
