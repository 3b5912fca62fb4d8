"""The app's runtimes and workers pages in-process (real store and services): every runtime with its limits,
preload and start status; the edit form (the API's field parser, the service's messages, 400 and nothing
changed on a bad value); the check buttons; the workers page with heartbeats and running jobs, in the
embedded mode (a real job on this server's own pool); a plain user, an unknown runtime, a CSRF-less POST."""

from __future__ import annotations

import html
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from nbjobs.models.accounts import ORG_ADMIN, ORG_USER, Principal
from nbjobs.models.jobs import ENDED, JobStatus
from nbjobs.models.runtimes import DEFAULT_RUNTIME
from nbjobs.models.workers import WorkerRecord
from nbjobs.roots.server import Server
from nbjobs.service.authz import OPERATOR
from nbjobs.service.runtimes.fields import RuntimeFields
from nbjobs.settings import load_settings
from nbjobs.web.app import create_app
from tests.conftest import notebook_bytes
from tests.waiting import eventually
from tests.web.conftest import PASSWORD
from tests.web.test_ui_app import APP, ORIGIN, app_client, sign_in  # noqa: F401  (fixture)

RUNTIMES = APP + "/admin/runtimes"
WORKERS = APP + "/admin/workers"
DEFAULT = f"{RUNTIMES}/{DEFAULT_RUNTIME.runtime_id}"
LEASE = 60_000


def _text(page) -> str:
    return html.unescape(page.text)


def _geo(nb: Server):
    return nb.runtimes.register(
        OPERATOR,
        RuntimeFields(name="Geo", python=sys.executable, max_cpu=2, max_memory=1.5, max_memory_unit="g",
                      max_output_bytes=10 * 1024**2, preload=("json",), start_method="spawn"),
    )  # fmt: skip


def _update(client: TestClient, csrf: str, url: str, **fields: str):
    return client.post(url + "/update", data={"csrf": csrf, **fields}, headers=ORIGIN, follow_redirects=False)


# -- runtimes ---------------------------------------------------------------------------------------


def test_runtimes_page_shows_every_runtime_with_limits_preload_and_start(app_client: TestClient, nb: Server):  # noqa: F811
    geo = _geo(nb)
    nb.runtimes.record_start_status(DEFAULT_RUNTIME.runtime_id, "fallback", "preload 'x' failed to import")
    sign_in(app_client, "admin")
    page = app_client.get(RUNTIMES)
    assert page.status_code == 200
    text = _text(page)
    assert f'href="{RUNTIMES}/{geo.runtime_id}">Geo</a>' in text and geo.runtime_id in text
    assert "Python 3 Standard</a> <strong>(default)</strong>" in text and DEFAULT_RUNTIME.runtime_id in text
    assert "Max CPU: 2 CPUs" in text and "Max memory: 1.5 GiB" in text and "Max output: 10 MiB" in text
    assert "Max CPU: no limit" in text and sys.executable in text
    assert "<code>json</code>" in text and "spawn" in text
    assert "now: <strong>fallback</strong>" in text and "preload 'x' failed to import" in text
    assert f'href="{RUNTIMES}" aria-current="page">Runtimes</a>' in text  # the admin sub-navigation
    one = _text(app_client.get(f"{RUNTIMES}/{geo.runtime_id}"))
    assert "<dt>Max memory</dt><dd>1.5 GiB</dd>" in one and 'name="preload" value="json"' in one
    assert '<option value="spawn" selected>' in one and 'name="maxMemory" value="1.5"' in one


def test_editing_a_runtime_changes_its_limits_and_preload(app_client: TestClient, nb: Server):  # noqa: F811
    geo = _geo(nb)
    csrf = sign_in(app_client, "admin")
    url = f"{RUNTIMES}/{geo.runtime_id}"
    saved = _update(app_client, csrf, url, name="Geo", maxCpu="0.5", maxMemory="512", maxMemoryUnit="m",
                    maxWallMinutes="30", preload="json, os.path", startMethod="fork")  # fmt: skip
    assert saved.status_code == 303 and saved.headers["location"] == url
    spec = nb.runtimes.get(geo.runtime_id)
    assert (spec.max_cpu, spec.max_memory, spec.max_memory_unit) == (0.5, 512, "m")
    assert spec.preload == ("json", "os.path") and spec.start_method == "fork" and spec.max_wall_minutes == 30
    assert spec.max_output_bytes == 10 * 1024**2  # not in the form post: unchanged
    page = _text(app_client.get(url))
    assert "<dt>Max memory</dt><dd>512 MiB</dd>" in page and "<code>json, os.path</code>" in page
    assert "<dt>Max run time</dt><dd>30 min</dd>" in page
    cleared = _update(app_client, csrf, url, preload="")  # the emptied field: no module preloaded
    assert cleared.status_code == 303
    assert nb.runtimes.get(geo.runtime_id).preload == ()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("maxMemory", "-1", "Invalid value for 'maxMemory': '-1' (must be 0 or more; 0 = no limit)."),
        ("maxCpu", "lots", "Invalid value for 'maxCpu': 'lots' (expected a number)."),
        ("startMethod", "thread", "Invalid value for 'startMethod': 'thread' (expected one of fork, spawn)."),
        ("preload", "json, not-a-module", "'not-a-module' is not a Python module name"),
        ("maxMemoryUnit", "t", "Invalid value for 'maxMemoryUnit': 't' (expected one of b, k, m, g)."),
    ],
)
def test_a_bad_value_is_400_with_the_message_and_changes_nothing(app_client, nb, field, value, message):  # noqa: F811
    geo = _geo(nb)
    csrf = sign_in(app_client, "admin")
    url = f"{RUNTIMES}/{geo.runtime_id}"
    answer = _update(app_client, csrf, url, **{"maxWallMinutes": "5", field: value})
    assert answer.status_code == 400
    text = _text(answer)
    assert "The runtime was not changed: " in text and message in text
    assert f'name="{field}" value="{value}"' in text or f'value="{value}" selected' in text  # kept to fix
    assert nb.runtimes.get(geo.runtime_id) == geo
    as_json = app_client.post(url + "/update", data={"csrf": csrf, field: value, "f": "json"}, headers=ORIGIN)
    assert as_json.json()["error"]["code"] == 400 and nb.runtimes.get(geo.runtime_id) == geo


def test_the_default_runtime_cannot_be_disabled_from_its_page(app_client: TestClient, nb: Server):  # noqa: F811
    csrf = sign_in(app_client, "admin")
    assert 'name="disabled"' not in app_client.get(DEFAULT).text  # not offered
    answer = _update(app_client, csrf, DEFAULT, disabled="true")
    assert answer.status_code == 400 and "The default runtime cannot be disabled." in answer.text
    assert not nb.runtimes.default().disabled


def test_the_check_buttons_show_each_runtimes_result(app_client: TestClient, nb: Server, tmp_path: Path):  # noqa: F811
    broken = tmp_path / "broken" / "python"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'No module named ipykernel' >&2\nexit 1\n")
    broken.chmod(0o755)
    bare = nb.runtimes.register(OPERATOR, RuntimeFields(name="Bare", python=str(broken)))
    csrf = sign_in(app_client, "admin")
    assert "not checked" in app_client.get(RUNTIMES).text
    one = app_client.post(f"{RUNTIMES}/{bare.runtime_id}/check", data={"csrf": csrf}, headers=ORIGIN)
    assert one.status_code == 200
    assert "Check failed" in one.text and "cannot import ipykernel: No module named ipykernel" in one.text
    every = _text(app_client.post(RUNTIMES + "/check", data={"csrf": csrf}, headers=ORIGIN))
    assert "Checked 2 runtimes: 1 cannot start a kernel." in every
    assert f"ok (Python {sys.version.split()[0]})" in every


def test_an_unknown_runtime_is_the_404_page(app_client: TestClient, nb: Server):  # noqa: F811
    csrf = sign_in(app_client, "admin")
    unknown = f"{RUNTIMES}/{'f' * 32}"
    page = app_client.get(unknown)
    assert page.status_code == 404 and "Not found" in page.text and "does not exist" in page.text
    assert _update(app_client, csrf, unknown, maxCpu="1").status_code == 404
    assert app_client.get(unknown, params={"f": "json"}).json()["error"]["code"] == 404


def test_a_plain_user_is_refused_every_page_and_form(app_client: TestClient, nb: Server):  # noqa: F811
    before = nb.runtimes.default()
    csrf = sign_in(app_client, "alice")
    for url in (RUNTIMES, DEFAULT, WORKERS):
        page = app_client.get(url)
        assert page.status_code == 403 and "Administrators only" in page.text, url
        assert app_client.get(url, params={"f": "json"}).json()["error"]["code"] == 403
    for url in (DEFAULT + "/update", DEFAULT + "/check", RUNTIMES + "/check"):
        answer = app_client.post(url, data={"csrf": csrf, "maxCpu": "3"}, headers=ORIGIN)
        assert answer.status_code == 403 and "Administrators only" in answer.text, url
    assert nb.runtimes.default() == before


def test_a_post_without_csrf_is_refused(app_client: TestClient, nb: Server):  # noqa: F811
    before = nb.runtimes.default()
    sign_in(app_client, "admin")
    answer = app_client.post(DEFAULT + "/update", data={"maxCpu": "3"}, headers=ORIGIN)
    assert answer.status_code == 403 and "did not come from a page of this server" in answer.text
    assert nb.runtimes.default() == before


# -- workers ----------------------------------------------------------------------------------------


def test_workers_page_lists_live_workers_with_heartbeat_age_and_running_jobs(app_client, nb, clock):  # noqa: F811
    now = clock()
    served = ({"id": DEFAULT_RUNTIME.runtime_id, "name": DEFAULT_RUNTIME.name},)
    far = WorkerRecord("far/41-abc", "far", 41, served, ("rt.x",), 3, "draining", "9.9", now, now)
    nb.workers.register(far)
    gone = now - 2 * LEASE
    nb.workers.register(WorkerRecord("gone/7-old", "gone", 7, (), (), 1, "online", "9.9", gone, gone))
    job = nb.service.submit(Principal("alice"), notebook_bytes("trivial.ipynb"))
    nb.store.claim(job.job_id, 1, "far/41-abc/slot-0", now, LEASE)
    clock.advance(12_000)
    sign_in(app_client, "admin")
    page = app_client.get(WORKERS)
    assert page.status_code == 200
    text = _text(page)
    assert "2 machines, 1 job running." in text and "Embedded mode" in text
    assert "gone/7-old" not in text  # silent for longer than the lease
    local, far = text.split("<tr>")[2:4]
    assert nb.boot_prefix in local and "(this server)" in local and "0.0 s ago" in local
    assert "far/41-abc" in far and "draining" in far and "12.0 s ago" in far and "1 of 3 busy" in far
    assert "Python 3 Standard" in far and "queues: rt.x" in far and "pid 41 · nbjobs 9.9" in far
    assert f'<a class="mono" href="{APP}/jobs/{job.job_id}">{job.job_id}</a>' in far


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Server]:
    """A started embedded server with one job slot (the web fixtures' server runs no jobs)."""
    settings = load_settings({}, data_dir=tmp_path / "live", workers=1, warm_pool_size=0, poll_seconds=0.1,
                             cancel_grace_seconds=1.0, kill_grace_seconds=1.0)  # fmt: skip
    server = Server.from_settings(settings)
    server.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    server.users.add("admin", PASSWORD, role=ORG_ADMIN)
    server.users.add("alice", PASSWORD, role=ORG_USER)
    server.start()
    yield server
    server.stop(grace=10)


@pytest.mark.kernel
def test_embedded_workers_page_lists_a_real_running_job_under_the_local_machine(live: Server):
    job = live.service.submit(Principal("alice"), notebook_bytes("sleeps.ipynb"))
    try:
        eventually(lambda: live.store.get(job.job_id).status == JobStatus.EXECUTING, what="the job to run")
        with TestClient(create_app(live.web), base_url="https://testserver") as client:
            sign_in(client, "admin")
            text = _text(client.get(WORKERS))
        assert "1 machine, 1 job running." in text and "(this server)" in text
        assert live.boot_prefix in text and "1 of 1 busy" in text and "online" in text
        assert f'href="{APP}/jobs/{job.job_id}"' in text
    finally:
        live.service.cancel(Principal("admin", is_admin=True), job.job_id)
        ended = eventually(lambda: live.store.get(job.job_id).status in ENDED, what="the job to end")
    assert ended and live.store.get(job.job_id).status == JobStatus.CANCELLED
