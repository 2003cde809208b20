"""A real Kubernetes control plane (etcd + kube-apiserver) on loopback, envtest style.

Why: operator tests and the embedded demo need the real API server (CRD schemas, CEL rules,
server-side apply, RBAC), not a mock. There are no nodes, no scheduler and no
controller-manager, exactly like controller-runtime's envtest, so nothing runs pods and owner
references are not garbage-collected.

Binaries come from `KUBEBUILDER_ASSETS`, or from the cache `hack/build-control-plane.sh` fills
(it builds them once per machine from the Go module proxy). Everything binds to 127.0.0.1 on
free ports; processes are stopped by PID.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = ["K8S_VERSION", "ControlPlane", "ControlPlaneError", "default_assets_dir", "find_assets"]

K8S_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"


class ControlPlaneError(RuntimeError):
    """The control plane could not be found or started; the message says what to do."""


def default_assets_dir() -> Path:
    """Where hack/build-control-plane.sh puts the binaries."""
    base = os.environ.get("ONCEFLOW_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "onceflow"
    )
    return Path(base) / "control-plane" / f"{K8S_VERSION}-{ETCD_VERSION}"


def find_assets() -> Path:
    """Return the folder holding kube-apiserver and etcd, or say how to get them."""
    candidates = [Path(p) for p in [os.environ.get("KUBEBUILDER_ASSETS", "")] if p] + [default_assets_dir()]
    for folder in candidates:
        if (folder / "kube-apiserver").is_file() and (folder / "etcd").is_file():
            return folder
    raise ControlPlaneError(
        "kube-apiserver and etcd not found in "
        + ", ".join(str(c) for c in candidates)
        + "; run hack/build-control-plane.sh (builds them once from the Go module proxy) "
        "or set KUBEBUILDER_ASSETS"
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _name(common_name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver started as child processes, with an admin kubeconfig.

    Use as a context manager, or call `start()` and `stop()`.
    """

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="onceflow-cp-")))
    assets: Path | None = None
    admin_user: str = "onceflow-admin"
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    url: str = ""
    #: Write an audit log (metadata of every request: who, verb, resource) to `audit_log`; for tests
    #: and benchmarks that count the requests one client makes.
    audit: bool = False
    #: The CA's name and key, kept in memory only, to sign people's client certificates (`user_kubeconfig`).
    _ca: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> Path:
        """Path of the admin kubeconfig (system:masters, client certificate)."""
        return self.workdir / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines) when started with `audit=True`."""
        return self.workdir / "logs" / "audit.log"

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit event so far (one per request, at the ResponseComplete stage)."""
        if not self.audit_log.exists():
            return []
        events = []
        for line in self.audit_log.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        return events

    @property
    def pids(self) -> list[int]:
        """PIDs of the running processes, etcd first."""
        return [p.pid for p in self._procs]

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        """Start etcd and kube-apiserver and wait until the API server is ready."""
        assets = self.assets or find_assets()
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        client_cert, client_key, ca_pem = self._write_pki(pki)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.url = f"https://127.0.0.1:{api_port}"
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self._spawn(
            [
                str(assets / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            logs / "etcd.log",
        )
        self._spawn(
            [
                str(assets / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={self.url}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=0",
                *self._audit_flags(),
            ],
            logs / "kube-apiserver.log",
        )
        self._write_kubeconfig(ca_pem, client_cert, client_key)
        try:
            self._wait_ready(pki, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the processes by PID, the apiserver before etcd, and remove the work folder.

        One after the other: an apiserver whose etcd is still there exits in about a second; with
        both signalled at once it spends over ten retrying the vanished etcd before it exits.
        """
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _audit_flags(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived", "ResponseStarted"],
                    "rules": [{"level": "Metadata"}],
                }
            )
        )
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=0",
        ]

    def _spawn(self, argv: list[str], log: Path) -> None:
        with log.open("wb") as out:
            self._procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def _write_pki(self, pki: Path) -> tuple[bytes, bytes, bytes]:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("onceflow-test-ca")
        ca = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)
        self._ca = (ca_name, ca_key)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _issue(_name("kube-apiserver"), server_key, ca_name, ca_key, server=True)
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = _issue(_name(self.admin_user, "system:masters"), client_key, ca_name, ca_key)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files = {
            "ca.crt": _pem_cert(ca),
            "apiserver.crt": _pem_cert(server),
            "apiserver.key": _pem_key(server_key),
            "admin.crt": _pem_cert(client),
            "admin.key": _pem_key(client_key),
            "sa.key": _pem_key(sa_key),
            "sa.pub": sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }
        for name, data in files.items():
            (pki / name).write_bytes(data)
            (pki / name).chmod(0o600)
        return files["admin.crt"], files["admin.key"], files["ca.crt"]

    def _write_kubeconfig(self, ca: bytes, cert: bytes, key: bytes) -> None:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "onceflow-local",
                    "cluster": {"server": self.url, "certificate-authority-data": b64(ca)},
                }
            ],
            "users": [
                {
                    "name": self.admin_user,
                    "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
                }
            ],
            "contexts": [
                {
                    "name": "onceflow-local",
                    "context": {"cluster": "onceflow-local", "user": self.admin_user, "namespace": "default"},
                }
            ],
            "current-context": "onceflow-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def user_kubeconfig(self, path: Path, user: str, groups: tuple[str, ...] = (), *, namespace: str = "") -> Path:
        """Write a kubeconfig for a person: a client certificate for `user` in `groups`, signed by this CA.

        Why: the API server then authenticates `user` as a cluster with an OIDC or certificate
        login would, and RBAC decides what they may do (the admin kubeconfig may do everything).
        """
        if self._ca is None:
            raise ControlPlaneError("the control plane is not started")
        ca_name, ca_key = self._ca
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        cert = _issue(x509.Name(attrs), key, ca_name, ca_key)
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [
            {
                "name": user,
                "user": {
                    "client-certificate-data": base64.b64encode(_pem_cert(cert)).decode(),
                    "client-key-data": base64.b64encode(_pem_key(key)).decode(),
                },
            }
        ]
        config["contexts"][0]["context"].update({"user": user, "namespace": namespace or "default"})
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _wait_ready(self, pki: Path, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for proc, name in zip(self._procs, ("etcd", "kube-apiserver"), strict=True):
                if proc.poll() is not None:
                    tail = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise ControlPlaneError(f"{name} exited with code {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=context, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.25)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f}s: {last}")


def main() -> None:
    """Start a control plane, print how to reach it, and stop it on Ctrl-C or SIGTERM."""
    import sys

    with ControlPlane() as cp:
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        print(f"# kube-apiserver {cp.url}, pids {cp.pids}; Ctrl-C stops it", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
