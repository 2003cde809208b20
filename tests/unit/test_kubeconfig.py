"""Kubeconfig loading as kubectl does it (issue 18, item 2): files, merging, contexts, namespaces,
credentials (tokens, token files, exec plugins, relative certificate paths), and the one line the
CLI prints when there is no usable kubeconfig or no API server. The loading is kubernetes_asyncio's."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from onceflow_operator.cli import main
from onceflow_operator.clients.kubeconfig import KubeconfigError, kubeconfig_files, load_kubeconfig


def kubeconfig(
    path: Path,
    contexts: dict[str, dict[str, Any]],
    *,
    current: str | None = None,
    clusters: dict[str, str] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
) -> Path:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in (clusters or {}).items()],
        "users": [{"name": n, "user": u} for n, u in (users or {}).items()],
        "contexts": [{"name": n, "context": c} for n, c in contexts.items()],
    }
    if current is not None:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, Path]:
    """Two kubeconfigs as people keep them: one per cluster, both naming a context `shared`."""
    first = kubeconfig(
        tmp_path / "first",
        {"shared": {"cluster": "one", "user": "me", "namespace": "team-a"}},
        current="shared",
        clusters={"one": "https://one.example.test:6443"},
        users={"me": {"token": "first-token"}},
    )
    second = kubeconfig(
        tmp_path / "second",
        {
            "shared": {"cluster": "two", "user": "me", "namespace": "ignored"},
            "other": {"cluster": "two", "user": "me"},
        },
        current="other",
        clusters={"two": "https://two.example.test:6443"},
        users={"me": {"token": "second-token"}},
    )
    return first, second


def env_with(*files: Path, home: Path | None = None) -> dict[str, str]:
    return {"KUBECONFIG": os.pathsep.join(str(f) for f in files), "HOME": str(home or files[0].parent)}


def test_colon_separated_kubeconfig_merges_with_the_first_file_winning(two_files: tuple[Path, Path]) -> None:
    first, second = two_files
    target = load_kubeconfig(env=env_with(first, second))
    # current-context: the first file that sets it (kubectl's rule; the library alone takes the last).
    assert (target.context, target.server, target.namespace) == ("shared", "https://one.example.test:6443", "team-a")
    assert target.files == (first, second)
    # A context only the second file has is there too, with its own cluster.
    other = load_kubeconfig(context="other", env=env_with(first, second))
    assert (other.server, other.namespace) == ("https://two.example.test:6443", "default")
    # Reversed, the second file's `shared` and current-context win.
    reversed_ = load_kubeconfig(env=env_with(second, first))
    assert (reversed_.context, reversed_.server) == ("other", "https://two.example.test:6443")


async def test_the_first_file_to_name_a_user_wins_for_its_credentials(two_files: tuple[Path, Path]) -> None:
    first, second = two_files
    credentials = await load_kubeconfig(env=env_with(first, second)).credentials()
    assert credentials.headers == {"Authorization": "Bearer first-token"}


def test_missing_files_in_kubeconfig_are_skipped_and_none_at_all_is_one_clear_error(
    two_files: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_files
    assert kubeconfig_files(env=env_with(tmp_path / "gone", first)) == [first]
    with pytest.raises(KubeconfigError, match="none of these files exists; fix KUBECONFIG"):
        kubeconfig_files(env=env_with(tmp_path / "gone", tmp_path / "also-gone"))
    with pytest.raises(KubeconfigError, match=r"no kubeconfig: KUBECONFIG is not set and .*\.kube/config does not"):
        kubeconfig_files(env={"HOME": str(tmp_path)})
    with pytest.raises(KubeconfigError, match=r"--kubeconfig .*nope: no such file"):
        kubeconfig_files(str(tmp_path / "nope"), env=env_with(first))


def test_an_unknown_context_names_the_ones_there_are(two_files: tuple[Path, Path]) -> None:
    with pytest.raises(KubeconfigError) as caught:
        load_kubeconfig(context="prod", env=env_with(*two_files))
    assert "context 'prod' is not in" in str(caught.value)
    assert "contexts: shared, other" in str(caught.value)


def test_a_kubeconfig_without_current_context_asks_for_one(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "c", {"a": {"cluster": "x", "user": "u"}}, clusters={"x": "https://x.test"})
    with pytest.raises(KubeconfigError, match=r"no current-context; pass --context NAME \(contexts: a\)"):
        load_kubeconfig(str(path))
    assert load_kubeconfig(str(path), "a").server == "https://x.test"


def test_a_context_naming_a_missing_cluster_says_which(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "c", {"a": {"cluster": "gone", "user": "u"}}, current="a")
    with pytest.raises(KubeconfigError, match=r"context 'a' in .*: .*gone"):
        load_kubeconfig(str(path))


def test_a_file_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken"
    path.write_text("clusters: [\n")
    with pytest.raises(KubeconfigError, match="broken: not a readable kubeconfig"):
        load_kubeconfig(str(path))


async def test_token_files_and_exec_credential_plugins_supply_the_bearer_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-a-file\n")
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',"
        " 'status': {'token': 'from-a-plugin'}}))\n"
    )
    path = kubeconfig(
        tmp_path / "c",
        {"file": {"cluster": "x", "user": "file"}, "exec": {"cluster": "x", "user": "exec"}},
        current="file",
        clusters={"x": "https://x.test"},
        users={
            "file": {"tokenFile": "token"},  # relative: to the kubeconfig's own folder, as kubectl reads it
            "exec": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(plugin)],
                    "interactiveMode": "Never",
                }
            },
        },
    )
    assert (await load_kubeconfig(str(path)).credentials()).headers == {"Authorization": "Bearer from-a-file"}
    assert (await load_kubeconfig(str(path), "exec").credentials()).headers == {"Authorization": "Bearer from-a-plugin"}


async def test_a_failing_exec_plugin_is_one_line_naming_the_context_and_user(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "c",
        {"a": {"cluster": "x", "user": "sso"}},
        current="a",
        clusters={"x": "https://x.test"},
        users={
            "sso": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": ["-c", "import sys; sys.exit('login expired')"],
                }
            }
        },
    )
    with pytest.raises(KubeconfigError) as caught:
        await load_kubeconfig(str(path)).credentials()
    assert str(caught.value).startswith("context 'a' in ")
    assert "user 'sso': exec: process returned 1. login expired" in str(caught.value)


def _client_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(exist_ok=True)
    (folder / "alice.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "alice.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "alice.crt", folder / "alice.key"


def inline_kubeconfig(folder: Path, cert: Path, key: Path) -> Path:
    """A kubeconfig whose only user carries the certificate and key inline (`*-data`)."""
    return kubeconfig(
        folder,
        {"inline": {"cluster": "x", "user": "inline"}},
        current="inline",
        clusters={"x": "https://x.test"},
        users={
            "inline": {
                "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
                "client-key-data": base64.b64encode(key.read_bytes()).decode(),
            }
        },
    )


async def test_certificates_by_relative_path_and_inline_data_both_load(tmp_path: Path) -> None:
    cert, key = _client_certificate(tmp_path / "certs")
    path = kubeconfig(
        tmp_path / "c",
        {"files": {"cluster": "x", "user": "files"}, "inline": {"cluster": "x", "user": "inline"}},
        current="files",
        clusters={"x": "https://x.test"},
        users={
            "files": {"client-certificate": "certs/alice.crt", "client-key": "certs/alice.key"},
            "inline": {
                "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
                "client-key-data": base64.b64encode(key.read_bytes()).decode(),
            },
        },
    )
    for context in ("files", "inline"):
        credentials = await load_kubeconfig(str(path), context).credentials()
        assert credentials.headers == {}  # the certificate is the credential, presented in TLS
        assert credentials.server == "https://x.test"


async def test_an_inline_client_key_leaves_no_file_behind_and_loads_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library writes *-data entries to files to load them; none may outlive the loading.
    cert, key = _client_certificate(tmp_path / "certs")
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    path = inline_kubeconfig(tmp_path / "c", cert, key)
    target = load_kubeconfig(str(path))
    first = await target.credentials()
    assert list(temp.rglob("*")) == []
    assert first.key_data == key.read_bytes()  # kept in memory, for Kopf's login
    again = await target.credentials()  # a refresh writes and removes them again
    assert again.tls_digest == first.tls_digest
    assert list(temp.rglob("*")) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_without_any_kubeconfig_a_cluster_command_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["status"], env={"KUBECONFIG": None, "HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: no kubeconfig: KUBECONFIG is not set and {tmp_path}/.kube/config does not exist; "
        "set KUBECONFIG or pass --kubeconfig FILE (`onceflow dev up` prints one)"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["rollout", "status", "x"],
        ["rollout", "promote", "x"],
        ["exceptions", "approve", "1", "-m", "x"],
        ["console", "--port", "1"],  # checked before it serves, so it never binds the port
    ],
)
def test_an_unreachable_api_server_is_one_line_naming_it_and_the_context(tmp_path: Path, argv: list[str]) -> None:
    port = _closed_port()
    path = kubeconfig(
        tmp_path / "c",
        {"dev": {"cluster": "x", "user": "u"}},
        current="dev",
        clusters={"x": f"https://127.0.0.1:{port}"},
        users={"u": {"token": "t"}},
    )
    result = CliRunner().invoke(main, [*argv, "--kubeconfig", str(path)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"Error: cannot reach the Kubernetes API server at https://127.0.0.1:{port} (context dev): "
        "Connection refused; is the cluster up, and is this the right --context?"
    ]


def test_context_and_namespace_flags_pick_what_commands_use(two_files: tuple[Path, Path]) -> None:
    from onceflow_operator.cli.cluster import Cluster

    first, second = two_files
    merged = os.pathsep.join(str(f) for f in two_files)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBECONFIG", merged)
        assert Cluster().namespace == "team-a"
        assert Cluster(context="other").namespace == "default"
        assert Cluster(namespace_flag="ops").namespace == "ops"
        assert Cluster(kubeconfig=str(second)).target().context == "other"
        env.delenv("KUBECONFIG")
        env.setenv("HOME", str(first.parent / "nowhere"))
        # Reading NATS needs no cluster: without any kubeconfig the namespace is `default` ...
        assert Cluster().namespace_or_default() == "default"
        # ... but a kubeconfig or context asked for must be usable.
        with pytest.raises(Exception, match="no kubeconfig"):
            Cluster(context="other").namespace_or_default()


def test_exceptions_commands_take_the_namespace_from_the_context(two_files: tuple[Path, Path]) -> None:
    # No NATS listens on port 1: the error still shows the command got as far as connecting.
    merged = os.pathsep.join(str(f) for f in two_files)
    result = CliRunner().invoke(
        main, ["exceptions", "list", "--nats", "nats://127.0.0.1:1", "--context", "nope"], env={"KUBECONFIG": merged}
    )
    assert result.exit_code == 1
    assert "context 'nope' is not in" in result.output
    assert "Traceback" not in result.output


def test_the_as_flag_is_refused_with_the_reason() -> None:
    result = CliRunner().invoke(main, ["exceptions", "approve", "3", "-m", "ok", "--as", "alice"])
    assert result.exit_code == 2
    assert "--as is gone: a decision is recorded as the user your kubeconfig authenticates as" in result.output
    assert json.dumps("alice") not in result.output


def test_loads_of_one_kubeconfig_at_once_in_several_threads_never_read_each_others_removed_files(
    tmp_path: Path,
) -> None:
    """Found by CI: a CLI command in a thread and the operator in another loaded the same admin
    kubeconfig; the library's process-wide cache handed one load the certificate file another
    load had just written in its private folder and removed: `[Errno 2] No such file`."""
    import asyncio
    import threading

    cert, key = _client_certificate(tmp_path / "certs")
    path = inline_kubeconfig(tmp_path / "c", cert, key)
    failures: list[BaseException] = []

    def loads() -> None:
        async def many() -> None:
            for _ in range(60):
                await load_kubeconfig(str(path)).credentials()

        try:
            asyncio.run(many())
        except BaseException as exc:  # collected for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=loads) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
