"""Environment variables the control plane sets on data-plane pods and the data plane reads (pure).

The plan carries what a workload does; a few process settings that differ between a pod and a
local run (a port) travel as environment variables instead. Each name is defined once, here.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_METRICS_PORT", "METRICS_PORT_ENV"]

#: A gateway's operations port (/metrics, /healthz, /readyz), apart from its public webhook port.
METRICS_PORT_ENV: Final = "ONCEFLOW_METRICS_PORT"
DEFAULT_METRICS_PORT: Final = 9090
