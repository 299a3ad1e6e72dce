"""lwt — LightWeight Toolkit: small, measured PyTorch helpers for model compression.

Core: ``data`` (datasets in memory), ``models`` (the baselines), ``train`` (loops),
``measure`` (the measurement ledger), ``zoo`` (verified checkpoints).
Techniques: ``pruning`` (unstructured masks and schedules), ``filter_pruning``
(structured, channels removed for real), ``sparse`` (sparse storage).
Pipelines: ``pipelines`` (baseline + techniques -> shipped checkpoints).
"""

__version__ = "0.1.0"
