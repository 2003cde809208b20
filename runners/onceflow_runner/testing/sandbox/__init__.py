"""Sandbox systems for tests and the demo: real HTTP servers speaking real products' shapes.

They are deliberately small but honest: they authenticate, validate, honour `Idempotency-Key`,
can be told to misbehave (503 + Retry-After, 429, slow answers, 417), and count every effect per
business key, so a test can prove "exactly one record per key" from the system's own books.
"""

from onceflow_runner.testing.sandbox.base import Fault, SandboxServer
from onceflow_runner.testing.sandbox.erp import ErpSandbox
from onceflow_runner.testing.sandbox.recorder import RecorderSandbox

__all__ = ["ErpSandbox", "Fault", "RecorderSandbox", "SandboxServer"]
