"""The onceflow.io/v1alpha1 API: pydantic models that are the single source of the CRDs."""

from onceflow_operator.api._base import Condition, LocalObjectReference, SecretKeyRef
from onceflow_operator.api.connector import Connector, ConnectorSpec, ConnectorStatus
from onceflow_operator.api.crd import GROUP, KINDS, VERSION, build_crd, build_crds
from onceflow_operator.api.integration import Integration, IntegrationSpec, IntegrationStatus
from onceflow_operator.api.steps import STEP_KINDS, Step
from onceflow_operator.api.syncpolicy import SyncPolicy, SyncPolicySpec, SyncPolicyStatus
from onceflow_operator.api.types import ENTITIES, Paging

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
    "Paging",
    "SecretKeyRef",
    "Step",
    "SyncPolicy",
    "SyncPolicySpec",
    "SyncPolicyStatus",
    "build_crd",
    "build_crds",
]
