"""How claimed work reaches a supervisor: the local thread pool (embedded), Celery later."""
