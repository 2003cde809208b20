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


async def test_a_429_is_tried_again_after_its_retry_after_as_kubectl_does() -> None:
    # The API server answers 429 while it initialises storage for a new CRD; kubectl waits it out.
    from aiohttp import web

    answers = iter(
        [web.json_response({"message": "storage is (re)initializing"}, status=429, headers={"Retry-After": "0"})]
    )

    async def handler(_: web.Request) -> web.Response:
        return next(answers, web.json_response({"items": [{"metadata": {"name": "a"}}]}))

    app = web.Application()
    app.router.add_get("/apis/onceflow.io/v1alpha1/namespaces/x/connectors", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    kube = KubeClient(f"http://127.0.0.1:{port}", ssl.create_default_context(), {})
    try:
        assert await kube.list("onceflow.io/v1alpha1", "Connector", "x") == [{"metadata": {"name": "a"}}]
    finally:
        await kube.close()
        await runner.cleanup()


async def test_a_list_is_fetched_in_pages_and_a_refused_token_is_resolved_again_once() -> None:
    from aiohttp import web

    from onceflow_operator.clients.kube import PAGE_SIZE
    from onceflow_operator.clients.kubeconfig import Credentials

    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append({**request.query, "auth": request.headers.get("Authorization", "")})
        if request.headers.get("Authorization") != "Bearer fresh":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if "continue" not in request.query:
            return web.json_response({"metadata": {"continue": "page-2"}, "items": [{"metadata": {"name": "a"}}]})
        return web.json_response({"metadata": {}, "items": [{"metadata": {"name": "b"}}]})

    app = web.Application()
    app.router.add_get("/apis/onceflow.io/v1alpha1/connectors", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    tokens = iter(["Bearer stale", "Bearer fresh"])

    async def resolve() -> Credentials:  # an exec plugin whose first token expired meanwhile
        return Credentials(f"http://127.0.0.1:{port}", ssl.create_default_context(), {"Authorization": next(tokens)})

    kube = KubeClient("http://unused", ssl.create_default_context(), {})
    kube._resolve = resolve
    try:
        items = await kube.list("onceflow.io/v1alpha1", "Connector", None)
    finally:
        await kube.close()
        await runner.cleanup()
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert [s["auth"] for s in seen] == ["Bearer stale", "Bearer fresh", "Bearer fresh"]
    assert seen[1]["limit"] == str(PAGE_SIZE)
    assert seen[2]["continue"] == "page-2"
