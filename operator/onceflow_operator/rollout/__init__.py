"""Pure rollout decisions: which revision each lane runs, the canary weight and the status that says so."""
