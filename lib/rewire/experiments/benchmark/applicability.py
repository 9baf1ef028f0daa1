"""Does a method apply to the chosen network at the chosen sparsity? Checked before any work (issue 20, point 6).

Every row prunes the same tensors: the weights of every ``nn.Conv2d`` (the layers DPF prunes, DPF Appendix A.1;
:func:`rewire.sparse.groups.conv_weight_targets`); linear layers, biases and batch norm stay dense. A method does
not apply when

* the network is not convolutional: its ``nn.Conv2d`` weights hold less than :data:`MIN_CONV_SHARE` of its weight
  entries (every parameter with two or more dimensions; the neural graphs of DNW keep theirs in an adjacency
  matrix), so pruning its convolutions would not make it sparse;
* it keeps the first convolution dense (SM, DSR: both papers leave it out, :mod:`rewire.methods.dynamic_sparse`)
  and the network has no other convolution;
* it keeps the same share of every layer (the random mask, DNW, edge-popup, targeted dropout, L1 + Anneal: one
  ``k`` per layer, ``floor((1 - s) n)``) and some layer would keep no weight at that sparsity, which cuts the
  network (the global methods, DPF, SNIP, ... choose where to keep and are not refused).

:func:`reasons` lists why each method does not apply to a built model; :func:`check_applicable` builds the
config's network (on the CPU, in a fraction of a second) and raises one :class:`ConfigError` naming every
method that does not apply and why.
"""

from __future__ import annotations

import torch.nn as nn

from rewire.experiments.schema import ConfigError
from rewire.sparse.allocation import kept_count

__all__ = ["MIN_CONV_SHARE", "PER_LAYER_METHODS", "FIRST_CONV_DENSE_METHODS", "reasons", "check_applicable"]

# Our choice: "convolutional" = at least half of the weight entries are convolution weights (measured here:
# ResNet-20 99.76 %, WRN-28-2 99.91 %, VGG16-D 99.97 %, MobileNetV1 98.8 %; DNW's tiny static graph 1.28 %,
# MobileNetV1-DNW 0.38 %).
MIN_CONV_SHARE = 0.5
PER_LAYER_METHODS = ("random", "dnw", "edge_popup_binary", "edge_popup_skc", "td", "l1_anneal")
FIRST_CONV_DENSE_METHODS = ("sm", "dsr")


def _weights(model: nn.Module) -> tuple[list[tuple[str, int]], int]:
    """The convolution weights ``[(target, entries)]`` and the entries of every weight (parameters of 2+ dims)."""
    convs = [(f"{name}.weight", m.weight.numel()) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    weights = sum(p.numel() for p in model.parameters() if p.dim() >= 2)
    return convs, weights


def reasons(model: nn.Module, methods, sparsity: float, model_name: str = "") -> dict[str, str]:
    """``{method: why it does not apply}`` for the ``methods`` that do not apply to ``model`` at ``sparsity``."""
    name = model_name or type(model).__name__
    convs, weights = _weights(model)
    share = sum(n for _, n in convs) / weights if weights else 0.0
    found: dict[str, str] = {}
    for method in methods:
        if method == "dense":
            continue
        if share < MIN_CONV_SHARE:
            found[method] = (
                f"the benchmark prunes nn.Conv2d weights and {name}'s hold {100 * share:.2f} % of its weights "
                f"(at least {100 * MIN_CONV_SHARE:g} % needed): it is not a convolutional network"
            )
        elif method in FIRST_CONV_DENSE_METHODS and len(convs) < 2:
            found[method] = (
                f"it keeps the first convolution dense (as its paper) and {name} has no other convolution to prune"
            )
        elif method in PER_LAYER_METHODS:
            empty = [(t, n) for t, n in convs if kept_count(n, 1.0 - sparsity) < 1]
            if empty:
                target, size = empty[0]
                found[method] = (
                    f"it keeps floor((1 - s) n) weights in every layer, and {name}'s {target} ({size} weights) keeps "
                    f"none at sparsity {sparsity:g}, which cuts the network"
                )
    return found


def check_applicable(config) -> None:
    """Raise :class:`ConfigError` naming every method of ``config`` that does not apply to its network (and why)."""
    from rewire.data.sources import OFFICIAL_RELEASES
    from rewire.models import build_model

    kwargs = {"width": config.width} if config.width else {}
    classes = len(OFFICIAL_RELEASES[config.dataset]["classes"])
    try:
        model = build_model(config.model, classes, **kwargs)
    except TypeError:
        raise ConfigError(
            f"'width': {config.width}: {config.model} takes no width (a CIFAR ResNet or small_convnet does); "
            "set width: 0 (the model's own), e.g. width: 0"
        ) from None
    problems = []
    for sparsity in config.sparsities:
        grouped: dict[str, list[str]] = {}  # one line per reason, naming every method it refuses
        for method, why in reasons(model, config.methods, sparsity, config.model).items():
            grouped.setdefault(why, []).append(repr(method))
        for why, methods in grouped.items():
            verb = "does" if len(methods) == 1 else "do"
            problems.append(f"{', '.join(methods)} {verb} not apply to {config.model} at sparsity {sparsity:g}: {why}")
    if problems:
        raise ConfigError(
            "'methods': " + "; ".join(problems) + ". Leave these methods out (methods: [...]), or choose another "
            "model or sparsity, e.g. model: resnet20"
        )
