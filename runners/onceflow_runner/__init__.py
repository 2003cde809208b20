"""Onceflow data plane: gateways accept records, runners settle them, drift jobs compare systems.

Packages in the order a record meets them (import-linter checks the direction in `make test`):

- `contract`: what the control plane and the data plane agree on: the plan, NATS subjects, stream
  and header names, and the typed messages both sides write and read.
- `gateway`: signed webhooks in, records into JetStream.
- `payloads`: decoding what arrived (JSON, X12).
- `engine`: the steps of a workflow, pure apart from the calls it is handed.
- `adapters`: the one NATS module, outbound HTTP and secrets.
- `runner` (module): the loop that settles each record exactly once; `drift`: the drift check job.
- `testing`: sandbox systems and fakes for tests and the demo; not on the runtime path.
"""
