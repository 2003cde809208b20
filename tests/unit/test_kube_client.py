"""The one Kubernetes client: what it does once closed."""

from __future__ import annotations

import ssl

import pytest

from onceflow_operator.clients.kube import KubeClient, KubeError


async def test_a_closed_kubernetes_client_refuses_requests_instead_of_opening_a_new_session() -> None:
    # Handlers still running while the operator stops used to reopen a session nothing closed.
    kube = KubeClient("https://127.0.0.1:1", ssl.create_default_context(), {})
    await kube.close()
    with pytest.raises(KubeError, match="closed"):
        await kube.get("v1", "Secret", "default", "any")
    assert kube._session is None
