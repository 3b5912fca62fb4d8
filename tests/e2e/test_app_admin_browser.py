"""The app's admin pages in a real browser: an administrator adds a user and edits a runtime's preload;
the axe scan and the 375 px layout hold for them as for the other pages (tests/e2e/test_app_browser.py)."""

from __future__ import annotations

import secrets
import sys

from nbjobs.models.runtimes import DEFAULT_RUNTIME
from tests.e2e.conftest import ADMIN_PASSWORD, Server, Session
from tests.e2e.test_app_browser import Browser, browser, check_pages, new_context, sign_in  # noqa: F401

PAGES = [
    "/app/admin/users",
    "/app/admin/runtimes",
    f"/app/admin/runtimes/{DEFAULT_RUNTIME.runtime_id}",
    "/app/admin/workers",
]


def test_an_administrator_adds_a_user_from_the_users_page(browser: Browser, server: Server):  # noqa: F811
    context = new_context(browser)
    page = sign_in(context, server, "admin", ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin").click()
    page.wait_for_url(server.url + "/app/admin/users")
    name = f"added-{secrets.token_hex(3)}"  # the e2e server is shared: a name no other test uses
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill("added-password-1")
    page.get_by_role("button", name="Add user").click()
    page.wait_for_url(server.url + "/app/admin/users")
    assert page.get_by_role("cell", name=name, exact=True).count() == 1
    context.close()


def test_an_administrator_edits_a_runtimes_preload_from_its_page(
    browser: Browser,  # noqa: F811
    server: Server,
    admin: Session,
):
    name = f"Edited {secrets.token_hex(3)}"  # a runtime of its own: the e2e server is shared
    runtime_id = admin.post("/admin/notebooks/runtimes/register", name=name, python=sys.executable)[
        "notebookRuntime"
    ]["id"]
    context = new_context(browser)
    page = sign_in(context, server, "admin", ADMIN_PASSWORD)
    page.goto(server.url + "/app/admin/users")
    page.get_by_role("navigation", name="Administration").get_by_role("link", name="Runtimes").click()
    page.get_by_role("link", name=name).click()
    page.wait_for_url(server.url + f"/app/admin/runtimes/{runtime_id}")
    page.get_by_label("Preload").fill("json, os.path")
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url(server.url + f"/app/admin/runtimes/{runtime_id}")
    assert page.locator(".facts code", has_text="json, os.path").count() == 1
    assert admin.get(f"/admin/notebooks/runtimes/{runtime_id}")["preload"] == ["json", "os.path"]
    context.close()
    admin.post(f"/admin/notebooks/runtimes/{runtime_id}/unregister")


def test_admin_pages_pass_axe_and_fit_375_px(browser: Browser, server: Server):  # noqa: F811
    context = new_context(browser, bypass_csp=True)
    page = sign_in(context, server, "admin", ADMIN_PASSWORD)
    check_pages(page, server, PAGES)
    context.close()
