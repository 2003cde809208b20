"""The only modules that do I/O for the control plane: the Kubernetes API, Prometheus, probed endpoints."""
