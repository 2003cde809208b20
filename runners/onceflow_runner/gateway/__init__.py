"""Webhook gateway: verify the signature, publish the record into JetStream, answer only after the PubAck."""
