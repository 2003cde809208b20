"""How commands find the cluster, as kubectl does: `--kubeconfig`, `--context`, `-n`, `-A`.

Every command that talks to the Kubernetes API or to NATS takes `cluster_options`, which hands
it one `Cluster`. The namespace is `-n`, else the kubeconfig context's namespace, else `default`
(kubectl's rule). Talking to the API server goes through `Cluster.run`, which turns every way of
failing (no kubeconfig, an unknown context, an unreachable or refusing API server) into one line
on stderr and exit code 1, never a traceback.

Only click is imported here; the Kubernetes client loads when a command runs.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from onceflow_operator.clients.kube import KubeClient
    from onceflow_operator.clients.kubeconfig import KubeTarget

__all__ = ["CONNECT_SECONDS", "Cluster", "all_namespaces_option", "cluster_options"]

T = TypeVar("T")

#: How long a command waits for the API server's TCP/TLS handshake before saying it is unreachable.
CONNECT_SECONDS = 5.0

all_namespaces_option = click.option(
    "-A", "--all-namespaces", is_flag=True, help="Every namespace (overrides -n and the context's namespace)."
)


@dataclass
class Cluster:
    """The cluster a command was pointed at: the three kubectl flags, resolved when first needed."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace_flag: str | None = None
    _target: KubeTarget | None = field(default=None, repr=False)

    def target(self) -> KubeTarget:
        """The kubeconfig context in use; a one-line ClickException when there is none usable."""
        from onceflow_operator.clients.kubeconfig import KubeconfigError, load_kubeconfig

        if self._target is None:
            try:
                self._target = load_kubeconfig(self.kubeconfig, self.context)
            except KubeconfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._target

    @property
    def namespace(self) -> str:
        """`-n`, else the context's namespace (`default` when it names none)."""
        return self.namespace_flag or self.target().namespace

    def namespace_or_default(self) -> str:
        """As `namespace`, but `default` when there is no kubeconfig at all.

        For commands that can work without one: reading NATS (a machine with NATS credentials
        and no kubeconfig can still read), or the console in a pod (its service account). An
        explicit `--kubeconfig` or `--context` must still be usable.
        """
        from onceflow_operator.clients.kubeconfig import KubeconfigError, kubeconfig_files

        if self.namespace_flag:
            return self.namespace_flag
        if not self.kubeconfig and not self.context:
            try:
                kubeconfig_files()
            except KubeconfigError:
                return "default"
        return self.target().namespace

    def run(self, work: Callable[[KubeClient], Awaitable[T]]) -> T:
        """Run `work` with a client for this cluster; every failure to reach it ends as one line and exit 1."""
        import asyncio

        return asyncio.run(self._run(work))

    async def _run(self, work: Callable[[KubeClient], Awaitable[T]]) -> T:
        import ssl

        import aiohttp

        from onceflow_operator.clients.kube import KubeClient, KubeError
        from onceflow_operator.clients.kubeconfig import KubeconfigError

        target = self.target()
        where = f"the Kubernetes API server at {target.server} (context {target.context})"
        kube = KubeClient.from_target(target, connect_timeout=CONNECT_SECONDS)
        try:
            return await work(kube)
        except KubeconfigError as exc:
            raise click.ClickException(str(exc)) from None
        except KubeError as exc:
            if exc.status == 401:
                raise click.ClickException(
                    f"{where} did not accept the credentials of user {target.user!r}; log in again or pick "
                    "another --context"
                ) from None
            raise click.ClickException(f"{where} refused: {exc}") from None
        except (aiohttp.ClientConnectorCertificateError, ssl.SSLError) as exc:
            raise click.ClickException(
                f"cannot verify {where}: {_reason(exc)}; check the cluster's certificate-authority in the kubeconfig"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise click.ClickException(
                f"cannot reach {where}: {_reason(exc)}; is the cluster up, and is this the right --context?"
            ) from None
        finally:
            await kube.close()


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words ("Connection refused", "no answer within 5 s")."""
    import os
    import ssl

    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_SECONDS:g} s"
    certificate = getattr(exc, "certificate_error", exc)
    if isinstance(certificate, ssl.SSLCertVerificationError):
        return str(certificate.verify_message or certificate.reason or "certificate not trusted")
    if isinstance(certificate, ssl.SSLError):
        return str(certificate.reason or certificate)
    cause = getattr(exc, "os_error", exc)
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def cluster_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--kubeconfig`, `--context`, `-n/--namespace`, handed to the command as one `cluster: Cluster`."""

    @functools.wraps(func)
    def command(*args: Any, kubeconfig: str | None, context: str | None, namespace: str | None, **kwargs: Any) -> Any:
        return func(*args, cluster=Cluster(kubeconfig, context, namespace), **kwargs)

    for option in reversed(
        (
            click.option(
                "--kubeconfig",
                default=None,
                metavar="FILE",
                help="Kubeconfig file (default: $KUBECONFIG, colon-separated files merged, else ~/.kube/config).",
            ),
            click.option("--context", default=None, help="Kubeconfig context (default: its current context)."),
            click.option(
                "-n", "--namespace", default=None, help="Namespace (default: the context's namespace, else default)."
            ),
        )
    ):
        command = option(command)
    return command
