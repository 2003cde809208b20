"""A Connector of type EDI compiled into its inbound poller's plan (`contract.edi.EdiPartnerPlan`), pure."""

from __future__ import annotations

from onceflow_operator.api import Connector
from onceflow_operator.compiler.planner import InvalidSpec, SpecProblem
from onceflow_runner.contract.durations import parse_duration
from onceflow_runner.contract.edi import EdiEnvelope, EdiIdentity, EdiPartnerPlan, SftpEndpoint
from onceflow_runner.contract.plan import SecretRef

__all__ = ["edi_partner_plan"]


def _ref(ref: object) -> SecretRef | None:
    name, key = getattr(ref, "name", None), getattr(ref, "key", None)
    return SecretRef(name=name, key=key) if name and key else None


def edi_partner_plan(connector: Connector, *, namespace: str) -> EdiPartnerPlan:
    """The plan of a Connector's EDI poller; InvalidSpec naming the field when it cannot be one."""
    edi = connector.spec.edi
    name = str(connector.metadata.get("name"))
    if edi is None:
        raise InvalidSpec([SpecProblem("spec.edi", f"Connector {name!r} is not an EDI connector")])
    env, sftp = edi.envelope, edi.sftp
    known_hosts = _ref(sftp.known_hosts_ref)
    assert known_hosts is not None  # required by the schema
    return EdiPartnerPlan(
        namespace=namespace,
        connector=name,
        system=connector.spec.system,
        envelope=EdiEnvelope(
            ours=EdiIdentity(qualifier=env.ours.qualifier, id=env.ours.id, application_code=env.ours.application_code),
            partner=EdiIdentity(
                qualifier=env.partner.qualifier, id=env.partner.id, application_code=env.partner.application_code
            ),
            element_separator=env.element_separator,
            component_separator=env.component_separator,
            segment_terminator=env.segment_terminator,
            version=env.version,
            usage=env.usage,
        ),
        sftp=SftpEndpoint(
            host=sftp.host,
            port=sftp.port,
            user=_ref(sftp.user_ref),
            username=sftp.username or "",
            password=_ref(sftp.password_ref),
            private_key=_ref(sftp.private_key_ref),
            known_hosts=known_hosts,
            pickup=sftp.pickup,
            drop=sftp.drop,
            done_folder=sftp.done_folder,
            claim_folder=sftp.claim_folder,
            temp_suffixes=tuple(sftp.temp_suffixes),
            poll_seconds=parse_duration(sftp.poll_interval),
            lease_seconds=parse_duration(sftp.lease),
            max_file_bytes=sftp.max_file_bytes,
        ),
        accept=tuple(edi.accept),
        send=tuple(edi.send),
        acknowledgment_deadline_seconds=parse_duration(edi.acknowledgment_deadline),
    )
