"""The one module that talks to the Kubernetes API (besides Kopf's own watching).

A small async client over aiohttp: get, list, server-side apply, status patch, delete, events,
and the reviews that say who someone is and what they may do. Why not a generated client: the
operator needs six verbs on a handful of kinds, and server-side apply (field manager
`onceflow-operator`) is exactly what keeps it from fighting Argo CD over fields it does not own.
Kubeconfigs are read by a maintained loader (kubernetes_asyncio's, through `clients.kubeconfig`),
so merged KUBECONFIG files, contexts and exec credential plugins work as they do for kubectl.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from onceflow_operator.api.names import FIELD_MANAGER
from onceflow_operator.build.events import event_name, new_event, repeated_event
from onceflow_operator.clients.kubeconfig import (
    SERVICE_ACCOUNT,
    Credentials,
    KubeconfigError,
    KubeTarget,
    in_cluster_credentials_loader,
    load_kubeconfig,
)

__all__ = ["FIELD_MANAGER", "KubeClient", "KubeError", "KubeconfigError", "resource_path"]

_PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Event": "events",
    "Deployment": "deployments",
    "ControllerRevision": "controllerrevisions",
    "CronJob": "cronjobs",
    "Connector": "connectors",
    "Integration": "integrations",
    "SyncPolicy": "syncpolicies",
    "Lease": "leases",
}
_SA = SERVICE_ACCOUNT
#: Objects per page of a list (the API server's `limit`).
PAGE_SIZE = 500
#: How often credentials are resolved again (an exec plugin runs only when its token expired; a
#: token file, in-cluster one included, is read again), besides at once after a 401.
CREDENTIALS_SECONDS = 60.0
#: Connections the client keeps open to the API server at most (aiohttp's default is 100).
CONNECTIONS = 100


_HOME_KUBECONFIG = Path.home() / ".kube" / "config"
#: How often a 429 (Too Many Requests) is tried again, and the longest wait between tries.
_RETRIES_ON_429 = 5
_MAX_RETRY_AFTER = 5.0


def _retry_after(header: str | None) -> float:
    """Seconds to wait from a Retry-After header (seconds form), bounded; 1 s when absent or unreadable."""
    try:
        return min(max(float(header or 1), 0.1), _MAX_RETRY_AFTER)
    except ValueError:
        return 1.0


def _in_cluster() -> bool:
    return (_SA / "token").exists() and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


class KubeError(Exception):
    """The API server refused a request; `status` is its HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """URL path of a kind (and object) from its apiVersion and kind."""
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    tail = f"/{name}" if name else ""
    return f"{prefix}{ns}/{_PLURALS[kind]}{tail}"


class KubeClient:
    """Async Kubernetes API client from a kubeconfig or the pod's service account."""

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext,
        headers: dict[str, str],
        *,
        connect_timeout: float | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._ssl = ssl_context
        self._headers = headers
        self._server_hostname = server_hostname
        self._timeout = aiohttp.ClientTimeout(total=30, connect=connect_timeout)
        #: Resolves the credentials again (a kubeconfig user, the pod's service account); None: fixed headers.
        self._resolve: Callable[[], Awaitable[Credentials]] | None = None
        self._resolved_at = 0.0
        self._tls_digest = ""
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        #: Occurrences of each Event this client recorded, by name (saves a GET per repeat).
        self._event_counts: dict[str, int] = {}

    @classmethod
    def from_environment(
        cls, kubeconfig: str | None = None, *, context: str | None = None, connect_timeout: float | None = None
    ) -> KubeClient:
        """The client kubectl would use, for `context` (default: the current one).

        `kubeconfig` (one file), else $KUBECONFIG (merged), else ~/.kube/config; in a pod with
        none of them, the pod's service account.

        Raises:
            KubeconfigError: no kubeconfig and not in a pod, or the kubeconfig is not usable.
        """
        if not kubeconfig and not os.environ.get("KUBECONFIG") and not _HOME_KUBECONFIG.exists() and _in_cluster():
            if context:
                raise KubeconfigError(f"--context {context}: there is no kubeconfig, only the pod's service account")
            client = cls(
                "https://kubernetes.default.svc", ssl.create_default_context(), {}, connect_timeout=connect_timeout
            )
            client._resolve = in_cluster_credentials_loader()
            return client
        return cls.from_target(load_kubeconfig(kubeconfig, context), connect_timeout=connect_timeout)

    @classmethod
    def from_target(cls, target: KubeTarget, *, connect_timeout: float | None = None) -> KubeClient:
        """A client for one kubeconfig context; its credentials are resolved on the first request.

        Why lazily: resolving may run an exec credential plugin, which is asynchronous, while
        building a client is not.
        """
        client = cls(target.server, ssl.create_default_context(), {}, connect_timeout=connect_timeout)
        client._resolve = target.credentials
        return client

    async def _client(self, *, refresh: bool = False) -> aiohttp.ClientSession:
        if self._closed:
            # A handler still running while the operator shuts down must not open a new session
            # that nothing will close (it would leak its connections past the process's cleanup).
            raise KubeError(503, "the Kubernetes client is closed (the operator is stopping)")
        due = time.monotonic() - self._resolved_at > CREDENTIALS_SECONDS
        if self._resolve is not None and (refresh or due or not self._resolved_at):
            credentials = await self._resolve()
            self._resolved_at = time.monotonic()
            self.server, self._headers = credentials.server.rstrip("/"), credentials.headers
            self._server_hostname = credentials.server_hostname
            if credentials.tls_digest != self._tls_digest:  # new TLS material: new connections
                self._ssl, self._tls_digest = credentials.ssl_context, credentials.tls_digest
                if self._session is not None:
                    await self._session.close()
                    self._session = None
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=CONNECTIONS),
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        """One request; a 429 is tried again after its Retry-After, a few times, as client-go does.

        Why: the API server answers 429 while it is busy or (re)initialising storage for a kind
        (right after a CRD is installed); kubectl waits that out, so the CLI and operator do too.
        """
        data = None if body is None else json.dumps(body)
        refreshed = False
        for attempt in range(_RETRIES_ON_429 + 2):
            session = await self._client(refresh=refreshed and attempt == 1)
            async with session.request(
                method,
                self.server + path,
                data=data,
                params=params,
                headers={**self._headers, "Content-Type": content_type},
                server_hostname=self._server_hostname,
            ) as resp:
                text = await resp.text()
                if resp.status == 401 and self._resolve is not None and not refreshed and attempt == 0:
                    # An expired exec-plugin token or a rotated token file: resolve again, once, as client-go does.
                    refreshed, wait = True, 0.0
                elif resp.status == 429 and attempt < _RETRIES_ON_429:
                    wait = _retry_after(resp.headers.get("Retry-After"))
                else:
                    if resp.status >= 400:
                        try:
                            message = json.loads(text).get("message", text)
                        except ValueError:
                            message = text
                        raise KubeError(resp.status, str(message)[:500])
                    return json.loads(text) if text else None
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", resource_path(api_version, kind, namespace, name))  # type: ignore[no-any-return]
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self, api_version: str, kind: str, namespace: str | None, *, selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a kind (in a namespace, or all with None), fetched in pages of `PAGE_SIZE`.

        Why pages: one unbounded list of thousands of objects is one large response the API
        server builds in memory at once; kubectl and client-go page by 500 too.
        """
        items: list[dict[str, Any]] = []
        params = {"limit": str(PAGE_SIZE)}
        if selector:
            params["labelSelector"] = selector
        while True:
            result = await self._call("GET", resource_path(api_version, kind, namespace), params=params)
            items.extend(result.get("items", []))
            token = (result.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {**params, "continue": token}

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as `onceflow-operator`, forcing only over fields we own."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return await self._call(  # type: ignore[no-any-return]
            "PATCH",
            path,
            body=obj,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
        )

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object (409 when it exists: someone was first)."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return await self._call("POST", path, body=obj)  # type: ignore[no-any-return]

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object at the resourceVersion it carries (409 when it changed since: someone else wrote)."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return await self._call("PUT", path, body=obj)  # type: ignore[no-any-return]

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """Merge-patch an object's status; returns the object as the API server now holds it.

        Named as `field_manager` in managedFields (not the client's user agent), so a GitOps tool
        and a reader of managedFields see the operator owning status and nothing else.
        """
        path = resource_path(api_version, kind, namespace, name) + "/status"
        return await self._call(  # type: ignore[no-any-return]
            "PATCH",
            path,
            body={"status": status},
            content_type="application/merge-patch+json",
            params={"fieldManager": field_manager},
        )

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch an object as a person's command does (`onceflow match train --apply` writes spec)."""
        return await self._call(  # type: ignore[no-any-return]
            "PATCH",
            resource_path(api_version, kind, namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def annotate(
        self, api_version: str, kind: str, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> dict[str, Any]:
        """Merge-patch annotations (None removes one): how rollout verbs reach the operator without a spec edit."""
        return await self._call(  # type: ignore[no-any-return]
            "PATCH",
            resource_path(api_version, kind, namespace, name),
            body={"metadata": {"annotations": annotations}},
            content_type="application/merge-patch+json",
        )

    async def access_review(
        self, user: str, groups: tuple[str, ...], *, verb: str, namespace: str, group: str, resource: str
    ) -> dict[str, Any]:
        """Ask the API server whether `user` (in `groups`) may `verb` `group/resource` in `namespace`."""
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": [*groups],
                "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group, "resource": resource},
            },
        }
        return await self._call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=body)  # type: ignore[no-any-return]

    async def who_am_i(self) -> tuple[str, tuple[str, ...]]:
        """Who the API server says this client's credentials belong to (a SelfSubjectReview): user and groups.

        Why ask the server: a kubeconfig's user entry is only a local label; the name the server
        authenticates (certificate subject, token, exec plugin) is what RBAC and the audit know.
        """
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        review = await self._call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=body)
        info = (review.get("status") or {}).get("userInfo") or {}
        groups = info.get("groups") or []
        return str(info.get("username", "")), tuple(str(g) for g in groups)

    async def may_i(self, *, verb: str, namespace: str, group: str, resource: str) -> bool:
        """Whether this client's own user may `verb` `group/resource` in `namespace` (a SelfSubjectAccessReview)."""
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group, "resource": resource}
            },
        }
        review = await self._call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body)
        return bool((review.get("status") or {}).get("allowed"))

    async def token_review(self, token: str, audiences: Sequence[str] = ()) -> dict[str, Any]:
        """Ask the API server whose bearer token this is, and whether it was issued for one of `audiences`.

        Without audiences the API server checks against its own; the token itself is never logged.
        """
        spec: dict[str, Any] = {"token": token}
        if audiences:
            spec["audiences"] = list(audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        return await self._call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body)  # type: ignore[no-any-return]

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            await self._call("DELETE", resource_path(api_version, kind, namespace, name))
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def event(self, involved: dict[str, Any], *, reason: str, message: str, warning: bool = True) -> None:
        """Record a core/v1 Event on an object (what `kubectl describe` shows), counted when it repeats.

        The same object, type, reason and message update one Event's `count` and `lastTimestamp`
        (see `build.events`), so a problem reported on every reconcile reads "x42 over 70s"
        instead of 42 Events.
        """
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        name = event_name(involved, reason=reason, message=message, warning=warning, component=FIELD_MANAGER)
        namespace = meta["namespace"]
        count = self._event_counts.get(name)
        if count is None:  # not recorded by this process: most Events are new, so try that first
            event = new_event(
                involved, reason=reason, message=message, warning=warning, component=FIELD_MANAGER, now=now
            )
            try:
                await self._call("POST", resource_path("v1", "Event", namespace), body=event)
                self._event_counts[name] = 1
                return
            except KubeError as exc:
                if exc.status != 409:
                    raise
            existing = await self.get("v1", "Event", namespace, name)  # recorded before (say, before a restart)
            count = int(existing.get("count") or 1) if existing else 0
        if count:
            try:
                await self._call(
                    "PATCH",
                    resource_path("v1", "Event", namespace, name),
                    body=repeated_event(count, now),
                    content_type="application/merge-patch+json",
                )
                self._event_counts[name] = count + 1
                return
            except KubeError as exc:
                if exc.status != 404:  # gone (Events expire after an hour): start a new one
                    raise
        event = new_event(involved, reason=reason, message=message, warning=warning, component=FIELD_MANAGER, now=now)
        try:
            await self._call("POST", resource_path("v1", "Event", namespace), body=event)
            self._event_counts[name] = 1
        except KubeError as exc:
            if exc.status != 409:
                raise
            self._event_counts.pop(name, None)  # recorded meanwhile by another reconcile: count it next time
