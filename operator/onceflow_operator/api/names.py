"""Well-known names of the onceflow.io API, defined once: group and version, labels, annotations.

Every label, annotation, finalizer and field manager the operator, the CLI and the generators
use comes from here, so a typo is an import error rather than an object nobody selects.
"""

from __future__ import annotations

__all__ = [
    "ACTION_ANNOTATION",
    "API_VERSION",
    "CREDENTIALS_LABEL",
    "FIELD_MANAGER",
    "FINALIZER",
    "GROUP",
    "INTENT_ANNOTATION",
    "LABEL_CONNECTOR",
    "LABEL_INTEGRATION",
    "LABEL_LANE",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_PART_OF",
    "LABEL_REVISION",
    "LABEL_SYNCPOLICY",
    "PART_OF_LABELS",
    "PLURALS",
    "SECRETS_CHECKSUM_ANNOTATION",
    "STORAGE_PREFIX",
    "VERSION",
]

GROUP = "onceflow.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
#: kind -> plural resource name, as the CRDs declare them.
PLURALS = {"Connector": "connectors", "Integration": "integrations", "SyncPolicy": "syncpolicies"}

#: Server-side apply field manager, and the Event source component.
FIELD_MANAGER = "onceflow-operator"
#: Kopf's finalizer, and the prefix of its progress and diff-base annotations.
FINALIZER = f"{GROUP}/finalizer"
STORAGE_PREFIX = GROUP
#: A verb for an Integration's rollout (promote, abort, ...), consumed once by the operator.
ACTION_ANNOTATION = f"{GROUP}/action"
#: Hash of what the operator last applied to an object it owns: a reconcile whose desired object
#: hashes the same sends nothing (a steady state makes no writes; see `build.intent`).
INTENT_ANNOTATION = f"{GROUP}/applied-intent"
#: Hash of the Secrets a pod reads, so a Secret rotation rolls the pods.
SECRETS_CHECKSUM_ANNOTATION = f"{GROUP}/secrets-checksum"

#: Opt-in on a Secret: only Secrets labelled `onceflow.io/credentials: "true"` may be named by a
#: Connector, so a Connector cannot send an unrelated Secret of its namespace to its base URL.
CREDENTIALS_LABEL = f"{GROUP}/credentials"

LABEL_CONNECTOR = f"{GROUP}/connector"
LABEL_INTEGRATION = f"{GROUP}/integration"
LABEL_LANE = f"{GROUP}/lane"
LABEL_REVISION = f"{GROUP}/revision"
LABEL_SYNCPOLICY = f"{GROUP}/syncpolicy"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
#: On every object the operator creates.
PART_OF_LABELS = {LABEL_PART_OF: "onceflow", LABEL_MANAGED_BY: FIELD_MANAGER}
