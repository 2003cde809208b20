"""What an EDI trading partner is to the data plane: envelope identity and SFTP folders (the contract).

Why a contract model: the operator will write it from a Connector of `type: EDI` (docs/edi.md
says why that is a Connector type and not a new kind), and the inbound poller and, later, the
outbound steps read it; both sides share this one definition, as they share the plan. Secrets
are references (`SecretRef`, read from the mounted Secret volume), never values.

The envelope identity is everything a partner's implementation guide fixes for the ISA and GS
segments: qualifiers and ids on both sides, the GS application codes, separators, the version
and the test/production indicator (ISA15). Inbound interchanges addressed otherwise are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from onceflow_runner.contract.plan import PLAN_VERSION, SecretRef
from onceflow_runner.errors import PlanError

__all__ = ["EdiEnvelope", "EdiIdentity", "EdiPartnerPlan", "SftpEndpoint", "load_edi_plan"]

_SEPARATOR = r"^[^A-Za-z0-9 ]$"


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EdiIdentity(_Contract):
    """One side of an interchange: ISA05/ISA07 qualifier, ISA06/ISA08 id, and the GS02/GS03 application code."""

    qualifier: str = Field(pattern=r"^[A-Z0-9]{2}$", description="ISA05/ISA07, e.g. ZZ (mutually defined), 01 (DUNS).")
    id: str = Field(pattern=r"^[!-~][ -~]{0,14}$", description="ISA06/ISA08, at most 15 characters.")
    application_code: str = Field(
        alias="applicationCode", pattern=r"^[ -~]{2,15}$", description="GS02 (sender) / GS03 (receiver)."
    )


class EdiEnvelope(_Contract):
    """The envelope both sides agreed: who is who, separators, version, test or production."""

    ours: EdiIdentity
    partner: EdiIdentity
    element_separator: str = Field(default="*", alias="elementSeparator", pattern=_SEPARATOR)
    component_separator: str = Field(default=">", alias="componentSeparator", pattern=_SEPARATOR)
    segment_terminator: str = Field(default="~", alias="segmentTerminator", pattern=_SEPARATOR)
    version: Literal["00401"] = Field(default="00401", description="ISA12; GS08 is 004010.")
    usage: Literal["P", "T"] = Field(default="P", description="ISA15: P production, T test.")

    @model_validator(mode="after")
    def _distinct(self) -> EdiEnvelope:
        if len({self.element_separator, self.component_separator, self.segment_terminator}) != 3:
            raise ValueError("elementSeparator, componentSeparator and segmentTerminator must differ")
        return self


class SftpEndpoint(_Contract):
    """Where the partner's SFTP server is, how we log in, and which folders mean what."""

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=22, ge=1, le=65535)
    user: SecretRef | None = None
    username: str = Field(default="", max_length=128, description="Login name when not from a Secret.")
    password: SecretRef | None = None
    private_key: SecretRef | None = Field(default=None, alias="privateKey")
    #: known_hosts lines for the server: host key checking is always on; an unknown key is refused.
    known_hosts: SecretRef = Field(alias="knownHosts")
    pickup: str = Field(default="/outbound", description="Folder the partner drops files in for us.")
    drop: str = Field(default="/inbound", description="Folder we drop files in for the partner.")
    done_folder: str = Field(default="done", alias="doneFolder", description="Under pickup: processed files.")
    claim_folder: str = Field(default=".claimed", alias="claimFolder", description="Under pickup: files being read.")
    temp_suffixes: tuple[str, ...] = Field(default=(".tmp", ".part", ".filepart"), alias="tempSuffixes")
    poll_seconds: float = Field(default=30.0, alias="pollSeconds", gt=0, le=3600)
    lease_seconds: float = Field(default=600.0, alias="leaseSeconds", gt=0, le=86400)
    connect_seconds: float = Field(default=15.0, alias="connectSeconds", gt=0, le=300)
    max_file_bytes: int = Field(default=16 * 1024 * 1024, alias="maxFileBytes", ge=1024, le=512 * 1024 * 1024)

    @model_validator(mode="after")
    def _login(self) -> SftpEndpoint:
        if self.user is None and not self.username:
            raise ValueError("sftp needs a user (a Secret reference) or a username")
        if self.password is None and self.private_key is None:
            raise ValueError("sftp needs a password or a privateKey Secret reference")
        return self


class EdiPartnerPlan(_Contract):
    """One trading partner as the EDI poller runs it."""

    plan_version: str = Field(default=PLAN_VERSION, alias="planVersion")
    namespace: str
    connector: str
    system: str = ""
    envelope: EdiEnvelope
    sftp: SftpEndpoint
    #: Transaction sets taken in; others are rejected with 997 AK5 code 1 (not supported).
    accept: tuple[str, ...] = ("850",)
    #: Documents `sendEdi` steps may send to this partner (855, 856, 810).
    send: tuple[str, ...] = ()
    #: Seconds a sent document may wait for the partner's 997 before it becomes an exception.
    acknowledgment_deadline_seconds: float = Field(default=86400.0, alias="acknowledgmentDeadlineSeconds", gt=0)


def load_edi_plan(path: Path) -> EdiPartnerPlan:
    """Read an EDI poller's plan file; PlanError (one line naming the problem) when it cannot be run."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlanError(f"cannot read plan {path}: {exc}") from None
    if not isinstance(raw, dict) or raw.get("planVersion") != PLAN_VERSION:
        found = raw.get("planVersion") if isinstance(raw, dict) else None
        raise PlanError(f"plan {path} has planVersion {found!r}; this poller understands {PLAN_VERSION!r}")
    try:
        return EdiPartnerPlan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanError(f"plan {path}: {where}: {first['msg']}") from None
