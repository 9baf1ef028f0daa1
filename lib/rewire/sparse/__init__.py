"""The one mask mechanism and what every sparse-training method shares.

- :mod:`rewire.sparse.masks`      ``SparseWeight``: a weight parametrization = a *selector* (which
  entries are real) + a *gradient route* (where the gradient goes); ``sparsify``/``remove``.
- :mod:`rewire.sparse.groups`     pruning rules over a group of tensors (global / layer-wise,
  weight / filter), their scores (magnitude, filter norm, SNIP) and ``MaskGroup``.
- :mod:`rewire.sparse.schedules`  sparsity schedules as pure functions of time (Zhu & Gupta).
- :mod:`rewire.sparse.stats`      mask statistics: reached sparsity, flips, IoU, pruning error.
- :mod:`rewire.sparse.flops`      multiply-accumulate counts, dense and sparse.

Nothing here knows which paper, method, model or training loop uses it: methods live in
:mod:`rewire.methods`, models in :mod:`rewire.models`, the loop in :mod:`rewire.train`
(``tests/test_layers.py`` holds every layer to that).
"""
