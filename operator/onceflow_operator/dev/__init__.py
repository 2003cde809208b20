"""Development and test tooling: local control plane, nats-server, executor, local run, demo, fixtures.

Never imported by the controller, review or runner code (an import-linter contract checks it).
"""
