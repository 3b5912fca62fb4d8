"""The HTML pages in a real browser (Debian chromium driven by Playwright): sign in, browse, cancel."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import ADMIN_PASSWORD, Server, Session

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

if IN_CI:  # CI installs chromium and the test extra: a missing browser is a failure there
    from playwright.sync_api import Browser, sync_playwright
else:
    sync_api = pytest.importorskip("playwright.sync_api")
    Browser, sync_playwright = sync_api.Browser, sync_api.sync_playwright
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def test_sign_in_browse_jobs_and_cancel_one(browser: Browser, server: Server, alice: Session):
    item = alice.add_notebook("sleeps.ipynb")
    job_id = alice.post("/admin/notebooks/executeNotebook", itemId=item, updatePortalItem="false")["jobId"]
    alice.wait(job_id, {"EXECUTING"})
    page = browser.new_context(ignore_https_errors=True).new_page()
    page.goto(server.url + "/admin/generateToken")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button")
    page.goto(server.url + "/admin/notebooks/jobs")
    assert job_id in page.content()  # the admin sees alice's job
    page.click(f"a[href$='{job_id}']")
    assert "EXECUTING" in page.content()
    page.click("form[action$='/cancel'] button")  # the job page's cancel operation
    assert "success" in page.content()
    assert alice.wait(job_id, {"CANCELLED", "FAILED", "COMPLETED"})["status"] == "CANCELLED"
    page.screenshot(path=str(server.data_dir / "jobs-page.png"))
