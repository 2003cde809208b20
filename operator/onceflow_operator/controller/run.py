"""Start the operator process: metrics server, the registered handlers, Kopf's loop.

The CLI calls `run_operator`; this keeps kopf an import of the controller package alone.
"""

from __future__ import annotations

import kopf
from prometheus_client import start_http_server

from onceflow_operator.controller import handlers  # noqa: F401  (importing it registers the handlers)

__all__ = ["run_operator"]


def run_operator(*, namespaces: list[str], all_namespaces: bool, liveness: str, metrics_port: int) -> None:
    """Serve /metrics, then run the handlers until the process is stopped."""
    start_http_server(metrics_port)
    kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=namespaces, liveness_endpoint=liveness)
