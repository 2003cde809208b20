"""A real SFTP server for the EDI tests: asyncssh's, on 127.0.0.1, serving a temporary folder.

Password login, its own ed25519 host key; `secrets_for` lays out the poller's Secrets (password,
known_hosts naming that key, or another one) as a mounted Secret volume would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

PASSWORD = "s3cret-sftp"


@dataclass
class SftpServer:
    root: Path
    port: int
    host_key: asyncssh.SSHKey
    server: asyncssh.SSHAcceptor | None = None

    async def start(self) -> None:
        root = str(self.root).encode()

        class Login(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == "acme" and password == PASSWORD

        def chrooted(chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
            return asyncssh.SFTPServer(chan, chroot=root)

        self.server = await asyncssh.listen(
            "127.0.0.1", self.port, server_host_keys=[self.host_key], server_factory=Login, sftp_factory=chrooted
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


@pytest.fixture
async def sftp(tmp_path: Path) -> AsyncIterator[SftpServer]:
    (tmp_path / "sftp").mkdir()
    server = SftpServer(tmp_path / "sftp", 0, asyncssh.generate_private_key("ssh-ed25519"))
    await server.start()
    yield server
    await server.stop()


def secrets_for(folder: Path, server: SftpServer, key: asyncssh.SSHKey | None = None) -> Path:
    secret = folder / "secrets" / "acme-sftp"
    secret.mkdir(parents=True, exist_ok=True)
    (secret / "password").write_text(PASSWORD)
    public = (key or server.host_key).export_public_key().decode().strip()
    (secret / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {public}\n")
    return folder / "secrets"


def partner_997_for(document: bytes, control: int, *, code: str = "A") -> bytes:
    """The partner's 997 for one document we sent (AK1 names its GS06, AK2 its ST02); R rejects it (AK5 R 5)."""
    from onceflow_runner.payloads.edi.envelope import split_file

    group = split_file(document).interchanges[0].groups[0]
    st = group.sets[0]
    body = ["AK1*" + group.functional_id + "*" + group.control, f"AK2*{st.set_id}*{st.control}"]
    body += ["AK5*A"] if code == "A" else ["AK3*TDS*5**8", "AK5*R*5"]
    body.append(f"AK9*{code}*1*1*{1 if code == 'A' else 0}")
    segments = [
        f"ISA*00*          *00*          *ZZ*{'ACMEBUY':<15}*ZZ*{'ONCEDIST':<15}*261130*0400*U*00401*{control:09d}*0*P*>",
        f"GS*FA*ACMEBUY*ONCEDIST*20261130*0400*{control}*X*004010",
        "ST*997*0001",
        *body,
        f"SE*{len(body) + 2}*0001",
        f"GE*1*{control}",
        f"IEA*1*{control:09d}",
    ]
    return ("~\n".join(segments) + "~\n").encode()
