"""The one RBAC rule for people's review actions, shared by the console and the CLI.

Exceptions are not Kubernetes objects; access to them is expressed on the virtual resource
`exceptions.onceflow.io` in the record's namespace, so a cluster admin grants it with an
ordinary Role: `get` to look, `update` to decide. The console checks it with a
SubjectAccessReview for the signed-in person, the CLI with a SelfSubjectAccessReview for the
kubeconfig's user: the same attributes, so the same people may do the same things in both.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DECIDE_VERB", "LOOK_VERB", "REVIEW_GROUP", "REVIEW_RESOURCE"]

REVIEW_GROUP: Final = "onceflow.io"
REVIEW_RESOURCE: Final = "exceptions"
LOOK_VERB: Final = "get"
DECIDE_VERB: Final = "update"
