"""The Goal script, driven by Esri's own ``arcgis`` client against the real server.

Login three ways (OAuth implicit, generateToken, a given token), find the notebook server, list runtimes,
read an item, execute_notebook(future=True) to COMPLETED, list jobs, see FAILED, cancel a running job.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import USER_PASSWORD, Server, Session

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
    item = gis.content.get(alice.add_notebook("parameters.ipynb"))
    assert item.type == "Notebook"
    result = manager.execute_notebook(item, parameters={"name": "Ada", "count": 7}, future=True).result()
    assert result["status"] == "COMPLETED", result
    assert result["inputs"]["notebookParameters"] == {"name": "Ada", "count": 7}
    jobs = nbs[0].system.jobs
    assert result["jobId"] in [j["jobId"] for j in jobs]
    failed = manager.execute_notebook(
        gis.content.get(alice.add_notebook("raises.ipynb")), future=True
    ).result()
    assert failed["status"] == "FAILED"
    assert "boom" in failed["results"]["message"]


def test_cancel_with_client(server: Server, alice: Session):
    gis = _gis(server, token=alice.token)
    manager = gis.notebook_server[0].notebooks
    started = manager.execute_notebook(gis.content.get(alice.add_notebook("sleeps.ipynb")))
    job_id = started["jobId"]
    alice.wait(job_id, {"EXECUTING"})
    time.sleep(1)
    answer = gis._con.post(f"{server.url}/admin/notebooks/jobs/{job_id}/cancel", {"f": "json"})
    assert answer == {"status": "success"}
    assert alice.wait(job_id, {"CANCELLED", "FAILED", "COMPLETED"}, timeout=60)["status"] == "CANCELLED"
