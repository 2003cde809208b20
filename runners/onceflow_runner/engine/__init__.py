"""The workflow engine: steps over a record, canonical entities, CEL expressions."""
