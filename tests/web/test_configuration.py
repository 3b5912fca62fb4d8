"""notebooks/configuration and system/properties: read, validated updates, and their effect on jobs."""

from __future__ import annotations

import json

import pytest

from nbjobs.models.jobs import JobInputs
from nbjobs.service.jobs.service import HOUR_MS


def test_configuration_reads_the_arcgis_keys(admin):
    config = admin.get("/admin/notebooks/configuration").json()
    assert config["maxExecuteNotebookTimeMinutes"] == 120
    assert config["asyncJobsCleanAgeHours"] == 6
    assert {"webSocketSize", "idleNotebookThreshold", "maxExecuteNotebookContainersPerNode"} <= set(config)


def test_update_merges_and_is_seen_by_both_families(admin, nb):
    answer = admin.post("/admin/notebooks/configuration/update",
                        configJSON=json.dumps({"maxExecuteNotebookTimeMinutes": 30})).json()  # fmt: skip
    assert answer == {"status": "success"}
    admin.post(
        "/admin/notebooks/configuration/update", asyncJobsCleanAgeHours="12"
    )  # one field as a form value
    config = admin.get("/admin/notebooks/configuration").json()
    assert config["maxExecuteNotebookTimeMinutes"] == 30 and config["asyncJobsCleanAgeHours"] == 12
    props = admin.get("/admin/system/properties").json()
    assert props["asyncJobsCleanupAgeHours"] == 12 and props["maxExecuteNotebookTimeMinutes"] == 30
    assert nb.config.max_execute_minutes() == 30 and nb.supervisor.max_minutes() == 30  # jobs use it


def test_system_properties_update_replaces_the_whole_set(admin):
    admin.post("/admin/notebooks/configuration/update", configJSON='{"maxExecuteNotebookTimeMinutes": 30}')
    admin.post("/admin/system/properties/update", properties='{"asyncJobsCleanupAgeHours": 24}')
    props = admin.get("/admin/system/properties").json()
    assert props["asyncJobsCleanupAgeHours"] == 24
    assert props["maxExecuteNotebookTimeMinutes"] == 120  # not given: back to the default, as ArcGIS does


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"asyncJobsCleanAgeHours": 5}', "at least 6"),
        ('{"maxExecuteNotebookTimeMinutes": 10}', "at least 15"),
        ('{"maxExecuteNotebookTimeMinutes": "soon"}', "must be a number"),
        ('{"asyncJobsCleanAgeHours": 6.5}', "whole number"),
        ('{"allowHiddenFileDownloads": "maybe"}', "true or false"),
        ('{"noSuchThing": 1}', "Unknown configuration property"),
        ('{"maxExecuteNotebookContainersPerNode": 99}', "read-only"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(admin, body, words):
    before = admin.get("/admin/notebooks/configuration").json()
    answer = admin.post("/admin/notebooks/configuration/update", configJSON=body).json()
    assert answer["status"] == "error" and words in answer["messages"][0], answer
    assert admin.get("/admin/notebooks/configuration").json() == before


def test_only_administrators_change_the_configuration(alice):
    answer = alice.post("/admin/notebooks/configuration/update", configJSON='{"webSocketSize": 32}').json()
    assert answer["status"] == "error" and answer["code"] == 403
    assert alice.get("/admin/notebooks/configuration").json()["webSocketSize"] == 16


def test_a_client_sending_back_what_it_read_is_accepted(admin):
    props = admin.get("/admin/system/properties").json()
    props["asyncJobsCleanupAgeHours"] = 8
    assert (
        admin.post("/admin/system/properties/update", properties=json.dumps(props)).json()["status"]
        == "success"
    )
    assert admin.get("/admin/system/properties").json()["asyncJobsCleanupAgeHours"] == 8


def test_the_clean_age_drives_the_purge(admin, nb, clock):
    admin.post("/admin/notebooks/configuration/update", configJSON='{"asyncJobsCleanAgeHours": 24}')
    from nbjobs.models.accounts import Principal

    job = nb.service.submit(Principal("admin", is_admin=True), b"{}", inputs=JobInputs())
    nb.service.cancel(Principal("admin", is_admin=True), job.job_id)
    clock.advance(7 * HOUR_MS)
    assert nb.service.purge_expired() == 0  # the default 6 h would have purged it
    clock.advance(18 * HOUR_MS)
    assert nb.service.purge_expired() == 1
