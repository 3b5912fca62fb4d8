"""The app's tasks pages in a real browser: the cron builder composes the expression and the "next 5 runs"
preview follows it without a reload (a bad expression shows the parser's message the same way), the task
is created and listed; the axe scan and the 375 px layout hold for the list, the form and a task page.
Writes docs/images/app-task-new.png. Bob's tasks only: test_automation.py counts alice's."""

from __future__ import annotations

import datetime
import json

from tests.e2e.conftest import Server, Session
from tests.e2e.test_app_browser import (  # noqa: F401
    IMAGES,
    Browser,
    browser,
    check_pages,
    mark,
    new_context,
    not_reloaded,
    sign_in,
    upload,
)

CRON = "document.querySelector('[data-cron]').value"
FIRST_RUN = "(document.querySelector('[data-preview-runs] li') || {}).textContent || ''"
ERROR = "document.querySelector('#t-cron-e').textContent"


def test_build_a_daily_schedule_see_the_next_runs_live_and_create_the_task(
    browser: Browser,  # noqa: F811
    server: Server,
):
    context = new_context(browser)
    page = sign_in(context, server, "bob")
    upload(page, server, "parameters.ipynb")
    page.get_by_role("link", name="Tasks", exact=True).click()
    page.wait_for_url(server.url + "/app/tasks")
    page.get_by_role("link", name="New task").click()
    page.wait_for_url(server.url + "/app/tasks/new")
    mark(page)
    page.get_by_label("Title").fill("Daily report from the browser")
    page.get_by_label("Notebook", exact=True).select_option(label="parameters")
    assert page.get_by_label(
        "Minutes between runs (every N minutes)"
    ).is_hidden()  # only "Every day"'s inputs
    page.get_by_label("Cron expression").fill("61 * * * ?")  # typed: a custom expression, refused live
    page.wait_for_function(f"() => {ERROR}.includes('61 is outside 0-59')")
    assert page.get_by_label("Repeat").input_value() == "custom"
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=12)  # it will not fire meanwhile
    page.get_by_label("Repeat").select_option("daily")
    page.get_by_label("Time of day (every day, week or month)").fill(f"{at:%H}:{at:%M}")
    expression = f"{at.minute} {at.hour} * * ?"
    page.wait_for_function(f"() => {CRON} === {json.dumps(expression)} && {ERROR} === ''")
    page.wait_for_function(f"() => {FIRST_RUN}.includes({json.dumps(f'{at:%Y-%m-%d %H:%M} UTC')})")
    assert page.locator("[data-preview-runs] li").count() == 5
    assert page.locator("[data-preview-words]").text_content() == f"Every day at {at:%H}:{at:%M}"
    assert not_reloaded(page)
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "app-task-new.png"), full_page=True)
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(server.url + "/app/tasks/*")
    task_page = page.url
    assert page.get_by_role("heading", name="Daily report from the browser").count() == 1
    assert expression in (page.locator("main").text_content() or "")
    page.get_by_role("link", name="Tasks", exact=True).click()
    row = page.get_by_role("row").filter(has_text="Daily report from the browser")
    assert row.count() == 1 and expression in (row.text_content() or "")
    page.goto(task_page)
    page.get_by_role("button", name="Delete task and its run history").click()
    page.wait_for_url(server.url + "/app/tasks")
    assert page.get_by_role("row").filter(has_text="Daily report from the browser").count() == 0
    context.close()


def test_enter_in_a_field_saves_the_task_rather_than_previewing(browser: Browser, server: Server):  # noqa: F811
    context = new_context(browser)
    page = sign_in(context, server, "bob")
    upload(page, server, "parameters.ipynb")
    page.goto(server.url + "/app/tasks/new")
    page.get_by_label("Title").fill("Made with Enter")
    page.get_by_label("Notebook", exact=True).select_option(label="parameters")
    page.get_by_label("Active (runs on schedule; unchecked: saved paused)").uncheck()
    page.get_by_label("Title").press("Enter")
    page.get_by_role("heading", name="Made with Enter").wait_for()  # the task's page: it was created
    page.get_by_role("button", name="Delete task and its run history").click()
    page.wait_for_url(server.url + "/app/tasks")
    context.close()


def test_tasks_pages_pass_axe_and_fit_375_px(browser: Browser, server: Server, bob: Session):  # noqa: F811
    item = bob.add_notebook("parameters.ipynb")
    created = bob.post("/sharing/rest/community/users/bob/tasks/createTask", title="weekly, paused",
                       type="ExecuteNotebook", itemId=item, minute="0", hour="7", dayOfMonth="?", month="*",
                       dayOfWeek="MON,WED", isActive="false")  # fmt: skip
    task_id = created["taskId"]
    pages = ["/app/tasks", "/app/tasks/new", f"/app/tasks/{task_id}", f"/app/tasks/{task_id}/edit"]
    context = new_context(browser, bypass_csp=True)  # axe is injected as a script
    page = sign_in(context, server, "bob")
    check_pages(page, server, pages)
    context.close()
    assert bob.post(f"/sharing/rest/community/users/bob/tasks/{task_id}/delete")["success"] is True
