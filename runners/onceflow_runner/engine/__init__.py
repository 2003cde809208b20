"""The workflow engine: steps over a record, canonical entities, CEL expressions.

- `core`: the walk over a plan's steps (`Engine`), the business key and the record's outcome.
- `steps`: one module per step kind, and `STEP_RUNNERS`, the registry the engine runs them from.
- `outcome`: what a record's pass produced; `ports`: the Caller and EventSink the engine is handed.
- `expressions`: CEL; `entities`: the canonical business entities `validate` checks against.
"""
