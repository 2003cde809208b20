"""Pure builders: the Kubernetes objects the operator creates, returned as dicts, never applied here."""
