"""Theoretical compute of one forward pass: multiply-accumulates (MACs), dense and sparse.

Convention
----------
* The unit is the **MAC** (one multiply plus one add), not the FLOP: FLOPs ~= 2 x MACs.
  DPF reports MACs ("216M MACs (Multiplier-ACcumulator)" for WRN-28-2, Figure 3 caption).
* **MACs** count the weight layers only, ``nn.Conv2d`` (any ``nn.Conv*d``) and
  ``nn.Linear``, for **one input** (the batch of ``input_shape`` is divided out):

  - dense:  ``weight.numel() x positions``
  - sparse: ``nonzero(weight) x positions``

  where ``positions`` is the number of output positions per output channel (H_out x W_out
  for a 2-d conv, 1 for a linear layer on a vector). ``weight`` is the *effective*
  weight the layer computes with: ``module.weight``, which is already masked when the
  layer is sparsified by :mod:`rewire.masks`. Each nonzero weight is used once per
  output position, so the formula holds for grouped and depthwise convs too. A weight
  entry that is exactly zero counts as pruned even in a dense layer; note that
  ``torch.randn`` in float32 returns an exact 0 a few times per 1e8 draws, so a freshly
  initialised dense WRN-28-8 (23M weights) can show ``sparse_macs`` a few hundred below
  ``dense_macs``.
* Biases, BN, activations, pooling and residual additions are O(activations), not
  MACs; they are **not** in the MAC totals. They are listed separately in
  :attr:`MacReport.other_ops`, counted as the ptflops counter
  (sovrasov/flops-counter.pytorch, ``ptflops/pytorch_ops.py``) counts them: BN and other
  norms 2 ops per input element when affine (else 1), ``nn.ReLU``-like activations 1 per
  output element, pooling 1 per input element, a bias 1 per output element. Residual
  additions and functional calls (``F.relu``) are not seen by module hooks and are not
  counted.

Published numbers
-----------------
Conv + linear MACs of WRN-28-2/4/8 are 214.35M / 845.60M / 3360.08M. DPF quotes 216M /
848M / 3366M (Figure 3 and Figure 6 captions); ``dense_macs + other_ops_total`` gives
215.79M / 848.42M / 3365.67M, which matches all three within the paper's rounding. So
the paper's numbers appear to include BN, ReLU and pooling the ptflops way (the paper
does not name its tool). ResNet-20 has 40,813,184 conv + linear MACs (~41M).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

__all__ = ["LayerMacs", "MacReport", "count_macs"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU)
_POOLS = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


@dataclass(frozen=True)
class LayerMacs:
    """One conv or linear layer: its MACs for one input, dense and with its current nonzero weights."""

    name: str
    kind: str  # "conv" or "linear"
    positions: int  # output positions per output channel (H_out * W_out; 1 for a linear layer on a vector)
    numel: int  # entries of the weight
    nonzero: int  # nonzero entries of the effective weight
    dense_macs: int  # numel * positions
    sparse_macs: int  # nonzero * positions


@dataclass(frozen=True)
class MacReport:
    """Per-layer rows (in call order) and totals of :func:`count_macs`."""

    layers: tuple[LayerMacs, ...]
    other_ops: dict[str, int] = field(default_factory=dict)  # "norm", "activation", "pool", "bias"

    @property
    def dense_macs(self) -> int:
        return sum(layer.dense_macs for layer in self.layers)

    @property
    def sparse_macs(self) -> int:
        return sum(layer.sparse_macs for layer in self.layers)

    @property
    def numel(self) -> int:
        """Weight entries of the conv and linear layers (biases, BN excluded)."""
        return sum(layer.numel for layer in self.layers)

    @property
    def nonzero(self) -> int:
        return sum(layer.nonzero for layer in self.layers)

    @property
    def other_ops_total(self) -> int:
        return sum(self.other_ops.values())

    @property
    def mac_fraction(self) -> float:
        """sparse / dense MACs: the fraction of the dense compute the sparse model needs."""
        return self.sparse_macs / self.dense_macs if self.dense_macs else float("nan")

    def layer(self, name: str) -> LayerMacs:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"no conv or linear layer named {name!r}")

    def table(self) -> str:
        """A plain-text table of the rows and totals."""
        lines = [f"{'layer':<32} {'kind':<6} {'nonzero':>11} {'numel':>11} {'sparse MACs':>14} {'dense MACs':>14}"]
        for row in self.layers:
            lines.append(
                f"{row.name:<32} {row.kind:<6} {row.nonzero:>11,} {row.numel:>11,} "
                f"{row.sparse_macs:>14,} {row.dense_macs:>14,}"
            )
        lines.append(
            f"{'total':<32} {'':<6} {self.nonzero:>11,} {self.numel:>11,} "
            f"{self.sparse_macs:>14,} {self.dense_macs:>14,}"
        )
        others = ", ".join(f"{kind} {ops:,}" for kind, ops in self.other_ops.items())
        lines.append(f"other ops (not MACs): {others or 'none'}")
        return "\n".join(lines)


def _nonzero(module: nn.Module) -> int:
    return int(torch.count_nonzero(module.weight.detach()))  # the effective (masked) weight


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> MacReport:
    """MACs of one forward pass of ``model`` on one input of shape ``input_shape[1:]``.

    Runs one forward pass on zeros of ``input_shape`` (on the model's device and dtype)
    in eval mode, with forward hooks on every conv and linear layer (to read the output
    size) and on norms, activations and pools (for :attr:`MacReport.other_ops`); the
    training flags of all modules are restored afterwards. Every count is per input:
    the batch size ``input_shape[0]`` is divided out. A layer called twice counts twice.
    See the module docstring for the convention.
    """
    if len(input_shape) < 2 or input_shape[0] < 1:
        raise ValueError(f"input_shape must be (batch, channels, ...) with batch >= 1, got {input_shape}")
    batch = input_shape[0]
    positions: dict[nn.Module, int] = {}
    order: list[nn.Module] = []
    other = {"norm": 0, "activation": 0, "pool": 0, "bias": 0}

    def weight_hook(module, inputs, output):
        channels = module.out_channels if isinstance(module, nn.modules.conv._ConvNd) else module.out_features
        per_channel = output.numel() // (batch * channels)
        if module not in positions:
            positions[module] = 0
            order.append(module)
        positions[module] += per_channel
        if getattr(module, "bias", None) is not None:
            other["bias"] += output.numel() // batch

    def other_hook(module, inputs, output):
        if isinstance(module, _NORMS):
            affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
            other["norm"] += inputs[0].numel() * (2 if affine else 1) // batch
        elif isinstance(module, _ACTIVATIONS):
            other["activation"] += output.numel() // batch
        else:
            other["pool"] += inputs[0].numel() // batch

    handles = []
    names = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            names[module] = name
            handles.append(module.register_forward_hook(weight_hook))
        elif isinstance(module, _NORMS + _ACTIVATIONS + _POOLS):
            handles.append(module.register_forward_hook(other_hook))
    modes = {module: module.training for module in model.modules()}
    reference = next(model.parameters(), None)
    x = torch.zeros(
        input_shape,
        device=None if reference is None else reference.device,
        dtype=None if reference is None else reference.dtype,
    )
    try:
        model.eval()
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode

    rows = []
    for module in order:
        count, numel, nonzero = positions[module], module.weight.numel(), _nonzero(module)
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        rows.append(LayerMacs(names[module], kind, count, numel, nonzero, numel * count, nonzero * count))
    return MacReport(tuple(rows), other)
