"""The one module that talks to the Kubernetes API (besides Kopf's own watching).

A small async client over aiohttp: get, list, server-side apply, status patch, delete, events.
Why not a generated client: the operator needs six verbs on a handful of kinds, and server-side
apply (field manager `onceflow-operator`) is exactly what keeps it from fighting Argo CD over
fields it does not own.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from onceflow_operator.api.names import FIELD_MANAGER
from onceflow_operator.build.events import event_name, new_event, repeated_event

__all__ = ["FIELD_MANAGER", "KubeClient", "KubeError", "kubeconfig_user", "resource_path"]

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
}
_SA = Path("/var/run/secrets/kubernetes.io/serviceaccount")


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


def _kubeconfig_path(kubeconfig: str | None) -> Path:
    """The kubeconfig to read: the one given, else $KUBECONFIG, else ~/.kube/config."""
    return Path(kubeconfig or os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")


def _read_kubeconfig(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The kubeconfig at `path` and its current context (raises OSError, KeyError, StopIteration, TypeError)."""
    config = yaml.safe_load(path.read_text())
    current = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    return config, current


def kubeconfig_user(kubeconfig: str | None = None) -> str | None:
    """The user the kubeconfig's current context names, or None when there is no readable one.

    The kubeconfig is the one given, else $KUBECONFIG, else ~/.kube/config; a pod's service
    account is never consulted (it names no person). The CLI records it as who decided.
    """
    try:
        _, current = _read_kubeconfig(_kubeconfig_path(kubeconfig))
        return str(current["user"])
    except (OSError, KeyError, StopIteration, TypeError):
        return None


class KubeClient:
    """Async Kubernetes API client from a kubeconfig or the pod's service account."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext, headers: dict[str, str]) -> None:
        self.server = server.rstrip("/")
        self._ssl = ssl_context
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        #: Occurrences of each Event this client recorded, by name (saves a GET per repeat).
        self._event_counts: dict[str, int] = {}

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> KubeClient:
        """In a pod: the service account. Elsewhere: $KUBECONFIG or ~/.kube/config."""
        if not kubeconfig and (_SA / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            host, port = (
                os.environ["KUBERNETES_SERVICE_HOST"],
                os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
            )
            context = ssl.create_default_context(cafile=str(_SA / "ca.crt"))
            token = (_SA / "token").read_text().strip()
            return cls(f"https://{host}:{port}", context, {"Authorization": f"Bearer {token}"})
        return cls._from_kubeconfig(_kubeconfig_path(kubeconfig))

    @classmethod
    def _from_kubeconfig(cls, path: Path) -> KubeClient:
        config, current = _read_kubeconfig(path)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == current["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == current["user"])
        context = ssl.create_default_context()
        if cluster.get("certificate-authority-data"):
            context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            context.load_verify_locations(cafile=cluster["certificate-authority"])
        headers: dict[str, str] = {}
        if user.get("client-certificate-data"):
            folder = Path(tempfile.mkdtemp(prefix="onceflow-kube-"))
            cert, key = folder / "tls.crt", folder / "tls.key"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            key.chmod(0o600)
            context.load_cert_chain(str(cert), str(key))
        elif user.get("client-certificate"):
            context.load_cert_chain(user["client-certificate"], user["client-key"])
        if user.get("token"):
            headers["Authorization"] = f"Bearer {user['token']}"
        return cls(cluster["server"], context, headers)

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            # A handler still running while the operator shuts down must not open a new session
            # that nothing will close (it would leak its connections past the process's cleanup).
            raise KubeError(503, "the Kubernetes client is closed (the operator is stopping)")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=30),
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
        data = None if body is None else json.dumps(body)
        async with self._client().request(
            method, self.server + path, data=data, params=params, headers={"Content-Type": content_type}
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text
                raise KubeError(resp.status, str(message)[:500])
            return json.loads(text) if text else None

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
        params = {"labelSelector": selector} if selector else None
        result = await self._call("GET", resource_path(api_version, kind, namespace), params=params)
        return list(result.get("items", []))

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

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch an object's status; returns the object as the API server now holds it."""
        path = resource_path(api_version, kind, namespace, name) + "/status"
        return await self._call(  # type: ignore[no-any-return]
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
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
        if count is None:
            existing = await self.get("v1", "Event", namespace, name)
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
