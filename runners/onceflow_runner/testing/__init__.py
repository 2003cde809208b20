"""Sandbox systems and test seams: for tests and the demo, never on the runtime path."""
