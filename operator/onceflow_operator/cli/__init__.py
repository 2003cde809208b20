"""The `onceflow` command (also `kubectl onceflow`): one module per command group, plus output formatting."""
