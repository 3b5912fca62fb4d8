"""The app's webhook receiver and web tool pages in a real browser against the shared ``nbjobs serve``: an
administrator creates a receiver and sees its secret once; a user publishes a notebook as a web tool and
runs it from the try-it form to the job page (real kernel); the axe scan and the 375 px layout hold for
the list and detail pages as for the other pages (tests/e2e/test_app_browser.py)."""

from __future__ import annotations

import json
import secrets

from tests.e2e.conftest import ADMIN_PASSWORD, Server, Session
from tests.e2e.test_app_browser import (  # noqa: F401  (fixture)
    Browser,
    browser,
    check_pages,
    new_context,
    sign_in,
    upload,
)


def test_an_administrator_creates_a_receiver_and_sees_its_secret_once(browser: Browser, server: Server):  # noqa: F811
    context = new_context(browser)
    page = sign_in(context, server, "admin", ADMIN_PASSWORD)
    item = upload(page, server, "parameters.ipynb")
    page.get_by_role("link", name="Webhooks").click()
    page.wait_for_url(server.url + "/app/webhooks")
    name = f"hook-{secrets.token_hex(3)}"  # the e2e server is shared: a name no other test uses
    page.get_by_label("Name").fill(name)
    page.get_by_label("Notebook it runs").select_option(item)
    page.get_by_role("button", name="Create receiver").click()
    page.wait_for_url(server.url + "/app/webhooks/create")
    secret = page.locator("[data-secret]").text_content() or ""
    assert len(secret) == 32
    assert "only time the secret is shown" in (page.locator("[role=status]").text_content() or "")
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_role("link", name=name, exact=True).click()
    page.wait_for_url(server.url + "/app/webhooks/*")
    page.get_by_role("heading", name="Delivery log").wait_for()
    assert secret not in page.content() and page.locator("[data-secret]").count() == 0
    context.close()


def test_a_user_publishes_a_tool_and_runs_it_from_the_try_it_form(browser: Browser, server: Server):  # noqa: F811
    context = new_context(browser)
    page = sign_in(context, server, "alice")
    item = upload(page, server, "webtool_trivial.ipynb")
    page.get_by_role("link", name="Web tools").click()
    page.get_by_label("Your notebook").select_option(item)
    page.get_by_role("button", name="Check its parameters").click()
    page.get_by_role("table", name="Inputs").wait_for()
    title = f"Plus one {secrets.token_hex(3)}"
    page.get_by_label("Title").fill(title)
    page.get_by_role("button", name="Publish").click()
    page.wait_for_url(server.url + "/app/webtools/*")
    assert page.get_by_role("heading", name=title, exact=True).count() == 1
    field = page.get_by_label("x (Long, required)")
    field.fill("forty")
    page.get_by_role("button", name="Run").click()  # refused in the page before anything is sent
    assert field.get_attribute("aria-invalid") == "true"
    assert "must be a number" in (page.locator("[data-error]").first.text_content() or "")
    field.fill("41")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(server.url + "/app/jobs/*")
    page.wait_for_function("() => document.querySelector('[data-status]').textContent === 'COMPLETED'",
                           timeout=120_000)  # fmt: skip
    assert "&quot;x&quot;: 41" in page.content() or '"x": 41' in page.content()
    context.close()


def test_hook_and_tool_pages_pass_axe_and_fit_375_px(
    browser: Browser,  # noqa: F811
    server: Server,
    admin: Session,
    alice: Session,
):
    item = admin.add_notebook("parameters.ipynb")
    receiver = admin.post("/admin/notebooks/webhookReceivers/create", name="axe", itemId=item,
                          secret="0123456789abcdef0123456789abcdef", signatureHeaders="x-hub-signature-256",
                          parameters=json.dumps({"a": 1}))["webhookReceiver"]["id"]  # fmt: skip
    tool_item = alice.add_notebook("webtool.ipynb")
    props = {"jsonProperties": {"title": "Axe circle", "notebookId": tool_item}, "description": "For axe"}
    service = alice.post("/admin/services/createService", serviceProperties=json.dumps(props))["serviceName"]
    analyzed = admin.add_notebook("webtool.ipynb")  # the publish form with its inputs and outputs tables
    pages = ["/app/webhooks", f"/app/webhooks/{receiver}", f"/app/webtools?item={analyzed}",
             f"/app/webtools/{service}"]  # fmt: skip
    context = new_context(browser, bypass_csp=True)
    page = sign_in(context, server, "admin", ADMIN_PASSWORD)
    check_pages(page, server, pages)
    context.close()
