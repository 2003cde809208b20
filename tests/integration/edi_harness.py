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
