"""The `arcgis` client against nbjobs presenting itself as ArcGIS Enterprise on Kubernetes 12.0
(``NBJOBS_PORTAL_DEPLOYMENT=kubernetes``): the client then reaches notebooks through
``gis.admin.notebooks`` (``KubernetesNotebook`` at ``/admin/notebooks``) — open_notebook to COMPLETED,
the notebook listed and closed with its ``Notebook.close()``, and executeNotebook through the same
manager."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import pytest

from tests.conftest import NOTEBOOKS
from tests.e2e.conftest import ADMIN_PASSWORD, sign_in
from tests.e2e.lab_support import Serve, close_everything

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
if os.environ.get("CI", "").lower() == "true":
    import arcgis.gis as arcgis_gis
else:
    arcgis_gis = pytest.importorskip("arcgis.gis")


@pytest.fixture(scope="module")
def kubernetes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    data_dir = tmp_path_factory.mktemp("k8s") / "data"
    data_dir.mkdir()
    serve = Serve(data_dir, NBJOBS_PORTAL_DEPLOYMENT="kubernetes")
    serve.start()
    yield serve
    serve.stop()


def test_open_notebook_and_close_it_through_the_kubernetes_admin(kubernetes: Serve):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the client's verify_cert, deprecation and TLS warnings
        gis = arcgis_gis.GIS(
            kubernetes.server.url, username="admin", password=ADMIN_PASSWORD, verify_cert=False
        )
        assert gis._is_kubernetes
        [nbs] = gis.notebook_server
        assert type(nbs).__name__ == "KubernetesNotebook" and nbs.url.endswith("/arcgis/admin/notebooks")
        item = gis.content.add(item_properties={"type": "Notebook", "title": "k8s", "tags": ["e2e"]},
                               data=str(NOTEBOOKS / "trivial.ipynb"))  # fmt: skip
        manager = nbs.notebooks
        job = manager.open_notebook(item.id)
        assert job["status"] == "COMPLETED", job
        [notebook] = manager.list()
        assert notebook.properties["itemId"] == item.id
        assert notebook.close() is True
        executed = manager.execute_notebook(item, future=True).result()
    admin = sign_in(kubernetes.server, "admin", ADMIN_PASSWORD)
    try:
        assert admin.get("/admin/notebooks")["total"] == 0
        assert admin.get("/admin/notebooks/deployments")["deployments"] == []
        assert executed["status"] == "COMPLETED", executed
    finally:
        close_everything(admin)
        admin.http.close()
