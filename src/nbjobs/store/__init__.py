"""Job storage: the one place that knows SQL. ``open_store`` picks the backend from Settings."""

from nbjobs.store.base import JobStore, JobUpdate
from nbjobs.store.memory import MemoryJobStore
from nbjobs.store.sql import SqlJobStore, open_store

__all__ = ["JobStore", "JobUpdate", "MemoryJobStore", "SqlJobStore", "open_store"]
