"""SFTP to a trading partner with asyncssh: host key checked, files listed, claimed, read and written.

Why asyncssh: maintained, pure asyncio (the runner's loop), typed, and its server side lets the
tests run the real protocol on 127.0.0.1. Host key checking is always on: the Connector names a
Secret holding known_hosts lines, and a server whose key is not among them is refused (no
trust-on-first-use). Passwords and private keys come from mounted Secrets and are never logged.

Claims rely on SFTP's plain `rename`, which fails when the source is gone or the target exists:
of two replicas renaming the same file, exactly one succeeds. Writes go to a hidden temporary
name and are renamed into place, so a partner never picks up half a document.
"""

from __future__ import annotations

import contextlib
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType

import asyncssh

from onceflow_runner.adapters.outbound import read_secret
from onceflow_runner.contract.edi import SftpEndpoint
from onceflow_runner.errors import PlanError

__all__ = ["RemoteFile", "SftpSession", "SftpUnavailable", "open_session"]


class SftpUnavailable(Exception):
    """The server could not be reached or refused us: try again later (the file stays where it is)."""


@dataclass(frozen=True)
class RemoteFile:
    """A regular file in a listing."""

    name: str
    size: int
    mtime: int


class SftpSession:
    """One SSH connection with its SFTP channel; use `async with open_session(...)`."""

    def __init__(self, conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient) -> None:
        self.conn, self.sftp = conn, sftp

    async def __aenter__(self) -> SftpSession:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.sftp.exit()
        self.conn.close()
        await self.conn.wait_closed()

    async def ensure_folder(self, path: str) -> None:
        if not await self.sftp.isdir(path):
            await self.sftp.makedirs(path, exist_ok=True)

    async def files(self, folder: str) -> list[RemoteFile]:
        """Regular files directly in `folder` (folders, links and dot-files other than ours are skipped)."""
        found = []
        for entry in await self.sftp.readdir(folder):
            name = str(entry.filename)
            attrs = entry.attrs
            if name in (".", "..") or attrs.permissions is None or not stat.S_ISREG(attrs.permissions):
                continue
            found.append(RemoteFile(name, int(attrs.size or 0), int(attrs.mtime or 0)))
        return found

    async def claim(self, source: str, target: str) -> bool:
        """Rename `source` to `target`; False when another replica got there first (source gone, target taken)."""
        try:
            await self.sftp.rename(source, target)
        except asyncssh.SFTPError:
            return False
        return True

    async def read(self, path: str, *, limit: int) -> bytes | None:
        """The file's bytes, or None when it is larger than `limit`."""
        async with self.sftp.open(path, "rb") as handle:
            data: bytes = await handle.read(limit + 1)
        return None if len(data) > limit else data

    async def write(self, path: str, data: bytes) -> None:
        """Write `path` whole: to a hidden temporary name first, then renamed over the target.

        The temporary name is this write's own: two pods sending one document at once (a hand-over
        redelivered while the first pod still sends it) each rename a whole file, where a shared
        name let the second truncate the first's file just before it was renamed into place. A
        failed write removes its temporary file; only a killed process leaves one behind.
        """
        target = PurePosixPath(path)
        temporary = str(target.with_name(f".{target.name}.{secrets.token_hex(4)}.onceflow-tmp"))
        try:
            async with self.sftp.open(temporary, "wb") as handle:
                await handle.write(data)
            try:
                await self.sftp.posix_rename(temporary, path)
            except asyncssh.SFTPOpUnsupported:
                if await self.sftp.exists(path):
                    await self.sftp.remove(path)
                await self.sftp.rename(temporary, path)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.sftp.remove(temporary)
            raise

    async def move(self, source: str, target: str) -> None:
        """Move a file we hold; an existing target is replaced."""
        try:
            await self.sftp.posix_rename(source, target)
        except asyncssh.SFTPOpUnsupported:
            if await self.sftp.exists(target):
                await self.sftp.remove(target)
            await self.sftp.rename(source, target)


async def open_session(endpoint: SftpEndpoint, secrets_dir: Path) -> SftpSession:
    """Connect and authenticate; SftpUnavailable for network or server trouble, PlanError for bad settings."""
    known_hosts_text = read_secret(secrets_dir, endpoint.known_hosts)
    if not known_hosts_text.strip():
        raise PlanError(f"sftp.knownHosts Secret {endpoint.known_hosts.name}/{endpoint.known_hosts.key} is empty")
    try:
        known_hosts = asyncssh.import_known_hosts(known_hosts_text)
    except (ValueError, asyncssh.KeyImportError) as exc:
        raise PlanError(f"sftp.knownHosts: not known_hosts lines ({exc})") from None
    username = read_secret(secrets_dir, endpoint.user) if endpoint.user is not None else endpoint.username
    options: dict[str, object] = {}
    if endpoint.password is not None:
        options["password"] = read_secret(secrets_dir, endpoint.password)
    if endpoint.private_key is not None:
        try:
            options["client_keys"] = [asyncssh.import_private_key(read_secret(secrets_dir, endpoint.private_key))]
        except asyncssh.KeyImportError as exc:
            raise PlanError(f"sftp.privateKey: not a private key ({exc})") from None
    else:
        options["client_keys"] = None
    try:
        conn = await asyncssh.connect(
            endpoint.host,
            endpoint.port,
            username=username,
            known_hosts=known_hosts,
            connect_timeout=endpoint.connect_seconds,
            agent_path=None,
            config=None,
            **options,
        )
        sftp = await conn.start_sftp_client()
    except asyncssh.HostKeyNotVerifiable as exc:
        raise SftpUnavailable(
            f"sftp {endpoint.host}:{endpoint.port}: host key not in sftp.knownHosts ({exc.reason}); refused"
        ) from None
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        raise SftpUnavailable(f"sftp {endpoint.host}:{endpoint.port}: {type(exc).__name__}: {exc}") from None
    return SftpSession(conn, sftp)
