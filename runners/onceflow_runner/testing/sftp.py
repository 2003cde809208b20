"""A trading partner's SFTP server for the demo: asyncssh's real SSH/SFTP on 127.0.0.1, one folder.

Why a sandbox: `onceflow dev demo` plays an EDI partner end to end (docs/edi.md), which needs an
SFTP server with a host key the Connector's `known_hosts` names and a login its Secret holds. The
partner's side is the folder on disk: the demo writes 850s into `to-onceflow/` and reads what
Onceflow drops into `from-onceflow/`. Development and evaluation only.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import asyncssh

__all__ = ["SftpSandbox"]


class SftpSandbox:
    """An SFTP server chrooted to `root`, password login for `username`, its own ed25519 host key."""

    def __init__(self, root: Path, *, username: str = "onceflow") -> None:
        self.root, self.username = root, username
        self.password = secrets.token_urlsafe(16)
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.port = 0
        self._server: asyncssh.SSHAcceptor | None = None

    def known_hosts(self) -> str:
        """The known_hosts line the Connector's Secret needs for this server."""
        public = self.host_key.export_public_key().decode().strip()
        return f"[127.0.0.1]:{self.port} {public}"

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        chroot = str(self.root).encode()
        username, password = self.username, self.password

        class Login(asyncssh.SSHServer):
            def begin_auth(self, user: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, user: str, given: str) -> bool:
                return user == username and secrets.compare_digest(given, password)

        def sftp(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
            return asyncssh.SFTPServer(chan, chroot=chroot)

        self._server = await asyncssh.listen(
            "127.0.0.1", self.port, server_host_keys=[self.host_key], server_factory=Login, sftp_factory=sftp
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
