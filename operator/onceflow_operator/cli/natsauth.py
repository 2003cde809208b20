"""`onceflow nats-auth init`: keys and JWTs for a NATS installation with per-namespace identities.

Why a command: decentralized JWT auth needs an operator key, a system account, an application
account with a signing key, and the Onceflow operator's own user, made consistently; people
should not have to install `nsc` to get them. The files it writes are secrets (mode 0600).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

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
