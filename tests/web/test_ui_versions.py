"""The app's Versions section of a notebook page: snapshots newest first with their kind, download,
restore and "save a snapshot now" as CSRF-checked forms, the limit's message, others' items not found."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from nbjobs.models.accounts import Principal
from nbjobs.roots.server import Server
from nbjobs.web.app import create_app
from tests.conftest import notebook_bytes
from tests.web.test_ui_app import APP, ORIGIN, sign_in, upload


@pytest.fixture
def app_client(nb: Server) -> Iterator[TestClient]:
    with TestClient(create_app(nb.web), base_url="https://testserver") as c:
        yield c


def _save(client: TestClient, csrf: str, item: str, name: str, **headers: str):
    return client.post(APP + f"/notebooks/{item}/versions", data={"csrf": csrf, "name": name},
                       headers={**ORIGIN, **headers}, follow_redirects=False)  # fmt: skip


def _item(client: TestClient, csrf: str) -> str:
    return upload(client, csrf).headers["location"].rsplit("/", 1)[-1]


def test_save_now_then_the_section_lists_it_with_download_and_restore(
    app_client: TestClient, nb: Server
) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    assert "No snapshots yet." in app_client.get(APP + f"/notebooks/{item}").text
    answer = _save(app_client, csrf, item, "before my change")
    assert answer.status_code == 303 and answer.headers["location"] == APP + f"/notebooks/{item}#h-versions"
    nb.clock.advance(1000)
    nb.web.snapshots.save_version(
        Principal("alice"), item, notebook_bytes("sleeps.ipynb"), source="JupyterLab"
    )
    page = app_client.get(APP + f"/notebooks/{item}").text
    section = page[page.index('id="h-versions"') : page.index('id="h-run"')]
    assert section.index("Before save from JupyterLab") < section.index("before my change")  # newest first
    assert "automatic (JupyterLab)" in section and "manual" in section
    assert f"{len(notebook_bytes('parameters.ipynb'))} bytes" in section
    [manual, automatic] = sorted(nb.web.snapshots.store.list(item), key=lambda s: s.automatic)
    assert f'/versions/{manual.resource_key}/restore"' in section
    assert section.count(f'name="csrf" value="{csrf}"') == 3  # two restore forms and the save form
    download = app_client.get(APP + f"/notebooks/{item}/versions/{manual.resource_key}")
    assert download.content == notebook_bytes("parameters.ipynb")
    assert download.headers["content-disposition"] == 'attachment; filename="before_my_change.ipynb"'


def test_restore_from_the_page_brings_the_version_back_and_keeps_the_current_one(
    app_client: TestClient, nb: Server
) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    _save(app_client, csrf, item, "v1")
    nb.web.snapshots.save_version(
        Principal("alice"), item, notebook_bytes("sleeps.ipynb"), source="JupyterLab"
    )
    [v1] = [s for s in nb.web.snapshots.store.list(item) if s.name == "v1"]
    restore = APP + f"/notebooks/{item}/versions/{v1.resource_key}/restore"
    answer = app_client.post(restore, data={"csrf": csrf}, headers=ORIGIN, follow_redirects=False)
    assert answer.status_code == 303
    assert nb.items.store.get_data(item) == notebook_bytes("parameters.ipynb")
    assert "Before restoring “v1”" in app_client.get(APP + f"/notebooks/{item}").text


def test_the_forms_need_the_csrf_token_and_this_origin(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    assert _save(app_client, "forged", item, "x").status_code == 403
    assert _save(app_client, csrf, item, "x", origin="https://evil.example").status_code == 403
    assert nb.web.snapshots.store.list(item) == []


def test_at_the_limit_the_page_says_why_nothing_was_saved(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    for n in range(5):
        assert _save(app_client, csrf, item, f"v{n}").status_code == 303
    answer = _save(app_client, csrf, item, "one more")
    assert answer.status_code == 400 and 'role="alert"' in answer.text
    assert "No snapshot was saved" in answer.text and "maximum of 5 snapshots" in answer.text
    assert len(nb.web.snapshots.store.list(item)) == 5
    assert _save(app_client, csrf, item, "").status_code == 400  # a name is required


def test_anothers_item_or_an_unknown_version_is_not_found(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    _save(app_client, csrf, item, "v1")
    key = nb.web.snapshots.store.list(item)[0].resource_key
    with TestClient(create_app(nb.web), base_url="https://testserver") as other:
        bob_csrf = sign_in(other, "bob")
        # ItemNotFound answers 400 in the app as in the API (ArcGIS's code for an unknown item)
        for answer in (
            other.get(APP + f"/notebooks/{item}/versions/{key}"),
            _save(other, bob_csrf, item, "mine"),
        ):
            assert answer.status_code == 400 and "Item does not exist or is inaccessible." in answer.text
        restore = other.post(APP + f"/notebooks/{item}/versions/{key}/restore", data={"csrf": bob_csrf},
                             headers=ORIGIN, follow_redirects=False)  # fmt: skip
        assert restore.status_code == 400 and "Item does not exist" in restore.text
    assert nb.items.store.get_data(item) == notebook_bytes("parameters.ipynb")
    missing = app_client.get(APP + f"/notebooks/{item}/versions/snapshot-nope.json")
    assert missing.status_code == 400 and "does not exist for this item" in missing.text
