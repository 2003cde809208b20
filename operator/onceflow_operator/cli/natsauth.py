"""`onceflow nats-auth init`: keys and JWTs for a NATS installation with per-namespace identities.

Why a command: decentralized JWT auth needs an operator key, a system account, an application
account with a signing key, and the Onceflow operator's own user, made consistently; people
should not have to install `nsc` to get them. The files it writes are secrets (mode 0600).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from onceflow_operator.cli.output import nats_option

if TYPE_CHECKING:
    from onceflow_operator.build.natsauth import Key

__all__ = ["nats_auth"]


@click.group("nats-auth")
def nats_auth() -> None:
    """NATS credentials: per-namespace users the operator issues (docs/install.md, "NATS credentials")."""


@nats_auth.command("init")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="A new folder for auth.conf (NATS servers), operator.creds and account-signing-key (the operator).",
)
@click.option("--name", default="onceflow", show_default=True, help="The NATS operator's and account's name.")
@click.option(
    "--isolation",
    type=click.Choice(["user", "account"]),
    default="user",
    show_default=True,
    help="user: one account, a user per namespace (MEMORY resolver). account: an account per namespace"
    " (full resolver; also writes operator-signing-key and system.creds). docs/install.md compares them.",
)
@click.option(
    "--jwt-dir",
    default="/data/jwt",
    show_default=True,
    help="With --isolation account: where each NATS server stores the account JWTs pushed to it.",
)
def nats_auth_init(out: Path, name: str, isolation: str, jwt_dir: str) -> None:
    """Make a NATS operator, system and application accounts, and the Onceflow operator's user."""
    from onceflow_operator.build.natsauth import bootstrap

    if out.exists() and any(out.iterdir()):
        raise click.ClickException(f"--out {out} is not empty; choose a new folder (these files are secrets)")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    made = bootstrap(name)
    accounts = isolation == "account"
    files = {
        "auth.conf": made.server_config("full" if accounts else "memory", jwt_dir),
        "operator.creds": made.operator_creds,
        "account-signing-key": made.signing.seed + "\n",
    }
    if accounts:
        files["operator-signing-key"] = made.operator_signing.seed + "\n"
        files["system.creds"] = made.system_creds
    for file, text in files.items():
        path = out / file
        path.touch(mode=0o600)
        path.write_text(text)
    click.echo(f"wrote {', '.join(files)} to {out}")
    click.echo(f"application account: {made.account.public}   (chart value nats.jwt.account)")
    click.echo("next: include auth.conf in the NATS servers' configuration (helm/examples/nats-values.yaml);")
    click.echo(
        "      kubectl -n <operator namespace> create secret generic onceflow-nats-jwt"
        + "".join(f" --from-file={out}/{file}" for file in files if file != "auth.conf")
    )
    if accounts:
        click.echo("      and set the chart value nats.isolation=account")


_signing_key_option = click.option(
    "--signing-key-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The operator signing key (operator-signing-key from `nats-auth init --isolation account`).",
)


def _operator_signing_key(path: Path) -> Key:
    """The operator signing key in `path`; a one-line error naming the option when it is not one."""
    from onceflow_operator.build.natsauth import Key

    try:
        signing = Key.of(path.read_text())
    except ValueError as exc:
        raise click.ClickException(f"--signing-key-file {path}: {exc}") from None
    if not signing.seed.startswith("SO"):
        raise click.ClickException(f"--signing-key-file {path}: not an operator seed (it starts with SO)")
    return signing


@nats_auth.command("creds")
@click.option("--namespace", "-n", required=True, help="The namespace whose account the user belongs to.")
@_signing_key_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="A new .creds file (mode 0600), for ONCEFLOW_NATS_CREDS_FILE or the nats CLI's --creds.",
)
@click.option("--expires", default="8h", show_default=True, help="How long the user is valid (e.g. 30m, 8h, 7d).")
def nats_auth_creds(namespace: str, signing_key_file: Path, out: Path, expires: str) -> None:
    """A short-lived user with every right in one namespace's account (account isolation).

    Why: in account mode each namespace's records are in its own account, so a person reviewing
    exceptions (`onceflow exceptions`) or inspecting streams needs a user of that account; it
    expires, so a copied file does not stay a key to the namespace.
    """
    import time

    from onceflow_operator.build.natsauth import Key, creds, namespace_account_key, user_jwt
    from onceflow_runner.contract.durations import parse_duration

    try:
        seconds = parse_duration(expires, days=True)
    except ValueError as exc:
        raise click.ClickException(f"--expires {expires}: {exc}") from None
    signing = _operator_signing_key(signing_key_file)
    if out.exists():
        raise click.ClickException(f"--out {out} exists; choose a new file (it is a secret)")
    account = namespace_account_key(signing, namespace)
    user = Key.new("user")
    until = int(time.time() + seconds)
    token = user_jwt(account, account.public, user.public, f"person/{namespace}", expires=until)
    out.touch(mode=0o600)
    out.write_text(creds(token, user.seed))
    click.echo(f"wrote {out}: a user of namespace {namespace}'s account {account.public}, valid for {expires}")


@nats_auth.command("revoke")
@nats_option
@click.option("--namespace", "-n", required=True, help="The namespace whose account the users belong to.")
@_signing_key_option
@click.option(
    "--system-creds-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The system user (system.creds from `nats-auth init --isolation account`).",
)
@click.option(
    "--creds-file",
    "creds_files",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    multiple=True,
    help="A leaked .creds whose user to revoke (repeatable).",
)
@click.option("--user", "users", multiple=True, help="A user's public key (U...) to revoke (repeatable).")
def nats_auth_revoke(
    nats_url: str,
    namespace: str,
    signing_key_file: Path,
    system_creds_file: Path,
    creds_files: tuple[Path, ...],
    users: tuple[str, ...],
) -> None:
    """Revoke users of one namespace's account (account isolation): refused and disconnected at once.

    The revocation is pushed to the servers in the account JWT, and the operator keeps it when it
    pushes that account again (it reads the revocations back from the servers).
    """
    from onceflow_operator.build.natsauth import decode_jwt
    from onceflow_operator.clients.accounts import AccountError, Accounts, AccountSettings

    found = list(users)
    for path in creds_files:
        text = path.read_text()
        try:
            found.append(str(decode_jwt(text.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0])["sub"]))
        except (IndexError, ValueError, KeyError):
            raise click.ClickException(f"--creds-file {path}: not a NATS .creds file") from None
    bad = [user for user in found if not (user.startswith("U") and len(user) == 56)]
    if bad or not found:
        raise click.ClickException(
            f"--user {bad[0]!r} is not a user public key (U..., 56 characters)"
            if bad
            else "give --creds-file or --user"
        )
    signing = _operator_signing_key(signing_key_file)
    accounts = Accounts(nats_url, AccountSettings(signing, system_creds_file.read_text(), limits=None))

    async def revoke() -> None:
        try:
            await accounts.revoke(namespace, found)
        finally:
            await accounts.close()

    try:
        asyncio.run(revoke())
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # NATS away or refusing the system user: one line, no traceback
        raise click.ClickException(
            f"could not reach NATS at {nats_url} as the system user ({type(exc).__name__})"
        ) from None
    click.echo(f"revoked {len(found)} user(s) of namespace {namespace}'s account")
