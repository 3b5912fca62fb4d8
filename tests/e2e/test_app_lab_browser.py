"""Interactive notebooks from the app in a real browser (Debian chromium, Playwright) against a real
``nbjobs serve`` and a real JupyterLab (.venv-lab): Open in JupyterLab on the item page, the "Opening…"
page, JupyterLab through nbjobs' proxy running a cell and saving, Close on Running notebooks, the save
in the item (and executeNotebook running it), and another user kept out of that JupyterLab. Writes
docs/images/app-jupyterlab.png and docs/images/app-running.png."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import USER_PASSWORD, Server, Session
from tests.e2e.lab_support import close_everything, item_data
from tests.e2e.test_app_browser import (  # noqa: F401  (browser: a fixture)
    IMAGES,
    WIDE,
    Browser,
    Page,
    browser,
    check_pages,
    new_context,
    sign_in,
    upload,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
LAB_TIMEOUT = 120_000  # ms: the first JupyterLab of a user starts within the host's own start timeout


@pytest.fixture(autouse=True)
def _nothing_left_open(admin: Session) -> Iterator[None]:
    """The e2e server is shared: whatever this test leaves open (when it fails half-way) is closed."""
    yield
    close_everything(admin)


def _run_a_cell(page: Page, code: str) -> None:
    """In the open notebook: a new code cell below the last one, ``code`` typed into it, Shift+Enter."""
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")  # command mode
    page.keyboard.press("b")  # a new cell below, selected
    page.keyboard.press("Enter")  # edit it
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


def _dirty(page: Page) -> bool:
    return bool(page.evaluate("() => !!document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')"))


def test_open_run_save_and_close_a_notebook_in_jupyterlab_from_the_app(
    browser: Browser,  # noqa: F811
    server: Server,
    alice: Session,
):
    context = new_context(browser, bypass_csp=True)  # bypass: axe is injected as a script
    page = sign_in(context, server, "alice")
    item = upload(page, server, "trivial.ipynb")
    visited: list[str] = []
    page.on("framenavigated", lambda frame: visited.append(frame.url) if frame == page.main_frame else None)
    page.get_by_role("button", name="Open in JupyterLab").click()
    page.wait_for_url(
        re.compile(rf"/arcgis/notebooks/[0-9a-f]+/lab/tree/{item}\.ipynb$"), timeout=LAB_TIMEOUT
    )
    assert any("/app/open/" in url for url in visited), visited  # through the "Opening…" page
    lab_url = page.url

    # JupyterLab, through nbjobs: the notebook open, its kernel idle
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=LAB_TIMEOUT)
    # the kernel connected (before that, JupyterLab runs a cell as nothing): the status bar says "Idle"
    page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=LAB_TIMEOUT)
    _run_a_cell(page, "print(6*7)")
    output = page.locator(".jp-OutputArea-output", has_text="42")
    output.wait_for(timeout=60_000)
    assert output.inner_text().strip() == "42"
    assert _dirty(page)
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => !document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')", timeout=30_000
    )
    no_news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's "official news?" toast
    if no_news.is_visible():
        no_news.click()
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "app-jupyterlab.png"))
    assert b"print(6*7)" in item_data(alice, item)  # the save went to the item, through nbjobs

    # bob, following alice's JupyterLab link: signed in, he gets the not-found page, not JupyterLab
    bobs = new_context(browser)
    bob_page = bobs.new_page()
    bob_page.goto(lab_url)
    assert "/app/signin?next=" in bob_page.url  # no lab cookie: sign in first
    bob_page.get_by_label("Username").fill("bob")
    bob_page.get_by_label("Password").fill(USER_PASSWORD)
    with bob_page.expect_response(lambda r: r.url == lab_url) as answer:
        bob_page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 404
    bob_page.wait_for_load_state()
    assert bob_page.url == lab_url and "was not found" in bob_page.content()
    assert "JupyterLab" not in bob_page.content() and "jp-" not in bob_page.content()
    bobs.close()

    # Running notebooks: alice's notebook, then Close (saved to the item, the server stopped)
    [notebook] = [n for n in alice.get("/admin/notebooks", num=100)["notebooks"] if n["itemId"] == item]
    page.goto(server.url + "/app/running")
    row = page.locator(f"tr[data-notebook-id='{notebook['id']}']")
    assert row.get_by_role("link", name=re.compile("^Open ")).get_attribute("href") == (
        f"/arcgis/app/running/{notebook['id']}/lab"
    )
    page.screenshot(path=str(IMAGES / "app-running.png"))
    check_pages(page, server, ["/app/running"])  # axe, and no sideways scroll at 375 px
    page.set_viewport_size(WIDE)
    page.goto(server.url + "/app/running")
    row.get_by_role("button", name=re.compile("^Close ")).click()
    page.wait_for_url(server.url + "/app/running")
    assert page.locator(f"tr[data-notebook-id='{notebook['id']}']").count() == 0
    assert all(n["itemId"] != item for n in alice.get("/admin/notebooks", num=100)["notebooks"])
    context.close()

    # the item holds the cell; executeNotebook runs it
    cells = json.loads(item_data(alice, item))["cells"]
    assert any("".join(c["source"]) == "print(6*7)" for c in cells), cells
    job = alice.post("/admin/notebooks/executeNotebook", itemId=item, updatePortalItem="false")
    assert alice.wait(job["jobId"], {"COMPLETED", "FAILED"})["status"] == "COMPLETED"

    def executed() -> dict | None:
        answer = alice.http.get(f"{server.url}/admin/notebooks/jobs/{job['jobId']}/output",
                                params={"token": alice.token})  # fmt: skip
        return answer.json() if answer.status_code == 200 else None

    printed = [
        "".join(o.get("text", ""))
        for c in eventually(executed, what="the executed notebook")["cells"]
        if "".join(c["source"]) == "print(6*7)"
        for o in c.get("outputs", [])
    ]
    assert printed == ["42\n"], printed
