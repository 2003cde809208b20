"""`onceflow nats-auth init`: the files a NATS installation and the operator need, private, never over others."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from onceflow_operator.build.natsauth import Key, decode_jwt
from onceflow_operator.cli import main


def test_init_writes_private_files_the_server_and_the_operator_read(tmp_path: Path) -> None:
    out = tmp_path / "auth"
    result = CliRunner().invoke(main, ["nats-auth", "init", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for name in ("auth.conf", "operator.creds", "account-signing-key"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    conf = (out / "auth.conf").read_text()
    assert "resolver: MEMORY" in conf
    assert "max_control_line: 16384" in conf
    account = next(w for w in result.output.split() if w.startswith("A") and len(w) == 56)
    assert account in conf  # the application account is preloaded
    signing = Key.of((out / "account-signing-key").read_text())
    creds = (out / "operator.creds").read_text()
    claims = decode_jwt(creds.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0])
    assert (claims["iss"], claims["nats"]["issuer_account"]) == (signing.public, account)
    assert "pub" not in claims["nats"]  # the operator's own user is not restricted


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("x")
    result = CliRunner().invoke(main, ["nats-auth", "init", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "is not empty" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]


def test_init_for_account_isolation_writes_a_full_resolver_and_the_keys_to_sign_accounts(tmp_path: Path) -> None:
    out = tmp_path / "auth"
    result = CliRunner().invoke(main, ["nats-auth", "init", "--out", str(out), "--isolation", "account"])
    assert result.exit_code == 0, result.output
    conf = (out / "auth.conf").read_text()
    assert "type: full" in conf
    assert "allow_delete: false" in conf
    operator_claims = decode_jwt(conf.split("operator: ")[1].split("\n")[0])
    signing = Key.of((out / "operator-signing-key").read_text())
    assert signing.seed.startswith("SO")
    assert operator_claims["nats"]["signing_keys"] == [signing.public]  # the servers trust accounts it signs
    system = (out / "system.creds").read_text()
    claims = decode_jwt(system.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0])
    assert claims["iss"] == operator_claims["nats"]["system_account"]
    # It may push and read accounts, nothing else.
    assert claims["nats"]["pub"] == {"allow": ["$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"]}
    for name in ("operator-signing-key", "system.creds"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
        assert f"--from-file={out}/{name}" in result.output


def test_creds_mints_an_expiring_user_of_the_namespaces_account(tmp_path: Path) -> None:
    from onceflow_operator.build.natsauth import namespace_account_key

    signing = Key.new("operator")
    key_file = tmp_path / "operator-signing-key"
    key_file.write_text(signing.seed + "\n")
    out = tmp_path / "alpha.creds"
    args = ["nats-auth", "creds", "-n", "alpha", "--signing-key-file", str(key_file), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--expires", "1h"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    claims = decode_jwt(out.read_text().split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0])
    assert claims["iss"] == namespace_account_key(signing, "alpha").public
    assert 3500 < claims["exp"] - claims["iat"] <= 3600
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0
    assert "exists" in again.output
    key_file.write_text(Key.new("account").seed)
    wrong = CliRunner().invoke(main, [*args[:-1], str(tmp_path / "b.creds")])
    assert "not an operator seed" in wrong.output
