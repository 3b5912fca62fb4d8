"""The app's web tool pages in-process: publish from one of the caller's notebooks (analyze, then publish),
the try-it form typed by the tool's inputs, running it (a job whose parameters are the typed values), bad
values refused by the server with the message at the field and no job, the service's refusals of a publish,
another user's private tool answering as an unknown one, deleting, and a CSRF-less POST refused."""

from __future__ import annotations

import html
import json
import re

import pytest
from fastapi.testclient import TestClient

from nbjobs.models.jobs import JobType
from nbjobs.roots.server import Server
from tests.conftest import notebook_bytes
from tests.web.test_ui_app import APP, ORIGIN, app_client, sign_in, upload  # noqa: F401  (fixture)

TOOLS = APP + "/webtools"


def _item(client: TestClient, csrf: str, name: str = "webtool.ipynb", data: bytes | None = None) -> str:
    answer = upload(client, csrf, name, data)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[-1]


def _publish(client: TestClient, csrf: str, item_id: str, **fields: str):
    data = {"csrf": csrf, "itemId": item_id, "title": "Circle area", "taskName": "CircleArea", **fields}
    return client.post(TOOLS + "/publish", data=data, headers=ORIGIN, follow_redirects=False)


def _tool(client: TestClient, csrf: str, name: str = "webtool.ipynb", **fields: str) -> str:
    answer = _publish(client, csrf, _item(client, csrf, name), **fields)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[-1]


def _run(client: TestClient, csrf: str, service: str, task: str = "CircleArea", **values: str):
    data = {"csrf": csrf, "task": task, **{f"p.{k}": v for k, v in values.items()}}
    return client.post(f"{TOOLS}/{service}/run", data=data, headers=ORIGIN, follow_redirects=False)


def _declaring(kind: str) -> bytes:
    """webtool_trivial.ipynb with its input declared as ``kind``."""
    nb = json.loads(notebook_bytes("webtool_trivial.ipynb"))
    nb["metadata"]["nbjobs"]["webtool"]["inputs"][0]["type"] = kind
    return json.dumps(nb).encode()


def test_publish_analyzes_the_item_then_the_try_it_form_runs_a_typed_job(
    app_client: TestClient,  # noqa: F811
    nb: Server,
) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    picked = app_client.get(TOOLS, params={"item": item})
    assert picked.status_code == 200
    text = html.unescape(picked.text)
    assert "8 input and 8 output parameters registered." in text
    assert "<td><code>radius</code> (Radius)</td><td>Double</td>" in text
    assert "<td><code>out_rows</code></td><td>RecordSet</td>" in text
    assert 'action="/arcgis/app/webtools/publish"' in text and f'name="itemId" value="{item}"' in text
    published = _publish(app_client, csrf, item, description="Area of a circle", access="org")
    assert published.status_code == 303
    service = published.headers["location"].rsplit("/", 1)[-1]
    tool = nb.webtools.store.get(service)
    assert (tool.owner, tool.title, tool.task_name, tool.access) == (
        "alice",
        "Circle area",
        "CircleArea",
        "org",
    )
    page = app_client.get(f"{TOOLS}/{service}").text
    assert "Area of a circle" in page and f"/rest/services/{service}/GPServer" in page
    assert re.search(r'name="p.radius" value="1.0" inputmode="decimal"[^>]*data-kind="number"', page)
    assert re.search(r'name="p.count" value="2" inputmode="numeric"[^>]*data-kind="number"', page)
    assert 'type="checkbox" name="p.scale_up" value="true" aria-describedby' in page  # False: unchecked
    assert re.search(r'name="p.when" value="2026-01-01T00:00:00Z" data-kind="date"', page)
    assert re.search(r'name="p.rows"[^>]*data-kind="json"[^>]*>\{&#34;features&#34;: \[\]\}</textarea>', page)
    assert "data-run-form novalidate" in page and "Delete web tool" in page
    assert 'href="' + TOOLS + f'/{service}"' in app_client.get(TOOLS).text
    ran = _run(app_client, csrf, service, radius="2.5", name="ring", count="3", scale_up="true",
               when="2026-02-03", rows='{"features": [{"attributes": {"n": 1}}]}',
               data_file="https://example.com/b.csv")  # fmt: skip
    assert ran.status_code == 303, ran.text
    assert ran.headers["location"].startswith(APP + "/jobs/")
    job = nb.store.get(ran.headers["location"].rsplit("/", 1)[-1])
    assert job.type == JobType.EXECUTE_NOTEBOOK_AS_WEB_TOOL and job.username == "alice"
    assert dict(job.inputs.notebook_parameters) == {
        "radius": 2.5,
        "name": "ring",
        "count": 3,
        "scale_up": True,
        "when": "2026-02-03T00:00:00Z",
        "rows": {"features": [{"attributes": {"n": 1}}]},
        "data_file": {"url": "https://example.com/b.csv"},
    }
    assert app_client.get(ran.headers["location"]).status_code == 200  # the job page follows it
    unchecked = _run(app_client, csrf, service)  # an empty input keeps the notebook's; the box is off
    assert dict(
        nb.store.get(unchecked.headers["location"].rsplit("/", 1)[-1]).inputs.notebook_parameters
    ) == {"scale_up": False}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "count",
            "2.5",
            "Invalid value for parameter &#39;count&#39; (Long): &#39;2.5&#39; is not an integer",
        ),
        ("radius", "wide", "(Double): &#39;wide&#39; is not a number"),
        ("when", "yesterday", "(Date): &#39;yesterday&#39; is not epoch milliseconds or an ISO 8601 date"),
        ("rows", "[1", "(RecordSet): &#39;[1&#39; is not valid JSON"),
        ("data_file", "ftp://x", "(File): expected {&#34;url&#34;: …}"),
        ("scale_up", "maybe", "(Boolean): &#39;maybe&#39; is not true or false"),
    ],
)
def test_a_value_that_does_not_parse_as_its_type_is_refused_at_its_field(
    app_client: TestClient,  # noqa: F811
    nb: Server,
    field: str,
    value: str,
    message: str,
) -> None:
    csrf = sign_in(app_client, "alice")
    service = _tool(app_client, csrf)
    before = nb.store.count()
    answer = _run(app_client, csrf, service, **{field: value})
    assert answer.status_code == 400
    assert "Nothing was run:" in answer.text and 'role="alert"' in answer.text
    error = re.search(rf'name="p.{field}"[^>]*aria-invalid="true".*?<span class="error" [^>]*>([^<]*)</span>',
                      answer.text, re.S)  # fmt: skip
    assert error and message in error.group(1), answer.text
    assert html.escape(value, quote=True) in answer.text  # the value stays in the form to correct
    assert nb.store.count() == before
    as_json = app_client.post(f"{TOOLS}/{service}/run?f=json", data={"csrf": csrf, f"p.{field}": value},
                              headers=ORIGIN)  # fmt: skip
    assert as_json.json()["error"]["code"] == 400 and nb.store.count() == before


def test_a_missing_required_input_is_said_at_its_field(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "alice")
    service = _tool(app_client, csrf, "webtool_trivial.ipynb")
    page = app_client.get(f"{TOOLS}/{service}").text
    assert "(Long, required)" in page and 'aria-required="true"' in page
    answer = _run(app_client, csrf, service, "CircleArea", x="")
    assert answer.status_code == 400 and "Missing required parameter &#39;x&#39; (Long)." in answer.text
    assert re.search(r'name="p.x" value="" inputmode="numeric"[^>]*aria-invalid="true"', answer.text)
    assert nb.store.count() == 0
    ran = _run(app_client, csrf, service, x="41")
    assert dict(nb.store.get(ran.headers["location"].rsplit("/", 1)[-1]).inputs.notebook_parameters) == {
        "x": 41
    }


def test_publish_refusals_show_the_service_message_and_publish_nothing(
    app_client: TestClient,  # noqa: F811
    nb: Server,
) -> None:
    csrf = sign_in(app_client, "alice")
    bad = _item(app_client, csrf, "bad.ipynb", _declaring("Raster"))
    analysis = app_client.get(TOOLS, params={"item": bad}).text
    assert "It cannot be published as it is" in analysis and "Unknown web tool parameter type" in analysis
    assert 'action="/arcgis/app/webtools/publish"' not in analysis
    refused = _publish(app_client, csrf, bad)
    assert refused.status_code == 400
    assert "Nothing was published: The notebook cannot be published as a web tool." in refused.text
    assert "Unknown web tool parameter type &#39;Raster&#39;" in refused.text
    good = _item(app_client, csrf)
    assert _publish(app_client, csrf, good).status_code == 303
    again = _publish(app_client, csrf, good, title="Again", description="kept")
    assert again.status_code == 400 and "A web tool has already been published from notebook" in again.text
    assert 'value="Again"' in again.text and ">kept</textarea>" in again.text  # the form keeps what was typed
    sign_in(app_client, "bob")
    bobs = app_client.get(TOOLS).text
    assert "Circle area" not in bobs  # alice's tool is private
    csrf = sign_in(app_client, "bob")
    theirs = _publish(app_client, csrf, good)
    assert theirs.status_code == 400 and "does not exist or is inaccessible" in theirs.text
    assert app_client.get(TOOLS, params={"item": good}).status_code == 400
    assert len(nb.webtools.store.list(None, limit=100)) == 1


def test_another_users_private_tool_answers_as_an_unknown_one(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "alice")
    private = _tool(app_client, csrf)
    shared = _tool(app_client, csrf, "webtool_trivial.ipynb", access="org")
    csrf = sign_in(app_client, "bob")
    unknown = "0" * 32
    for path, data in (("", None), ("/run", {"p.count": "1"}), ("/delete", {})):
        if data is None:
            real, other = app_client.get(f"{TOOLS}/{private}"), app_client.get(f"{TOOLS}/{unknown}")
        else:
            real = app_client.post(f"{TOOLS}/{private}{path}", data={"csrf": csrf, **data}, headers=ORIGIN)
            other = app_client.post(f"{TOOLS}/{unknown}{path}", data={"csrf": csrf, **data}, headers=ORIGIN)
        assert real.status_code == other.status_code == 404, path
        assert real.text.replace(private, "<id>") == other.text.replace(unknown, "<id>")
    assert nb.store.count() == 0 and nb.webtools.store.get(private) is not None
    # a shared tool: bob may run it (as himself) but not delete it, and sees no delete button
    page = app_client.get(f"{TOOLS}/{shared}").text
    assert page.count("Delete web tool") == 0 and shared in app_client.get(TOOLS).text
    ran = _run(app_client, csrf, shared, "CircleArea", x="1")
    assert nb.store.get(ran.headers["location"].rsplit("/", 1)[-1]).username == "bob"
    refused = app_client.post(f"{TOOLS}/{shared}/delete", data={"csrf": csrf}, headers=ORIGIN)
    assert refused.status_code == 404 and nb.webtools.store.get(shared) is not None


def test_the_owner_deletes_the_tool(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "alice")
    service = _tool(app_client, csrf)
    gone = app_client.post(f"{TOOLS}/{service}/delete", data={"csrf": csrf}, headers=ORIGIN,
                           follow_redirects=False)  # fmt: skip
    assert gone.status_code == 303 and gone.headers["location"] == TOOLS
    assert nb.webtools.store.get(service) is None
    assert app_client.get(f"{TOOLS}/{service}").status_code == 404


def test_a_user_without_the_web_tool_privilege_is_refused(app_client: TestClient) -> None:  # noqa: F811
    sign_in(app_client, "viewer")
    page = app_client.get(TOOLS)
    assert page.status_code == 403 and "Missing privilege portal:user:runWebTool" in page.text
    assert app_client.get(TOOLS, params={"f": "json"}).json()["error"]["code"] == 403


def test_post_without_csrf_is_refused(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "alice")
    service = _tool(app_client, csrf)
    answer = app_client.post(f"{TOOLS}/{service}/run", data={"p.count": "1"}, headers=ORIGIN)
    assert answer.status_code == 403 and "did not come from a page of this server" in answer.text
    assert nb.store.count() == 0


def test_input_problems_names_each_input_as_submit_would_refuse_it(
    app_client: TestClient,  # noqa: F811
    nb: Server,
) -> None:
    csrf = sign_in(app_client, "alice")
    tool = nb.webtools.store.get(_tool(app_client, csrf, "webtool_trivial.ipynb"))
    assert nb.webtools.input_problems(tool, "CircleArea", {"x": "2"}) == {}
    assert nb.webtools.input_problems(tool, "CircleArea", {"x": "two", "y": "1"}) == {
        "x": "Invalid value for parameter 'x' (Long): 'two' is not an integer",
        "y": "Unknown parameter 'y' for task 'CircleArea' (its inputs: x).",
    }
    assert nb.webtools.input_problems(tool, "CircleArea", {}) == {
        "x": "Missing required parameter 'x' (Long)."
    }
