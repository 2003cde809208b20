"""Two EDI pods uploading the same document at once (a hand-over redelivered to a second pod while the
first still sends it): the partner's folder must only ever hold the whole file, and neither pod fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

from onceflow_runner.adapters.sftp import open_session
from tests.integration.edi_harness import SftpServer, secrets_for, sftp
from tests.unit.edi_files import partner_plan

__all__ = ["sftp"]  # the fixture, imported for pytest


async def test_two_writers_of_one_file_leave_it_whole_and_both_succeed(sftp: SftpServer, tmp_path: Path) -> None:
    # With one shared temporary name, the second writer truncated the first one's temporary file, the
    # first renamed it (a partial file under the final name) and the second's rename found nothing.
    plan = partner_plan(port=sftp.port)
    secrets = secrets_for(tmp_path, sftp)
    (sftp.root / "from-onceflow").mkdir()
    data = b"ISA" + b"x" * (4 * 1024 * 1024) + b"IEA~\n"
    target = "/from-onceflow/810_acme-edi_000000001.x12"
    async with await open_session(plan.sftp, secrets) as first, await open_session(plan.sftp, secrets) as second:
        for _ in range(3):
            results = await asyncio.gather(
                first.write(target, data), second.write(target, data), return_exceptions=True
            )
            assert results == [None, None]
            assert (sftp.root / "from-onceflow" / "810_acme-edi_000000001.x12").read_bytes() == data
    assert sorted(p.name for p in (sftp.root / "from-onceflow").iterdir()) == ["810_acme-edi_000000001.x12"]
