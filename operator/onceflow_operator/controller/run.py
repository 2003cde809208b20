"""Start the operator process: metrics server, the registered handlers, Kopf's loop.

The CLI calls `run_operator`; this keeps kopf an import of the controller package alone.
"""

from __future__ import annotations

import kopf
from prometheus_client import start_http_server

from onceflow_operator.controller import handlers  # noqa: F401  (importing it registers the handlers)

__all__ = ["run_operator"]


def run_operator(
    *, namespaces: list[str], all_namespaces: bool, liveness: str, metrics_port: int, metrics_host: str = "0.0.0.0"
) -> None:
    """Serve /metrics on `metrics_host` (127.0.0.1 for the embedded system), then run the handlers until stopped."""
    start_http_server(metrics_port, addr=metrics_host)
    kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=namespaces, liveness_endpoint=liveness)
