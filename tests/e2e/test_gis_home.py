"""Inside a job, GIS("home") of the ArcGIS API for Python reaches this server as the job's owner."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Session

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
pytest.importorskip("arcgis")


def test_gis_home_signs_in_as_the_jobs_owner(alice: Session):
    item = alice.add_notebook("gis_home.ipynb")
    answer = alice.post("/admin/notebooks/executeNotebook", itemId=item, updatePortalItem="false")
    job = alice.wait(answer["jobId"], {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED", job
    output = alice.http.get(
        f"{alice.base}/admin/notebooks/jobs/{answer['jobId']}/output", params={"token": alice.token}
    ).json()
    stdout = [o for c in output["cells"] for o in c.get("outputs", []) if o.get("name") == "stdout"]
    assert "".join("".join(o["text"]) for o in stdout).strip() == "alice", json.dumps(output)[:2000]
