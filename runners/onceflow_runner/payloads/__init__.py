"""Decoding inbound payloads into records (JSON, X12)."""
