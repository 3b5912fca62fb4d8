"""The same engine on PostgreSQL: the embedded and cluster stores behave alike end to end."""

from __future__ import annotations

import nbformat
import pytest

from nbjobs.models.jobs import FailureReason, JobStatus
from nbjobs.models.parameters import parse_parameters

from .conftest import ADMIN, ALICE, wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.postgres]


@pytest.fixture
def pg_app(make_app, postgres_url):
    return make_app(database_url=postgres_url, workers=2)


def test_jobs_complete_fail_and_cancel_on_postgres(pg_app, golden):
    app = pg_app
    app.pool.start(2)
    ok = app.service.submit(ALICE, golden("trivial.ipynb"), parameters=parse_parameters({"x": 5}))
    bad = app.service.submit(ALICE, golden("raises.ipynb"))
    slow = app.service.submit(ALICE, golden("sleeps.ipynb"))
    assert wait_for(app, ok.job_id, lambda j: j.ended).status == JobStatus.COMPLETED
    failed = wait_for(app, bad.job_id, lambda j: j.ended)
    assert failed.failure.reason == FailureReason.CELL_ERROR and failed.failure.cell_index == 1
    wait_for(app, slow.job_id, lambda j: j.progress_percent >= 33)
    app.service.cancel(ALICE, slow.job_id)  # interrupted, or SIGTERMed after the 1 s grace: cancelled
    assert wait_for(app, slow.job_id, lambda j: j.ended).status == JobStatus.CANCELLED
    executed = nbformat.reads(app.store.get_blob(ok.job_id, "output").decode(), as_version=4)
    assert executed.cells[-1].outputs[0].text == "6\n"  # x = 5 injected, y = x + 1 printed
    assert app.service.list(ADMIN)[1] == 3
    assert app.service.delete_all(ALICE) == 3


def test_cancel_notifications_reach_listeners_through_postgres(postgres_url, tmp_path):
    import threading

    from nbjobs.settings import load_settings
    from nbjobs.store.engine import make_engine
    from nbjobs.store.notify import CancelListener, notify_cancel

    engine = make_engine(load_settings({}, data_dir=tmp_path, database_url=postgres_url))
    heard: list[str] = []
    got = threading.Event()
    listener = CancelListener(engine, lambda job_id: (heard.append(job_id), got.set()))
    listener.start()
    try:
        assert listener.listening.wait(60)
        notify_cancel(engine, "j" + "1" * 32)
        assert got.wait(60) and heard == ["j" + "1" * 32]
    finally:
        listener.stop()
        engine.dispose()
