"""Telemetry: metrics (Prometheus) and structured logs, one instance per process, wired by the roots.

Nothing here is global: no default registry, no module-level handler. Low in the layers (above models)
so that execution, dispatch, service and web can all report.
"""
