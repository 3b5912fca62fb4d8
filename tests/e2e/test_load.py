"""Load, bounded (issue 8 item 5): concurrent submitters, pollers and listers against a real `nbjobs serve`
over HTTPS holding 5,000 ended jobs. The same code as ``bench/load.py`` (which prints the figures); here
only correctness is asserted, never a timing."""

from __future__ import annotations

import pytest
from bench.load import print_figures, run

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.mark.timeout(600)  # room for a loaded 2-core machine: the rest of the suite may run beside it
def test_concurrent_clients_over_many_ended_jobs_lose_nothing(tmp_path):
    # 10 clients share 3 users whose queue cap is 3, so submits meet the documented 429 and send again.
    figures = run(
        tmp_path, clients=10, jobs=24, listers=2, seed_ended=5000, workers=2, users=3, queue_cap=3,
        timeout=480, check_seeded=True,
    )  # fmt: skip
    print_figures(figures)  # shown with -s or on a failure
    report = {k: v for k, v in figures.items() if k != "latency_ms"}
    assert figures["accepted"] == 24, report
    assert figures["ended"] == {"COMPLETED": 24}, report
    assert figures["lost"] == 0, report
    # No job id issued twice, and a refused submit created nothing: exactly the accepted jobs are new.
    assert figures["duplicates"] == 0, report
    assert figures["new_jobs_in_store"] == 24, report
    assert figures["failures"] == 0, report
    assert figures["limit_errors"] > 0, report  # the cap was met, and answered as documented
    # Every seeded job is still in the full listing, and a sample of 200 answers GET as ended.
    assert figures["seeded"] == 5000, report
    assert figures["seeded_unlisted"] == 0, report
    assert figures["seeded_not_gettable"] == 0, report
    latency = figures["latency_ms"]
    for kind in ("list.first", "list.newest.detail", "list.user", "get.seeded", "get.new", "poll"):
        assert latency[kind]["n"] > 0, (kind, report)  # the listers and pollers ran alongside
