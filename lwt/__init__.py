"""lwt — LightWeight Toolkit: small, measured PyTorch helpers for model compression.

Modules in lesson order; imports point one way: core ← techniques ← composition ←
recipes ← zoo.

- ``lwt.data``: MNIST / Fashion-MNIST / CIFAR-10 in memory, seeded loaders (core).
- ``lwt.models``: the baselines LeNet-300-100, LeNet-5, CIFAR ResNet-20/56,
  compact students, and a compact transformer (``lwt.models.cct``) (core).
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
- ``lwt.oneshot``: one-shot compression from calibration data: group-wise int4, GPTQ,
  AWQ, SmoothQuant, Wanda, SparseGPT, 2:4 (lesson 08; a folder).
- ``lwt.merging``: token merging for a transformer (lesson 08; one file).
- ``lwt.combine``: lesson 07's pipeline (prune, distil, QAT, int8 file);
  ``combine.compress_and_deploy`` runs it on your own model (composition).
- ``lwt.recipes``: how each shipped checkpoint is made, one module per method.
- ``lwt.zoo``: sha256-verified shipped checkpoints; ``python -m lwt.zoo``.

One vocabulary (the same words in every module):

- ``amount``: how much to remove, a fraction in ``[0, 1)`` of the layer's *original*
  weights, units or filters (a target: calling again with the same amount removes
  nothing more). Han's ``quality`` is not an amount but a threshold in standard
  deviations (``pruning.han_prune``).
- ``retrain=`` / ``evaluate=``: the training and scoring functions a technique takes,
  always by keyword; ``batches``: calibration data; ``path``: a file written.
- ``symmetric=True``: the signed, narrow, zero-centred grid, in ``qparams``,
  ``quantize`` and ``fake_quantize`` alike.
- **In place or a copy**: a function that changes a model changes it in place and
  returns that same object (``pruning.magnitude_prune(m, 0.5) is m``), whatever it
  prunes, factorizes or shares. A function that builds a new model says so by its
  name: ``quantize_model``, ``fold_batchnorm``, ``to_float``, ``to_bfloat16``,
  ``shared_copy`` and ``combine.compress`` return new models and leave yours as it
  was (``tests/test_conventions.py`` checks both lists).
- ``*_to_keep`` (``filters_to_keep``, ``neurons_to_keep``) return the indices a prune
  would keep, without changing anything.
"""

__version__ = "0.2.0"
