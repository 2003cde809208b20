"""Pure compile layer: Integration + Connectors + SyncPolicy -> the runner's plans; offline validation."""
