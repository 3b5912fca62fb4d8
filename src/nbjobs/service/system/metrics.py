"""Reading this process's metrics (``GET /<context>/admin/metrics``): administrators only."""

from __future__ import annotations

from nbjobs.models.accounts import User
from nbjobs.service.authz import METRICS, require_admin
from nbjobs.telemetry.metrics import Metrics


class MetricsService:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def scrape(self, caller: User) -> bytes:
        """Every metric in the Prometheus text format; PermissionDenied unless ``caller`` is an admin."""
        require_admin(caller, METRICS)
        return self.metrics.render()
