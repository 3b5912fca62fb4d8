"""Esri's own ``arcgis`` client drives the logs resource of the real server: settings (read, and set the
way its docstring shows), query (a failed job's WARNING, time bounds, paging until ``hasMore`` ends),
clean."""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import ADMIN_PASSWORD, Server, Session
from tests.waiting import eventually

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
if os.environ.get("CI", "").lower() == "true":
    import arcgis.gis as arcgis_gis
else:
    arcgis_gis = pytest.importorskip("arcgis.gis")


@pytest.fixture(autouse=True)
def _quiet_client() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def logs(server: Server):
    gis = arcgis_gis.GIS(server.url, username="admin", password=ADMIN_PASSWORD, verify_cert=False)
    manager = gis.notebook_server[0].logs
    yield manager
    manager.settings = {"logLevel": "WARNING"}  # as the session's other tests expect


def test_the_client_reads_and_sets_log_settings(logs):
    assert logs.settings["settings"]["logLevel"] == "WARNING"
    assert logs.settings["maxLogFileAge"] == 90
    settings = dict(logs.settings)  # the client's documented way
    settings["logLevel"] = "INFO"
    logs.settings = settings
    assert logs.settings["settings"]["logLevel"] == "INFO"
    assert logs.properties["operations"] == ["query", "clean"]


def test_the_client_finds_a_failed_jobs_warning_and_cleans(logs, alice: Session):
    item = alice.add_notebook("raises.ipynb")
    job_id = alice.post("/admin/notebooks/executeNotebook", itemId=item)["jobId"]
    assert alice.wait(job_id, {"FAILED"})["status"] == "FAILED"

    def shipped() -> list:  # the server ships its log queue every second
        return [m for m in logs.query(level="WARNING")["logMessages"] if m["jobId"] == job_id]

    found = eventually(shipped, what="the job's warning in the logs")
    assert [m["type"] for m in found] == ["WARNING"] and "FAILED (cell_error)" in found[0]["message"]
    assert found[0]["user"] == "alice"
    # the client sends datetimes as "%Y-%m-%dT%H:%M:%S"; start_time is the newest bound
    past = logs.query(start_time=dt.datetime(2001, 1, 1), level="DEBUG")
    assert past["logMessages"] == [] and past["hasMore"] is False
    assert logs.clean() is True
    assert [m for m in logs.query(level="WARNING")["logMessages"] if m["jobId"] == job_id] == []
