"""Which cluster, user and namespace a kubeconfig points at, read the way kubectl reads it.

The loading itself is kubernetes_asyncio's (`KubeConfigMerger` merges the files,
`KubeConfigLoader` selects the context and resolves credentials: inline and file certificates,
tokens and token files, exec credential plugins as EKS/GKE/AKS use, OIDC and GCP auth providers).
Why that library: it is the asyncio port of the official client the design names, it already
runs on aiohttp (as `clients.kube` does), and it is what the operator-scale issue (#14) moves the
whole client to; lightkube reads one file only and would bring a second HTTP stack. What is added
here is only what kubectl does and the library does not:

- the files: `--kubeconfig FILE` (one file, which must exist), else every file in `$KUBECONFIG`
  (colon-separated; missing ones skipped), else `~/.kube/config`;
- merging: the first file to name a cluster, user or context wins (the library's rule too) and
  the first file that sets `current-context` wins (the library takes the last one);
- the namespace: the context's, else `default`;
- every problem is a `KubeconfigError` whose one-line message names the file, the context or the
  field, and what to do; never a traceback, never a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_NAMESPACE",
    "SERVICE_ACCOUNT",
    "Credentials",
    "KubeTarget",
    "KubeconfigError",
    "in_cluster_credentials_loader",
    "kubeconfig_files",
    "load_kubeconfig",
]

DEFAULT_NAMESPACE = "default"
#: Where a pod's service account token, CA and namespace are mounted.
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_LOADER_LOG = "kubernetes_asyncio.config.kube_config"
# The library logs an exec plugin's failure and then raises it; the raised one is the line people
# see. Without a handler of its own, Python's last-resort handler would print the log line too.
logging.getLogger(_LOADER_LOG).addHandler(logging.NullHandler())


class KubeconfigError(Exception):
    """The kubeconfig cannot be used; the message says which file, context or field, and what to do."""


@dataclass(frozen=True)
class Credentials:
    """How to reach the API server: its URL, the TLS context to verify it (and present a client certificate)."""

    server: str
    ssl_context: ssl.SSLContext
    headers: dict[str, str]
    #: The name the server's certificate is checked against when it differs from the URL's host.
    server_hostname: str | None = None
    #: The same as PEM bytes, for clients that build their own TLS (Kopf's login): CA, client
    #: certificate and key. Kept in memory only: no file of them outlives the loading.
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    verify: bool = True
    #: Changes when the TLS material does (a new client certificate from an exec plugin).
    tls_digest: str = ""


def kubeconfig_files(kubeconfig: str | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """The files to read, in kubectl's order of precedence; KubeconfigError when there is none.

    `kubeconfig` is the `--kubeconfig` flag: that one file, which must exist. Otherwise every
    existing file in `$KUBECONFIG` (colon-separated, empty entries and missing files skipped, as
    kubectl does), otherwise `~/.kube/config`.
    """
    environ = os.environ if env is None else env
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise KubeconfigError(f"--kubeconfig {kubeconfig}: no such file; give the path of a kubeconfig file")
        return [path]
    listed = environ.get("KUBECONFIG", "")
    if listed:
        found = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
        existing = [p for p in found if p.is_file()]
        if not existing:
            raise KubeconfigError(
                f"KUBECONFIG={listed}: none of these files exists; fix KUBECONFIG or pass --kubeconfig FILE"
            )
        return existing
    default = Path(environ.get("HOME") or Path.home()) / ".kube" / "config"
    if not default.is_file():
        raise KubeconfigError(
            f"no kubeconfig: KUBECONFIG is not set and {default} does not exist; "
            "set KUBECONFIG or pass --kubeconfig FILE (`onceflow dev up` prints one)"
        )
    return [default]


def _first_current_context(files: list[Path]) -> str | None:
    """Kubectl's merge: the first file that sets `current-context` (non-empty) decides it."""
    for path in files:
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise KubeconfigError(f"{path}: not a readable kubeconfig ({_first_line(exc)})") from None
        if not isinstance(config, dict):
            raise KubeconfigError(f"{path}: not a kubeconfig (expected a mapping with clusters, users, contexts)")
        current = config.get("current-context")
        if current:
            return str(current)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class KubeTarget:
    """One context of a merged kubeconfig: where it points, as whom, in which namespace."""

    #: The files read, for messages.
    files: tuple[Path, ...]
    context: str
    cluster: str
    server: str
    #: The kubeconfig's name for the user entry (not who the API server says the user is).
    user: str
    namespace: str
    _loader: Any

    @property
    def source(self) -> str:
        """The files as one would write them in KUBECONFIG."""
        return os.pathsep.join(str(p) for p in self.files)

    async def credentials(self) -> Credentials:
        """Resolve the user's credentials (this runs an exec plugin if the user has one).

        Called again when they are due (see `clients.kube`): the library then runs the exec
        plugin only once its last credential expired, and reads a token file anew.

        Raises:
            KubeconfigError: a credential file is missing, an exec plugin failed, ...
        """
        from kubernetes_asyncio.client import Configuration
        from kubernetes_asyncio.config.config_exception import ConfigException

        config = Configuration()
        with _private_files(self._loader):
            try:
                await self._loader.load_and_set(config)
                return _credentials(config)
            except (ConfigException, OSError, ssl.SSLError, ValueError) as exc:
                raise KubeconfigError(
                    f"context {self.context!r} in {self.source}: user {self.user!r}: {_first_line(exc)}"
                ) from None


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _credentials(config: Any) -> Credentials:
    """Credentials from a loaded library Configuration: the TLS context and the files' contents, read now."""
    context = ssl.create_default_context(cafile=config.ssl_ca_cert)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, keyfile=config.key_file)
    if not config.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    token = config.api_key.get("BearerToken")
    # A tokenFile is read as is; kubectl trims it (files end in a newline, headers must not).
    headers = {"Authorization": str(token).strip()} if token else {}
    ca, cert, key = _read(config.ssl_ca_cert), _read(config.cert_file), _read(config.key_file)
    digest = hashlib.sha256(b"\0".join([ca or b"", cert or b"", key or b"", str(config.verify_ssl).encode()]))
    return Credentials(
        str(config.host),
        context,
        headers,
        config.tls_server_name,
        ca_data=ca,
        cert_data=cert,
        key_data=key,
        verify=bool(config.verify_ssl),
        tls_digest=digest.hexdigest(),
    )


_PRIVATE_PREFIX = "onceflow-kube-"


def _file_of_this_load(self: Any, content: Any) -> str:
    """The library's temp-file writer, for loads in a private folder: a file of its own every time.

    Why: the library keeps one process-wide cache from content to file. Two loads of the same
    kubeconfig at once (a CLI command in a thread beside the operator; any two threads) would get
    the file the other load wrote in its private folder, which that load then removes:
    `[Errno 2] No such file`. A load in its own folder never shares.
    """
    folder = str(getattr(self, "_temp_file_path", "") or "")
    if not os.path.basename(folder).startswith(_PRIVATE_PREFIX):
        return str(_library_temp_file(self, content))
    handle, name = tempfile.mkstemp(dir=folder)
    with os.fdopen(handle, "wb") as out:
        out.write(content.encode() if isinstance(content, str) else content)
    return name


_library_temp_file: Any = None
_patching = threading.Lock()


def _own_temp_files() -> None:
    """Route the library's temp files through `_file_of_this_load` (once per process, under a lock)."""
    global _library_temp_file
    from kubernetes_asyncio.config import kube_config

    with _patching:
        if _library_temp_file is None:
            _library_temp_file = kube_config.FileOrData._create_temp_file_with_content
            kube_config.FileOrData._create_temp_file_with_content = _file_of_this_load  # type: ignore[method-assign]


@contextlib.contextmanager
def _private_files(loader: Any) -> Iterator[None]:
    """Let the library write inline certificates and keys into a private folder, removed once read.

    Why: the library writes `*-data` entries (and an exec plugin's client key) to files in the
    system temp folder and deletes them only at interpreter exit, so every client of a crashed
    or killed process left its key behind. Here they live in a 0700 folder for the moment it
    takes to load them into the TLS context; the library's cache of those files is told they
    are gone, so the next load writes them again.
    """
    from kubernetes_asyncio.config import kube_config

    _own_temp_files()
    folder = tempfile.mkdtemp(prefix=_PRIVATE_PREFIX)
    previous = loader._temp_file_path
    loader._temp_file_path = folder
    try:
        yield
    finally:
        loader._temp_file_path = previous
        inside = folder + os.sep
        for content, name in list(kube_config._temp_files.items()):
            if name.startswith(inside):
                kube_config._temp_files.pop(content, None)
        # The loader remembers the client certificate's file between loads; forget it, so the next
        # load writes it again (an exec plugin that printed it then runs again too).
        if str(loader.__dict__.get("cert_file") or "").startswith(inside):
            for attribute in ("cert_file", "key_file", "exec_plugin_expiry"):
                loader.__dict__.pop(attribute, None)
        shutil.rmtree(folder, ignore_errors=True)


def in_cluster_credentials_loader() -> Callable[[], Awaitable[Credentials]]:
    """The pod's service account through the library's in-cluster loader; each call reads the token file if due.

    Why the library's: it re-reads the projected token (which the kubelet rotates) every minute,
    as client-go does; a token read once at start stops working after an hour.
    """
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config.config_exception import ConfigException
    from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

    config = Configuration()
    loader = InClusterConfigLoader(
        token_filename=str(SERVICE_ACCOUNT / "token"), cert_filename=str(SERVICE_ACCOUNT / "ca.crt")
    )

    async def resolve() -> Credentials:
        try:
            if "BearerToken" not in config.api_key:
                loader.load_and_set(config)
            await config.get_api_key_with_prefix("BearerToken")  # runs the library's refresh hook when due
            return _credentials(config)
        except (ConfigException, OSError, ssl.SSLError, ValueError) as exc:
            raise KubeconfigError(f"the pod's service account: {_first_line(exc)}") from None

    return resolve


def load_kubeconfig(
    kubeconfig: str | None = None, context: str | None = None, env: Mapping[str, str] | None = None
) -> KubeTarget:
    """The merged kubeconfig's `context` (default: its current context), ready to connect.

    Raises:
        KubeconfigError: no kubeconfig, an unreadable one, no such context, a context naming a
            cluster that is not there, ...
    """
    from kubernetes_asyncio.config.config_exception import ConfigException
    from kubernetes_asyncio.config.kube_config import ConfigNode, KubeConfigLoader, KubeConfigMerger

    files = kubeconfig_files(kubeconfig, env)
    source = os.pathsep.join(str(p) for p in files)
    chosen = context or _first_current_context(files)
    try:
        merged = KubeConfigMerger(source).config
        if merged is None:
            raise KubeconfigError(f"{source}: not a usable kubeconfig (empty)")
        # The merger wraps each entry it took from a file in a ConfigNode (which remembers the file).
        entries = [c.value if isinstance(c, ConfigNode) else c for c in merged.value.get("contexts") or []]
        names = [str(c.get("name")) for c in entries]
        if not chosen:
            raise KubeconfigError(
                f"{source}: no current-context; pass --context NAME (contexts: {', '.join(names) or 'none'})"
            )
        if chosen not in names:
            raise KubeconfigError(
                f"context {chosen!r} is not in {source}; contexts: {', '.join(names) or 'none'} "
                "(`kubectl config get-contexts` lists them)"
            )
        loader = KubeConfigLoader(config_dict=merged, active_context=chosen, config_base_path=None)
        picked = (loader.current_context or {}).get("context") or {}
        cluster_name = str(picked.get("cluster", ""))
        found = merged["clusters"].get_with_name(cluster_name)
        server = str(found["cluster"]["server"]) if found is not None else ""
    except ConfigException as exc:
        raise KubeconfigError(f"context {chosen!r} in {source}: {_first_line(exc)}") from None
    except (yaml.YAMLError, OSError, AttributeError, TypeError) as exc:
        raise KubeconfigError(f"{source}: not a usable kubeconfig ({_first_line(exc)})") from None
    return KubeTarget(
        files=tuple(files),
        context=chosen,
        cluster=cluster_name,
        server=server.rstrip("/"),
        user=str(picked.get("user", "")),
        namespace=str(picked.get("namespace") or DEFAULT_NAMESPACE),
        _loader=loader,
    )
