"""The `edi` block of a Connector of type EDI: one trading partner, its envelope and its SFTP folders.

Why a Connector type and not a new kind (docs/edi.md): a trading partner is "how Onceflow
reaches one external system", which is what a Connector is; Integrations already name
Connectors as triggers and call targets, Secrets are already checked and watched per
Connector, and the operator already runs one Deployment per inbound Connector. A new kind
would duplicate all of that for one more transport. The block is written so the second half of
issue #13 (outbound 855/856/810, 997 matching) adds fields here, not a new resource.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from onceflow_operator.api._base import DURATION, ApiModel, SecretKeyRef, cel_rules

__all__ = ["EdiConnector", "EdiEnvelopeSpec", "EdiIdentitySpec", "SftpSpec"]

TransactionSetId = Literal["850", "860", "875"]
OutboundDocument = Literal["855", "856", "810"]
_SEPARATOR = r"^[^A-Za-z0-9 ]$"


def _only_850() -> list[TransactionSetId]:
    return ["850"]


_FOLDER = r"^/[^\s]*$"


class EdiIdentitySpec(ApiModel):
    """One side of the interchange as the partner's implementation guide fixes it."""

    qualifier: str = Field(
        description="ISA05/ISA07 qualifier, e.g. ZZ (mutually defined), 01 (DUNS).",
        pattern=r"^[A-Z0-9]{2}$",
        max_length=2,
    )
    id: str = Field(
        description="ISA06/ISA08 interchange id, at most 15 characters.", pattern=r"^[!-~][ -~]{0,14}$", max_length=15
    )
    application_code: str = Field(
        description="GS02 (as sender) / GS03 (as receiver) application code.", pattern=r"^[ -~]{2,15}$", max_length=15
    )


class EdiEnvelopeSpec(ApiModel):
    """Who is who in the ISA/GS segments, the separators, the version and test or production."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "self.elementSeparator != self.componentSeparator && "
                "self.elementSeparator != self.segmentTerminator && "
                "self.componentSeparator != self.segmentTerminator",
                "envelope.elementSeparator, componentSeparator and segmentTerminator must all differ",
            ),
        )
    }

    ours: EdiIdentitySpec = Field(description="Our identity (ISA07/08 and GS03 inbound; ISA05/06 and GS02 outbound).")
    partner: EdiIdentitySpec = Field(description="The partner's identity; interchanges from anyone else are refused.")
    element_separator: str = Field(
        default="*", description="Element separator we send.", pattern=_SEPARATOR, max_length=1
    )
    component_separator: str = Field(
        default=">", description="Component separator (ISA16) we send.", pattern=_SEPARATOR, max_length=1
    )
    segment_terminator: str = Field(
        default="~", description="Segment terminator we send.", pattern=_SEPARATOR, max_length=1
    )
    version: Literal["00401"] = Field(default="00401", description="ISA12 version (GS08 004010).")
    usage: Literal["P", "T"] = Field(
        default="P", description="ISA15: P production or T test; an interchange with the other is refused (TA1 014)."
    )


class SftpSpec(ApiModel):
    """The partner's (or VAN's) SFTP server: host key checked, credentials from Secrets, folders."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "has(self.userRef) || (has(self.username) && self.username != '')",
                "sftp needs userRef (a Secret key) or username",
            ),
            ("has(self.passwordRef) || has(self.privateKeyRef)", "sftp needs passwordRef or privateKeyRef"),
        )
    }

    host: str = Field(description="Host name or address of the SFTP server.", min_length=1, max_length=253)
    port: int = Field(default=22, description="SSH port.", ge=1, le=65535)
    username: str | None = Field(default=None, description="Login name, when it is not secret.", max_length=128)
    user_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the login name.")
    password_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the password.")
    private_key_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding an OpenSSH private key (unencrypted)."
    )
    known_hosts_ref: SecretKeyRef = Field(
        description="Secret key holding known_hosts lines for the server. Host keys are always checked; "
        "a server whose key is not listed is refused."
    )
    pickup: str = Field(
        default="/outbound", description="Folder the partner drops files in for us.", pattern=_FOLDER, max_length=1024
    )
    drop: str = Field(
        default="/inbound", description="Folder we drop files in for the partner.", pattern=_FOLDER, max_length=1024
    )
    done_folder: str = Field(
        default="done",
        description="Folder under pickup for processed files.",
        pattern=r"^[A-Za-z0-9._-]+$",
        max_length=255,
    )
    claim_folder: str = Field(
        default=".claimed",
        description="Folder under pickup for files being read (claimed by rename, with a lease).",
        pattern=r"^[A-Za-z0-9._-]+$",
        max_length=255,
    )
    temp_suffixes: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=lambda: [".tmp", ".part", ".filepart"],
        description="Files whose names end so are still being written by the partner and never taken.",
        max_length=16,
    )
    poll_interval: str = Field(default="30s", description="Time between listings.", pattern=DURATION, max_length=32)
    lease: str = Field(
        default="10m",
        description="How long a claimed file is held; a file claimed by a replica that died is taken again after it.",
        pattern=DURATION,
        max_length=32,
    )
    max_file_bytes: int = Field(
        default=1048576,
        description="Larger files are left in the claim folder for a person (also capped by the NATS max payload).",
        ge=1024,
        le=67108864,
    )


class EdiConnector(ApiModel):
    """One EDI trading partner over SFTP: files polled in (a record per set, 997s back), documents sent out."""

    envelope: EdiEnvelopeSpec = Field(description="The interchange envelope both sides agreed.")
    sftp: SftpSpec = Field(description="Where files are picked up and dropped.")
    accept: list[TransactionSetId] = Field(
        default_factory=_only_850,
        description=(
            "Transaction sets taken in (850 purchase order, 860 change, 875 grocery order); any other is"
            " rejected in the 997 (AK5 code 1, not supported)."
        ),
        min_length=1,
        max_length=8,
    )
    send: list[OutboundDocument] = Field(
        default_factory=list,
        description="Documents sendEdi steps may send to this partner (855, 856, 810); dropped in sftp.drop.",
        max_length=3,
    )
    acknowledgment_deadline: str = Field(
        default="24h",
        description="How long a sent document may wait for the partner's 997 before it becomes an exception "
        "(AcknowledgmentOverdue) a person sees.",
        pattern=DURATION,
        max_length=32,
    )
    replicas: int = Field(
        default=1, description="Poller pods; files are claimed so that each is taken once.", ge=0, le=10
    )
