"""Environment variables the control plane sets on data-plane pods and the data plane reads (pure).

The plan carries what a workload does; a few process settings that differ between a pod and a
local run (a port) travel as environment variables instead. Each name is defined once, here.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_METRICS_PORT",
    "METRICS_PORT_ENV",
    "NAMESPACE_ENV",
    "NATS_CREDS_KEY",
    "TRACE_HASH_KEY_ENV",
    "TRACE_HASH_KEY_SECRET",
    "TRACE_HASH_KEY_SECRET_KEY",
]

#: A gateway's operations port (/metrics, /healthz, /readyz), apart from its public webhook port.
METRICS_PORT_ENV: Final = "ONCEFLOW_METRICS_PORT"
DEFAULT_METRICS_PORT: Final = 9090
#: The pod's namespace (downward API): a process with namespace NATS credentials reads replies
#: only under that namespace's inbox prefix (`subjects.inbox_prefix`).
NAMESPACE_ENV: Final = "ONCEFLOW_NAMESPACE"
#: The key of a namespace's NATS Secret holding the `.creds` the operator issued.
NATS_CREDS_KEY: Final = "user.creds"
#: A runner's secret key for hashing business keys in spans, from its namespace's Secret
#: `onceflow-trace` (key `hash-key`), which the operator derives from its master key.
TRACE_HASH_KEY_ENV: Final = "ONCEFLOW_TRACE_HASH_KEY"
TRACE_HASH_KEY_SECRET: Final = "onceflow-trace"
TRACE_HASH_KEY_SECRET_KEY: Final = "hash-key"
