"""How committed jobs reach a supervisor: the local thread pool (embedded) or Celery (distributed)."""
