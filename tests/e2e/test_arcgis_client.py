"""The Goal script, driven by Esri's own ``arcgis`` client against the real server.

Login three ways (OAuth implicit, generateToken, a given token), find the notebook server, list runtimes,
upload a notebook item with gis.content.add (whole, and in parts for a large file), read and download it,
execute_notebook(future=True) to COMPLETED, list jobs, see FAILED, cancel a running job.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NOTEBOOKS, notebook_bytes
from tests.e2e.conftest import USER_PASSWORD, Server, Session
from tests.waiting import eventually

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
if os.environ.get("CI", "").lower() == "true":  # CI installs the test extra: a missing client is a failure
    import arcgis.gis as arcgis_gis
else:
    arcgis_gis = pytest.importorskip("arcgis.gis")


@pytest.fixture(autouse=True)
def _quiet_client() -> Iterator[None]:
    # The client warns about verify_cert, its own deprecations and unclosed files; not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _gis(server: Server, **kwargs):
    return arcgis_gis.GIS(server.url, verify_cert=False, **kwargs)


def _add(gis, path: Path, **properties: object):
    """Upload a notebook the way a user of the client does (item properties as it sends them)."""
    item_properties = {"type": "Notebook", "title": path.stem, "tags": ["nbjobs", "e2e"], **properties}
    item = gis.content.add(item_properties=item_properties, data=str(path))
    assert item is not None
    return item


def test_login_three_ways(server: Server, alice: Session):
    assert _gis(server, username="alice", password=USER_PASSWORD).users.me.username == "alice"  # OAuth
    assert _gis(server, token=alice.token).users.me.username == "alice"
    from arcgis.auth import EsriGenTokenAuth

    auth = EsriGenTokenAuth(
        token_url=f"{server.url}/sharing/rest/generateToken",
        referer="http",
        username="alice",
        password=USER_PASSWORD,
        verify_cert=False,
    )
    assert auth.token


def test_goal_script(server: Server, alice: Session):
    gis = _gis(server, username="alice", password=USER_PASSWORD)
    nbs = gis.notebook_server
    assert len(nbs) == 1
    manager = nbs[0].notebooks
    assert [r.properties.name for r in manager.runtimes]
    item = gis.content.get(_add(gis, NOTEBOOKS / "parameters.ipynb", description="the goal script").id)
    assert (item.type, item.title, item.tags) == ("Notebook", "parameters", ["nbjobs", "e2e"])
    assert item.description == "the goal script"
    result = manager.execute_notebook(item, parameters={"name": "Ada", "count": 7}, future=True).result()
    assert result["status"] == "COMPLETED", result
    assert result["inputs"]["notebookParameters"] == {"name": "Ada", "count": 7}
    jobs = nbs[0].system.jobs
    assert result["jobId"] in [j["jobId"] for j in jobs]
    failed = manager.execute_notebook(_add(gis, NOTEBOOKS / "raises.ipynb"), future=True).result()
    assert failed["status"] == "FAILED"
    assert "boom" in failed["results"]["message"]


def test_get_data_and_download(server: Server, alice: Session, tmp_path: Path):
    gis = _gis(server, token=alice.token)
    item = gis.content.get(_add(gis, NOTEBOOKS / "trivial.ipynb").id)
    assert item.get_data() == json.loads(notebook_bytes("trivial.ipynb"))
    saved = Path(item.download(save_path=str(tmp_path)))
    assert saved.read_bytes() == notebook_bytes("trivial.ipynb")


def test_a_large_notebook_is_uploaded_in_parts(server: Server, alice: Session, tmp_path: Path):
    # The client switches to addItem multipart=true + addPart + commit + status above 7 MiB.
    notebook = json.loads(notebook_bytes("trivial.ipynb"))
    notebook["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "x" * (9 * 1024 * 1024)})
    path = tmp_path / "large.ipynb"
    path.write_text(json.dumps(notebook))
    gis = _gis(server, token=alice.token)
    item = _add(gis, path, snippet="in parts")
    assert (item.title, item.snippet, item.size) == ("large", "in parts", path.stat().st_size)
    assert gis.content.get(item.id).get_data() == notebook
    assert Path(item.download(save_path=str(tmp_path / "out"))).read_bytes() == path.read_bytes()
    listed = alice.get(f"/sharing/rest/content/users/{alice.username}")["items"]
    assert [i["id"] for i in listed].count(item.id) == 1


def test_cancel_with_client(server: Server, alice: Session):
    gis = _gis(server, token=alice.token)
    manager = gis.notebook_server[0].notebooks
    started = manager.execute_notebook(gis.content.get(alice.add_notebook("sleeps.ipynb")))
    job_id = started["jobId"]
    alice.wait(job_id, {"EXECUTING"})

    def in_the_sleeping_cell() -> bool:
        job = alice.get(f"/admin/notebooks/jobs/{job_id}")
        return job["customAttributes"]["executeNotebookProgress"]["percent"] >= 33

    eventually(in_the_sleeping_cell, what="the job to reach its sleeping cell")
    answer = gis._con.post(f"{server.url}/admin/notebooks/jobs/{job_id}/cancel", {"f": "json"})
    assert answer == {"status": "success"}
    assert alice.wait(job_id, {"CANCELLED", "FAILED", "COMPLETED"}, timeout=60)["status"] == "CANCELLED"


def test_open_notebook_and_close_it_both_ways(server: Server, alice: Session):
    """open_notebook(item) to COMPLETED; the notebook in NotebookManager.list() closes with
    Notebook.close(); a second one, found through system.containers, with ContainerNotebook.close();
    then the container's logs, statistics and shutdown."""
    gis = _gis(server, token=alice.token)
    nbs = gis.notebook_server[0]
    item = _add(gis, NOTEBOOKS / "trivial.ipynb")
    job = nbs.notebooks.open_notebook(item.id)
    assert job["status"] == "COMPLETED", job
    assert (
        job["results"]["notebookUrl"]
        == f"/notebooks/{job['results']['containerId']}/notebooks/{item.id}.ipynb"
    )
    [notebook] = nbs.notebooks.list()
    assert notebook.properties["itemId"] == item.id
    assert notebook.close() is True
    assert alice.get("/admin/notebooks")["total"] == 0  # (the client caches its list)

    other = _add(gis, NOTEBOOKS / "trivial.ipynb")
    assert nbs.notebooks.open_notebook(other.id)["status"] == "COMPLETED"
    [container] = nbs.system.containers
    [in_container] = container.notebooks
    assert in_container.properties["itemId"] == other.id
    assert any("Jupyter Server" in line for line in container.logs(200))
    assert container.statistics["numberOfNotebooks"] == 1 and container.statistics["memoryUsageBytes"] > 0
    assert in_container.close() is True
    assert nbs.system.containers == []  # the last notebook closed stops the server

    assert nbs.notebooks.open_notebook(other.id)["status"] == "COMPLETED"
    [container] = nbs.system.containers
    assert container.shutdown() is True
    assert nbs.system.containers == [] and alice.get("/admin/notebooks")["total"] == 0
