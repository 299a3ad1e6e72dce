"""Weight sharing and coding (重み共有・符号化): fewer distinct weights, fewer bits.

- ``kmeans``: per-layer k-means codebooks and codebook fine-tuning (Deep Compression).
- ``widths``: each layer's width chosen on held-out data (a sweep and a rule).
- ``sparse_index``: relative indices of the nonzeros, with filler entries.
- ``huffman``: canonical Huffman codes and fixed-width bit packing.
- ``streams``: one symbol stream, at fixed width or Huffman-coded, whichever is smaller.
- ``fileformat``: one ``.lwtc`` file holding a pruned, shared model, exact in value.
- ``hashing``: HashedNets, a layer whose weights are hashed into a few shared values.
- ``circulant``: block-circulant linear layers computed with the FFT.

Copy this folder into your project to use it: it depends only on torch and numpy.
"""

from . import (
    circulant,
    fileformat,
    hashing,
    huffman,
    kmeans,
    sparse_index,
    streams,
    widths,
)
from .circulant import CirculantLinear
from .fileformat import compress, decompress, inspect, round_to_float16
from .hashing import HashedLinear
from .kmeans import (
    INITS,
    SharedWeight,
    codebooks,
    kmeans_1d,
    share_weights,
    shared_copy,
    unshare,
)
from .widths import bit_sweep, choose_bits

__all__ = [
    "INITS",
    "CirculantLinear",
    "HashedLinear",
    "SharedWeight",
    "bit_sweep",
    "choose_bits",
    "circulant",
    "codebooks",
    "compress",
    "decompress",
    "fileformat",
    "hashing",
    "huffman",
    "inspect",
    "kmeans",
    "kmeans_1d",
    "round_to_float16",
    "share_weights",
    "shared_copy",
    "sparse_index",
    "streams",
    "unshare",
    "widths",
]
