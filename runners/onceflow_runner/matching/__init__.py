"""Probabilistic (Fellegi-Sunter) duplicate matching: comparisons, the model, defaults, training.

Pure code, no I/O: the dedupe step scores candidates with it (in a worker thread), the operator
compiles a SyncPolicy's `matching` block with its defaults, and `onceflow match train|eval`
estimates and checks m/u with it. Layers: `fields` (dotted paths) and `compare` (comparison kinds)
at the bottom, `model` (scoring), `defaults` (per entity), `training` (EM, labels, evaluation).
"""
