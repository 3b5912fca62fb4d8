"""The executed notebook's HTML view in a real browser: a script a notebook printed cannot act as the viewer.

A real kernel runs a notebook that displays ``<script>`` (HTML) and a Javascript output. Each script, if
it ran, would mark the page title, write window.parent and localStorage, and fetch the API with the
viewer's cookie. The control (the same page with the server's CSP stripped by the browser) proves the
probe does exactly that; with the server's headers, in the job page's frame and opened on its own,
nothing of it happens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import nbformat
import pytest

from tests.e2e.conftest import USER_PASSWORD, Server, Session

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
IN_CI = os.environ.get("CI", "").lower() == "true"

if IN_CI:
    from playwright.sync_api import Browser, Page, Route, sync_playwright
else:
    sync_api = pytest.importorskip("playwright.sync_api")
    Browser, Page, Route, sync_playwright = (
        sync_api.Browser, sync_api.Page, sync_api.Route, sync_api.sync_playwright,
    )  # fmt: skip

from tests.e2e.test_browser import CHROMIUM, FLAGS  # noqa: E402  (skips the module without chromium)

API = "/sharing/rest/community/self"
PROBE = (
    "document.title = 'probe-ran';"
    "try { window.parent.nbjobsProbe = 'cookie:' + document.cookie; } catch (e) {}"
    "try { window.parent.document.title = 'probe-escaped'; } catch (e) {}"
    "try { localStorage.setItem('nbjobsProbe', 'stored'); } catch (e) {}"
    "fetch('/arcgis" + API + "?f=json', {credentials: 'include'})"
    ".then(r => r.text()).then(t => { document.title = 'probe-fetched ' + t;"
    "  try { localStorage.setItem('nbjobsProbeFetch', t); } catch (e) {} });"
)


def _notebook() -> bytes:
    node = nbformat.v4.new_notebook()
    node.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    node.cells = [
        nbformat.v4.new_markdown_cell("# Report with hostile outputs"),
        nbformat.v4.new_code_cell(
            "from IPython.display import HTML, Javascript, display\n"
            f"probe = {PROBE!r}\n"
            "display(HTML('<p id=\"rendered\">rendered by the kernel</p><script>' + probe + '</script>'))\n"
            "display(Javascript(probe))\n"
            "print('stdout line')"
        ),
    ]
    return nbformat.writes(node).encode()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def job_id(alice: Session) -> str:
    files = {"file": ("hostile.ipynb", _notebook(), "application/x-ipynb+json")}
    item = alice.post(f"/sharing/rest/content/users/{alice.username}/addItem", files=files,
                      type="Notebook", title="hostile.ipynb")["id"]  # fmt: skip
    job = alice.post("/admin/notebooks/executeNotebook", itemId=item, updatePortalItem="false")["jobId"]
    assert alice.wait(job, {"COMPLETED", "FAILED", "CANCELLED"})["status"] == "COMPLETED"
    return job


def _signed_in_page(browser: Browser, server: Server) -> tuple[Page, list[str]]:
    """A page signed in as alice through the generateToken form (the httpOnly token cookie), recording
    every request to the API probe."""
    page = browser.new_context(ignore_https_errors=True).new_page()
    page.goto(server.url + "/sharing/rest/generateToken")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", USER_PASSWORD)
    page.click("button")
    assert '"token"' in page.content()
    api_calls: list[str] = []
    page.on("request", lambda request: api_calls.append(request.url) if API in request.url else None)
    return page, api_calls


def _settle(page: Page) -> None:
    page.wait_for_load_state("load")
    page.wait_for_timeout(1500)  # room for the probe's fetch to start and answer, had it run


def test_control_without_the_servers_csp_the_probe_acts_as_the_viewer(browser, server, job_id):
    page, api_calls = _signed_in_page(browser, server)
    url = f"{server.url}/admin/notebooks/jobs/{job_id}/output/html"

    def strip_csp(route: Route) -> None:
        response = route.fetch()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-security-policy"}
        route.fulfill(response=response, headers=headers)

    page.route(url, strip_csp)
    page.goto(url)
    page.wait_for_function("document.title.startsWith('probe-fetched')", timeout=60_000)
    assert '"username":"alice"' in page.title()  # the API answered the probe as alice
    assert page.evaluate("localStorage.getItem('nbjobsProbe')") == "stored"
    assert api_calls
    page.context.close()


def test_in_the_job_page_frame_the_probe_cannot_run(browser, server, job_id):
    page, api_calls = _signed_in_page(browser, server)
    page.goto(f"{server.url}/admin/notebooks/jobs/{job_id}")
    frame_element = page.wait_for_selector("iframe")
    assert frame_element.get_attribute("sandbox") == ""  # every restriction, no allow-* token
    frame = frame_element.content_frame()
    assert frame is not None
    frame.wait_for_selector("#rendered")  # the output was fetched with the cookie and rendered
    assert "stdout line" in frame.content()
    _settle(page)
    assert frame.evaluate("window.origin") == "null"  # opaque origin: not the server's
    assert frame.evaluate("document.title") != "probe-ran"
    assert page.title().startswith("Job ")
    assert page.evaluate("window.nbjobsProbe") is None
    assert page.evaluate("localStorage.getItem('nbjobsProbe')") is None
    assert page.evaluate("localStorage.getItem('nbjobsProbeFetch')") is None
    assert api_calls == []
    page.context.close()


def test_opened_on_its_own_the_output_page_is_still_sandboxed(browser, server, job_id):
    page, api_calls = _signed_in_page(browser, server)
    page.goto(f"{server.url}/admin/notebooks/jobs/{job_id}/output/html")  # no iframe: only the headers
    page.wait_for_selector("#rendered")
    _settle(page)
    assert page.evaluate("window.origin") == "null"
    assert not page.title().startswith("probe-")
    assert api_calls == []
    page.goto(f"{server.url}/admin/notebooks/jobs")  # back in the server's origin
    assert page.evaluate("localStorage.getItem('nbjobsProbe')") is None
    page.context.close()
