"""The app (/arcgis/app) in a real browser (Debian chromium, Playwright) against a real ``nbjobs serve``
over HTTPS with real kernels: sign in, upload, run from the generated form, follow a job live, cancel,
users kept apart, CSRF, accessibility (axe-core) and the 375 px layout. Writes docs/images/app-*.png."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import notebook_bytes
from tests.e2e.conftest import USER_PASSWORD, Server, Session

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

if IN_CI:  # CI installs chromium and the test extra: a missing browser or axe is a failure there
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
else:
    sync_api = pytest.importorskip("playwright.sync_api")
    Axe = pytest.importorskip("axe_playwright_python.sync_playwright").Axe
    Browser, BrowserContext, Page = sync_api.Browser, sync_api.BrowserContext, sync_api.Page
    sync_playwright = sync_api.sync_playwright
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WIDE = {"width": 1200, "height": 900}
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    return browser.new_context(ignore_https_errors=True, viewport=options.pop("viewport", WIDE), **options)


def sign_in(context: BrowserContext, server: Server, username: str, password: str = USER_PASSWORD) -> Page:
    page = context.new_page()
    page.goto(server.url + "/app/")
    assert page.url.startswith(server.url + "/app/signin?next=")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/app/jobs")
    return page


def check_pages(page: Page, server: Server, paths: list[str]) -> None:
    """Each page passes the axe scan (no serious or critical violation) and, at 375 px wide, does not
    scroll sideways (``page``'s context made with ``bypass_csp=True``: axe is injected as a script)."""
    axe = Axe()
    for path in paths:
        page.goto(server.url + path)
        bad = [(v["id"], v["impact"]) for v in axe.run(page).response["violations"] if v["impact"] in SERIOUS]
        assert not bad, (path, bad)
    page.set_viewport_size({"width": 375, "height": 800})
    for path in paths:
        page.goto(server.url + path)
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"{path} scrolls sideways at 375 px: {widths}"


def upload(page: Page, server: Server, name: str) -> str:
    """Upload a golden notebook through the page's file input; the item id."""
    page.goto(server.url + "/app/notebooks")
    page.get_by_label("Notebook file (.ipynb)").set_input_files(
        {"name": name, "mimeType": "application/x-ipynb+json", "buffer": notebook_bytes(name)}
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_url(server.url + "/app/notebooks/*")
    return page.url.rsplit("/", 1)[-1]


def mark(page: Page) -> None:
    """A marker a reload would lose: proves a change arrived without reloading the page."""
    page.evaluate("window.__noReload = true")


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__noReload === true"))


@pytest.fixture(scope="module")
def alice_page(browser: Browser, server: Server) -> Iterator[Page]:
    context = new_context(browser)
    yield sign_in(context, server, "alice")
    context.close()


def test_upload_run_with_a_changed_parameter_and_watch_it_run(
    alice_page: Page, server: Server, alice: Session
):
    page = alice_page
    item = upload(page, server, "prints_slowly.ipynb")
    assert page.get_by_label("steps (number; empty keeps the notebook's)").input_value() == "6"
    page.get_by_label("steps (number; empty keeps the notebook's)").fill("10")
    page.get_by_label("pause (number; empty keeps the notebook's)").fill("0.6")
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "app-run-form.png"))
    page.get_by_role("button", name="Run notebook").click()
    page.wait_for_url(server.url + "/app/jobs/*")
    job_id = page.url.rsplit("/", 1)[-1]
    mark(page)
    # an intermediate state, seen live: running, some output, the bar between empty and full
    page.wait_for_function(
        """() => {
            const status = document.querySelector('[data-status]').textContent;
            const tail = document.querySelector('[data-tail]').textContent;
            const bar = document.querySelector('[data-bar]').value;
            return status === 'EXECUTING' && tail.includes('step 2') && !tail.includes('step 9')
                && bar > 0 && bar < 100;
        }""",
        timeout=120_000,
    )
    cells = page.locator("[data-cells]").text_content()
    assert cells and re.fullmatch(r"[123] of 4 cells", cells), cells  # 3 code cells + the injected one
    page.screenshot(path=str(IMAGES / "app-job.png"))
    later = page.locator("[data-tail]").text_content() or ""
    page.wait_for_function("() => document.querySelector('[data-status]').textContent === 'COMPLETED'",
                           timeout=120_000)  # fmt: skip
    tail = page.locator("[data-tail]").text_content() or ""
    assert tail.startswith(later.split("\n")[0]) and "step 9" in tail and "done" in tail
    assert page.locator("[data-bar]").first.evaluate("bar => bar.value") == 100
    frame = page.frame_locator("iframe[title='Executed notebook']")
    frame.get_by_text("step 9").first.wait_for(timeout=60_000)  # the rendered executed notebook
    assert not_reloaded(page)
    job = alice.get(f"/admin/notebooks/jobs/{job_id}")
    assert job["status"] == "COMPLETED"
    assert job["inputs"]["notebookParameters"] == {"steps": 10, "pause": 0.6}
    assert job["inputs"]["itemId"] == item
    page.goto(server.url + "/app/jobs")
    assert job_id in page.content()
    page.screenshot(path=str(IMAGES / "app-jobs.png"))


def test_cancel_a_long_job_and_see_cancelled_without_reloading(
    alice_page: Page, server: Server, alice: Session
):
    page = alice_page
    item = alice.add_notebook("sleeps.ipynb")
    job_id = alice.post("/admin/notebooks/executeNotebook", itemId=item, updatePortalItem="false")["jobId"]
    page.goto(server.url + f"/app/jobs/{job_id}")
    mark(page)
    page.wait_for_function("() => document.querySelector('[data-status]').textContent === 'EXECUTING'",
                           timeout=120_000)  # fmt: skip
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_function("() => document.querySelector('[data-status]').textContent === 'CANCELLED'",
                           timeout=120_000)  # fmt: skip
    assert not_reloaded(page)
    assert page.get_by_role("button", name="Cancel job").is_hidden()
    assert alice.get(f"/admin/notebooks/jobs/{job_id}")["status"] == "CANCELLED"


def test_the_jobs_rows_follow_the_list_stream(alice_page: Page, server: Server, alice: Session):
    page = alice_page
    item = alice.add_notebook("prints_slowly.ipynb")
    job_id = alice.post("/admin/notebooks/executeNotebook", itemId=item, updatePortalItem="false",
                        notebookParameters='{"steps": 4, "pause": 0.5}')["jobId"]  # fmt: skip
    page.goto(server.url + "/app/jobs")
    mark(page)
    row = f"tr[data-job-id='{job_id}'] [data-status]"
    page.wait_for_function(f"() => document.querySelector(\"{row}\").textContent === 'COMPLETED'",
                           timeout=120_000)  # fmt: skip
    assert not_reloaded(page)


def test_a_second_user_does_not_see_the_first_ones_jobs(browser: Browser, server: Server, alice: Session):
    item = alice.add_notebook("trivial.ipynb")
    job_id = alice.post("/admin/notebooks/executeNotebook", itemId=item, updatePortalItem="false")["jobId"]
    context = new_context(browser)
    page = sign_in(context, server, "bob")
    assert job_id not in page.content()
    answer = page.goto(server.url + f"/app/jobs/{job_id}")
    assert answer is not None and answer.status == 404
    assert "does not exist or is inaccessible" in page.content()
    context.close()


def test_the_run_form_refuses_a_value_of_the_wrong_type_before_submitting(alice_page: Page, server: Server):
    page = alice_page
    upload(page, server, "parameters.ipynb")
    form_url = page.url
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.get_by_label("count (number; empty keeps the notebook's)").fill("three")
    page.get_by_label("items (JSON: list, object or value; empty keeps the notebook's)").fill("[1, 2")
    page.get_by_role("button", name="Run notebook").click()
    assert page.url == form_url and posts == []
    assert page.get_by_text("must be a number").is_visible()
    assert page.get_by_text("must be JSON").is_visible()
    assert (
        page.get_by_label("count (number; empty keeps the notebook's)").get_attribute("aria-invalid")
        == "true"
    )


def test_an_upload_that_is_not_a_notebook_shows_a_message(alice_page: Page, server: Server):
    page = alice_page
    page.goto(server.url + "/app/notebooks")
    page.get_by_label("Notebook file (.ipynb)").set_input_files(
        {"name": "notes.ipynb", "mimeType": "application/x-ipynb+json", "buffer": b"these are notes"}
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    alert = page.get_by_role("alert")
    assert "notes.ipynb" in (alert.text_content() or "") and "not a notebook" in (alert.text_content() or "")


def test_a_csrf_less_cross_origin_post_is_refused(alice_page: Page, server: Server, alice: Session):
    page = alice_page
    item = upload(page, server, "trivial.ipynb")
    before = len(alice.get("/admin/notebooks/jobs")["asyncNotebookJobs"])
    # the browser's session cookie goes with it (the context's cookie jar); no CSRF token, another origin
    answer = page.context.request.post(server.url + f"/app/notebooks/{item}/run", form={"p.x": "1"},
                                       headers={"Origin": "https://evil.example"})  # fmt: skip
    assert answer.status == 403 and "did not come from a page of this server" in answer.text()
    with_token_elsewhere = page.context.request.post(
        server.url + f"/app/notebooks/{item}/run",
        form={"csrf": page.locator("body").get_attribute("data-csrf")},
        headers={"Origin": "https://evil.example"},
    )  # the right CSRF token from the wrong origin
    assert with_token_elsewhere.status == 403
    assert len(alice.get("/admin/notebooks/jobs")["asyncNotebookJobs"]) == before


def _pages(server: Server, page: Page) -> list[str]:
    page.goto(server.url + "/app/jobs")
    first_job = page.locator("tr[data-job-id]").first.get_attribute("data-job-id")
    page.goto(server.url + "/app/notebooks")
    first_item = page.locator(".item a").first.get_attribute("href")
    assert first_job and first_item
    return ["/app/jobs", f"/app/jobs/{first_job}", "/app/notebooks", first_item.removeprefix("/arcgis")]


def test_axe_finds_no_serious_or_critical_violation(browser: Browser, server: Server, alice_page: Page):
    axe = Axe()
    context = new_context(browser, bypass_csp=True)  # axe is injected as a script
    signin = context.new_page()
    signin.goto(server.url + "/app/signin")
    found = {"/app/signin": axe.run(signin).response["violations"]}
    page = sign_in(context, server, "alice")
    for path in _pages(server, page):
        page.goto(server.url + path)
        found[path] = axe.run(page).response["violations"]
    bad = {
        p: [(v["id"], v["impact"], v["help"]) for v in vs if v["impact"] in SERIOUS]
        for p, vs in found.items()
    }
    assert not any(bad.values()), bad
    context.close()


def test_375_px_wide_has_no_horizontal_scroll(browser: Browser, server: Server):
    context = new_context(browser, viewport={"width": 375, "height": 800})
    page = sign_in(context, server, "alice")
    for path in ["/app/signin", *_pages(server, page)]:
        page.goto(server.url + path)
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"{path} scrolls sideways at 375 px: {widths}"
    context.close()


def test_a_notebook_dropped_on_the_upload_form_is_uploaded(alice_page: Page, server: Server):
    page = alice_page
    page.goto(server.url + "/app/notebooks")
    text = notebook_bytes("trivial.ipynb").decode()
    with page.expect_navigation():
        page.evaluate(
            """text => {
                const data = new DataTransfer();
                data.items.add(new File([text], 'dropped.ipynb', {type: 'application/x-ipynb+json'}));
                const form = document.querySelector('[data-dropzone]');
                const init = {dataTransfer: data, bubbles: true, cancelable: true};
                form.dispatchEvent(new DragEvent('dragover', init));
                form.dispatchEvent(new DragEvent('drop', init));
            }""",
            text,
        )
    assert page.url.startswith(server.url + "/app/notebooks/")
    assert page.get_by_role("heading", name="dropped").is_visible()
