"""Onceflow control plane: the API, its compiler to runner plans, the Kopf controller, review and CLI.

Packages by responsibility, from the bottom up (import-linter checks the direction in `make test`):

- `api`: the resources as pydantic models (single source of the CRDs) and the well-known names.
- `compiler`: pure; specs to the runner's plans, offline validation, the one walk over CEL.
- `build`: pure; the Kubernetes objects the operator creates.
- `rollout`: pure; which revision each lane runs and the status that says so.
- `clients`: the only modules doing I/O against Kubernetes, Prometheus and probed endpoints.
- `controller`: the reconcile per kind and the only importer of kopf.
- `review`: exceptions, people's decisions, trace, the review console.
- `cli`: the `onceflow` command, on top of everything.
- `dev` and `gen`: the local control plane, executor and demo; generators of CRDs, docs and Argo CD
  snippets. Never imported by the controller, and not needed at run time in a cluster.
"""
