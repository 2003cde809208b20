"""Build-time generators: CRD YAML, the API reference, the Argo CD snippet."""
