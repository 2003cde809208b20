"""The operator: Kopf handlers (the only importer of kopf) and the reconcile of each kind they call."""
