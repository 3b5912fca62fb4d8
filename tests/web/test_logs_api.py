"""``/admin/logs`` over the real app: query (and each bad input's envelope), settings, edit, clean, and the
request id on responses and on the access lines the logs resource keeps."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from nbjobs.roots.server import Server
from nbjobs.telemetry.logs import job_context


@pytest.fixture
def shipping(nb: Server) -> Iterator[Server]:
    """The server's store handler on the root logger, as ``start`` attaches it."""
    nb.log_handler.attach()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    yield nb
    root.setLevel(level)
    nb.log_handler.detach()


def ship(nb: Server) -> None:
    nb.housekeeper.run_now("ship-logs")


def test_a_jobs_warning_is_found_by_job_id_with_its_context(admin, shipping):
    log = logging.getLogger("nbjobs.execution.supervisor")
    with job_context("jfeedface", "alice", "rt-std"):
        log.warning("job jfeedface attempt 1 FAILED (cell_error): boom")
    log.warning("something else")
    log.info("below the default WARNING: not kept")
    ship(shipping)
    answer = admin.get("/admin/logs/query", jobId="jfeedface").json()
    assert answer["hasMore"] is False
    (m,) = answer["logMessages"]
    assert m["type"] == "WARNING" and m["message"].endswith("FAILED (cell_error): boom")
    assert (m["jobId"], m["user"], m["runtime"], m["source"]) == (
        "jfeedface",
        "alice",
        "rt-std",
        "nbjobs.execution.supervisor",
    )
    everything = admin.get("/admin/logs/query", level="DEBUG").json()["logMessages"]
    assert [x["message"] for x in everything] == ["something else", m["message"]]  # newest first


def test_responses_carry_a_request_id_and_a_sane_incoming_one_is_kept(admin, client):
    fresh = admin.get("/admin/logs/settings")
    assert len(fresh.headers["X-Request-Id"]) == 32
    kept = client.get("/arcgis/admin", params={"f": "json"}, headers={"X-Request-Id": "proxy-42.a:b"})
    assert kept.headers["X-Request-Id"] == "proxy-42.a:b"
    insane = client.get("/arcgis/admin", params={"f": "json"}, headers={"X-Request-Id": "a b<script>"})
    assert insane.headers["X-Request-Id"] != "a b<script>" and len(insane.headers["X-Request-Id"]) == 32
    missing = client.get("/arcgis/nothing/here")
    assert missing.headers["X-Request-Id"]  # an unknown path too


def test_access_lines_carry_method_route_status_and_the_request_id(admin, shipping):
    assert admin.post("/admin/logs/settings/edit", logLevel="INFO").json()["status"] == "success"
    response = admin.get("/admin/notebooks/jobs/jnothere")
    ship(shipping)
    lines = admin.get("/admin/logs/query", level="INFO", source="nbjobs.access").json()["logMessages"]
    (line,) = [x for x in lines if x["requestId"] == response.headers["X-Request-Id"]]
    assert line["message"].startswith("GET /admin/notebooks/jobs/{job_id} 200 ")
    assert line["message"].endswith("ms")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"startTime": "1000", "endTime": "2000"},
            "Invalid time range: endTime (2000) is after startTime (1000).",
        ),
        (
            {"startTime": "last tuesday"},
            "Invalid value for 'startTime': 'last tuesday' (expected epoch milliseconds",
        ),
        ({"level": "LOUD"}, "Invalid value for 'level': 'LOUD' (expected one of SEVERE"),
        ({"pageSize": "0"}, "Invalid value for 'pageSize': 0 (must be between 1 and 10000)."),
        ({"pageSize": "many"}, "Invalid value for 'pageSize': 'many' (expected an integer)."),
        ({"filter": "{not json"}, "Invalid value for 'filter': not valid JSON."),
        ({"filter": '{"codes": [1]}'}, "Invalid value for 'filter.codes'"),
        (
            {"sinceServerStart": "maybe"},
            "Invalid value for 'sinceServerStart': 'maybe' (expected true or false).",
        ),
    ],
)
def test_each_bad_query_is_a_400_in_the_admin_envelope(admin, params, message):
    answer = admin.get("/admin/logs/query", **params).json()
    assert answer["status"] == "error" and answer["code"] == 400, answer
    assert answer["messages"][0].startswith(message), answer


def test_the_esri_client_query_shape_is_accepted(admin, shipping):
    logging.getLogger("nbjobs.x").error("severe one")
    ship(shipping)
    answer = admin.get(
        "/admin/logs/query",
        sinceServerStart="false",
        pageSize="10000",
        filter='{"services": "*", "machines": "*", "server": "*"}',
        level="SEVERE",
        startTime="2999-01-01T00:00:00",
    ).json()
    assert [m["type"] for m in answer["logMessages"]] == ["SEVERE"]
    assert set(answer) == {"hasMore", "startTime", "endTime", "logMessages"}


def test_settings_read_edit_in_both_shapes_and_refuse_bad_values(admin):
    got = admin.get("/admin/logs/settings").json()
    assert got["settings"] == {"logDir": "", "logLevel": "WARNING", "maxLogFileAge": 90}
    assert (got["logLevel"], got["maxLogFileAge"]) == ("WARNING", 90)
    edited = admin.post("/admin/logs/settings/edit", logLevel="info", maxLogFileAge="30").json()
    assert edited["status"] == "success" and edited["settings"]["logLevel"] == "INFO"
    # the Esri client posts what it read back, with the changed value in the nested object
    nested = admin.post(
        "/admin/logs/settings/edit",
        settings='{"logDir": "", "logLevel": "SEVERE", "maxLogFileAge": 30}',
        logLevel="INFO",
        maxLogFileAge="30",
        logDir="",
    ).json()
    assert nested["settings"]["logLevel"] == "SEVERE"
    bad = admin.post("/admin/logs/settings/edit", maxLogFileAge="-1").json()
    assert bad["code"] == 400 and "maxLogFileAge" in bad["messages"][0]
    assert admin.get("/admin/logs/settings").json()["settings"]["maxLogFileAge"] == 30


def test_clean_forgets_every_message(admin, shipping):
    logging.getLogger("nbjobs.x").warning("to be cleaned")
    ship(shipping)
    assert admin.get("/admin/logs/query").json()["logMessages"]
    assert admin.post("/admin/logs/clean").json() == {"status": "success"}
    assert admin.get("/admin/logs/query").json()["logMessages"] == []


def test_plain_users_are_denied_and_pages_render(alice, admin):
    answer = alice.get("/admin/logs/query").json()
    assert answer["code"] == 403 and answer["messages"] == [
        "Only administrators can read and manage the logs."
    ]
    page = admin.client.get("/arcgis/admin/logs", params={"token": admin.token})
    assert page.status_code == 200 and "query" in page.text
