"""The live view's route in-process (jobs moved by hand: no workers here) and the jobs service's filters
the app uses. The streams themselves are tested over the real server (tests/e2e/test_job_streams.py)."""

from __future__ import annotations

from nbjobs.models.jobs import JobFilter, JobStatus
from nbjobs.models.live import LiveRecorder
from nbjobs.service.authz import OPERATOR

LEASE = 60_000


def test_a_submitted_job_has_an_empty_live_view(alice):
    job_id = alice.execute(alice.add_notebook())["jobId"]
    live = alice.get(f"/admin/notebooks/jobs/{job_id}/live").json()
    assert live["status"] == "SUBMITTED" and live["cells"] == [] and live["output"] == []
    assert live["codeCells"] == 0 and live["failure"] is None and live["progress"]["cellIndex"] is None


def test_the_live_view_shows_what_the_running_attempt_recorded(alice, nb, clock):
    job_id = alice.execute(alice.add_notebook())["jobId"]
    job = nb.store.claim(job_id, 1, "w/1", clock(), LEASE)
    rec = LiveRecorder(job.attempt)
    rec.begin(1, clock(), code_cells=2)
    rec.output(1, "stderr", "warning: x\n")
    nb.store.set_progress(job_id, 1, clock() + 1, 50, "Executing cell 1 of 2", rec.snapshot())
    for family in ("notebooks", "system"):
        live = alice.get(f"/admin/{family}/jobs/{job_id}/live").json()
        assert live["status"] == "EXECUTING" and live["progress"] == {
            "percent": 50, "message": "Executing cell 1 of 2", "cellIndex": 1
        }  # fmt: skip
        assert live["output"] == [{"cellIndex": 1, "name": "stderr", "text": "warning: x\n", "end": 11}]
    # a retry's new attempt has not written yet: the old attempt's view is not shown as its own
    nb.store.transition(job_id, JobStatus.SUBMITTED, clock() + 2, attempt=1)
    nb.store.claim(job_id, 2, "w/1", clock() + 3, LEASE)
    assert alice.get(f"/admin/notebooks/jobs/{job_id}/live").json()["cells"] == []


def test_another_users_live_view_answers_like_an_unknown_job(alice, bob):
    job_id = alice.execute(alice.add_notebook())["jobId"]
    unknown = "j" + "1" * 32
    theirs = bob.get(f"/admin/notebooks/jobs/{job_id}/live").json()
    none = bob.get(f"/admin/notebooks/jobs/{unknown}/live").json()
    assert theirs["code"] == none["code"] == 404
    assert [m.replace(job_id, "ID") for m in theirs["messages"]] == [
        m.replace(unknown, "ID") for m in none["messages"]
    ]
    assert bob.get("/admin/notebooks/jobs/not-an-id/live").json()["code"] == 404


def test_an_event_stream_of_an_unknown_job_is_a_json_error_without_f(client, alice):
    answer = client.get(
        f"/arcgis/admin/notebooks/jobs/{'j' + '2' * 32}/events", params={"token": alice.token}
    )
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["code"] == 404
    anonymous = client.get("/arcgis/admin/system/jobs/events")
    assert anonymous.json()["code"] == 499


def test_admins_list_one_users_jobs_and_users_only_ever_their_own(nb, alice, bob):
    a = alice.execute(alice.add_notebook())["jobId"]
    b = bob.execute(bob.add_notebook())["jobId"]
    alices = nb.users.get("alice").principal()
    mine, total = nb.service.list(alices, username="bob")
    assert [j.job_id for j in mine] == [a] and total == 1  # a user's `username` is ignored
    operator = OPERATOR.principal()
    theirs, total = nb.service.list(operator, username="bob")
    assert [j.job_id for j in theirs] == [b] and total == 1
    none, total = nb.service.list(operator, where=JobFilter(runtime_name="no such runtime"))
    assert none == [] and total == 0


def test_revoke_token_ends_the_token_it_names_and_tells_nothing_about_others(client, alice):
    def revoke(token: str) -> dict:
        return client.post(
            "/arcgis/sharing/rest/oauth2/revokeToken", data={"f": "json", "auth_token": token}
        ).json()

    assert alice.get("/admin/notebooks/jobs").json().get("asyncNotebookJobs") == []
    assert revoke(alice.token) == {"success": True}
    assert alice.get("/admin/notebooks/jobs").json()["code"] == 498
    assert revoke(alice.token) == revoke("no-such-token") == {"success": True}
    missing = client.post("/arcgis/sharing/rest/oauth2/revokeToken", data={"f": "json"}).json()
    assert missing["error"]["code"] == 400
