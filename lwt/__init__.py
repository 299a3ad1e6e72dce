"""lwt — LightWeight Toolkit: small, measured PyTorch helpers for model compression.

Modules in lesson order; imports point one way: core ← techniques ← recipes ← zoo.

- ``lwt.data``: MNIST / Fashion-MNIST / CIFAR-10 in memory, seeded loaders (core).
- ``lwt.models``: the baselines LeNet-300-100, LeNet-5, CIFAR ResNet-20/56, and
  compact students (core).
- ``lwt.train``: seeded training, evaluation, one-cycle and fine-tuning loops (core).
- ``lwt.measure``: params, nonzeros, MACs, bytes, latency, the ``Ledger`` (core).
- ``lwt.pareto``: the Pareto front of models on cost vs accuracy (core).
- ``lwt.pruning``: unstructured masks and schedules, structured filter pruning, neuron
  pruning by activations, sparse files (lesson 01; a folder you can copy).
- ``lwt.quantization``: primitives, observers, fake-quant PTQ/QAT, integer reference
  (lesson 02; a folder you can copy).
- ``lwt.deploy``: ONNX export and ONNX Runtime int8 deployment (lesson 02; one file).
- ``lwt.lowrank``: SVD, Tucker-2 and CP factorization of layers (lesson 03; one file).
- ``lwt.transfer``: CReLU and p4 / p4m rotation filter banks (lesson 04; a folder).
- ``lwt.distill``: knowledge-distillation loss and ``Distiller`` (lesson 05; one file).
- ``lwt.sharing``: k-means weight sharing, Huffman-coded ``.lwtc`` files, hashed
  and circulant layers (lesson 06; a folder).
- ``lwt.recipes``: how each shipped checkpoint is made, one module per method;
  ``recipes.combined.compress_and_deploy`` runs the whole pipeline on your own model
  (lesson 07).
- ``lwt.zoo``: sha256-verified shipped checkpoints; ``python -m lwt.zoo``.
"""

__version__ = "0.2.0"
