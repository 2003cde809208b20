"""The onceflow.io/v1alpha1 API: pydantic models that are the single source of the CRDs."""

from ._base import Condition, LocalObjectReference, SecretKeyRef
from .connector import Connector, ConnectorSpec, ConnectorStatus
from .crd import GROUP, KINDS, VERSION, build_crd, build_crds
from .integration import ENTITIES, STEP_KINDS, Integration, IntegrationSpec, IntegrationStatus, Step
from .syncpolicy import SyncPolicy, SyncPolicySpec, SyncPolicyStatus

__all__ = [
    "ENTITIES",
    "GROUP",
    "KINDS",
    "STEP_KINDS",
    "VERSION",
    "Condition",
    "Connector",
    "ConnectorSpec",
    "ConnectorStatus",
    "Integration",
    "IntegrationSpec",
    "IntegrationStatus",
    "LocalObjectReference",
    "SecretKeyRef",
    "Step",
    "SyncPolicy",
    "SyncPolicySpec",
    "SyncPolicyStatus",
    "build_crd",
    "build_crds",
]
