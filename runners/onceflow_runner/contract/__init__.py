"""The contract between control plane and data plane: plan, subjects, headers, typed wire messages."""
