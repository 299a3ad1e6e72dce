"""Pruning (枝刈り): remove weights, or whole filters, that the network can do without.

- ``unstructured``: magnitude / Han-threshold / global masks (``torch.nn.utils.prune``),
  the Zhu & Gupta schedule, Han's iterative prune-retrain, sensitivity scans.
- ``structured``: Li et al. L1 filter pruning that removes channels for real.
- ``depth``: remove whole residual blocks (identity shortcuts) for speed.
- ``neurons``: Hu et al. APoZ / mean-activation neuron pruning (the same surgery).
- ``surgery``: copies of a layer with only some channels (used by both).
- ``coupling``: which layers' channels are tied together (``torch.fx``), checked
  before any channel is removed.
- ``sparse``: bitmask storage of a pruned model: the honest file size.

Copy this folder into your project to use it: it depends only on torch (and numpy
for the sparse files, imported when they are written or read). ResNet blocks are
recognised by their layers, not by torchvision's types.
"""

from . import coupling, depth, heads, neurons, sparse, structured, surgery, unstructured
from .coupling import ChannelPath, CouplingError, channel_path
from .depth import drop_blocks, removable_blocks
from .heads import (
    attention_modules,
    head_importance,
    heads_to_keep,
    prune_heads,
    remove_heads,
)
from .neurons import (
    ActivationStats,
    activation_stats,
    gradual_prune_neurons,
    importance,
    neurons_to_keep,
    prune_neurons,
)
from .sparse import from_sparse_state, load_sparse, sparse_bytes, to_sparse_state
from .structured import (
    filters_to_keep,
    keep_after_removing,
    l1_norms,
    prune_channels,
    prune_filters,
    prune_resnet_blocks,
    resnet_blocks,
)
from .surgery import keep_bn, keep_inputs, keep_outputs, original_width
from .unstructured import (
    PRUNABLE,
    GradualPruning,
    amounts_from_scan,
    cubic_schedule,
    global_magnitude_prune,
    han_prune,
    iterative_prune,
    magnitude_mask,
    magnitude_prune,
    make_permanent,
    prunable_layers,
    sensitivity_scan,
    set_mask,
    sparsity_report,
    zhu_gupta_sparsity,
)

__all__ = [
    "attention_modules",
    "head_importance",
    "heads_to_keep",
    "prune_heads",
    "remove_heads",
    "ActivationStats",
    "ChannelPath",
    "CouplingError",
    "channel_path",
    "coupling",
    "depth",
    "heads",
    "drop_blocks",
    "removable_blocks",
    "PRUNABLE",
    "activation_stats",
    "gradual_prune_neurons",
    "importance",
    "neurons",
    "prune_channels",
    "neurons_to_keep",
    "prune_neurons",
    "surgery",
    "GradualPruning",
    "cubic_schedule",
    "filters_to_keep",
    "from_sparse_state",
    "global_magnitude_prune",
    "han_prune",
    "iterative_prune",
    "keep_bn",
    "keep_inputs",
    "keep_after_removing",
    "keep_outputs",
    "original_width",
    "l1_norms",
    "load_sparse",
    "magnitude_mask",
    "magnitude_prune",
    "make_permanent",
    "prunable_layers",
    "prune_filters",
    "prune_resnet_blocks",
    "resnet_blocks",
    "sensitivity_scan",
    "set_mask",
    "sparse",
    "sparse_bytes",
    "amounts_from_scan",
    "sparsity_report",
    "structured",
    "to_sparse_state",
    "unstructured",
    "zhu_gupta_sparsity",
]
