"""The masks of a pruned network: Liu et al., *Robust Binary Models by Pruning Randomly-initialized Networks*
(NeurIPS 2022), Section 4.3 ("aligned pruning pattern"), Appendix D.2.5, Figures 3 and 5.

Pure functions on bool masks (a trained network's or a random one) and two figures; nothing is
trained here. A conv mask has the weight's shape ``(r_out, r_in, kh, kw)``.

Figure 5 -- one layer
---------------------
* :func:`kernel_grid` -- the mask as a 2-D grid, each ``kh x kw`` kernel one cell:
  ``(r_out * kh, r_in * kw)``, or transposed (the layer-2 view of Figure 3).
* :func:`empty_channels` -- output and input channels with no kept weight.
* :func:`plot_layer_mask` -- kept weights blue on white, input channels without a kept weight
  shaded orange, and a top bar white (empty) / blue (non-empty) per input channel.

Figure 3 and Section 4.3 -- two consecutive layers of a residual block
---------------------------------------------------------------------
* :func:`block_conv_pairs` -- the ``conv_i -> conv_{i+1}`` pairs inside each block (``conv1 -> conv2``
  of a BasicBlock) among the model's sparse tensors.
* :func:`channel_alignment` -- how many empty output channels of layer 1 are empty input channels
  of layer 2, against the count expected if the two empty sets were unrelated, and against random
  masks of the same densities (:func:`random_mask_like`).
* :func:`plot_consecutive_masks` -- layer 1 as ``(r_out * 3, r_in * 3)`` next to layer 2 transposed,
  ``(r_in * 3, r_out * 3)``, so that both share the rows (the channels between them); side bars mark
  the empty channels; optionally a second row with random masks of the same densities.

Per-layer kept counts
---------------------
* :func:`layer_masks` -- the current bool mask of every sparse tensor, ``{name: mask}``, in model order.
* :func:`kept_fractions` -- index, name, size, kept and fraction per sparse tensor, optionally beside the
  counts the allocation planned (:mod:`rewire.sparse.allocation`).

The random baseline is the exact-count law: a random mask keeps exactly as many weights as the mask it
replaces, at positions drawn uniformly (all subsets of that size equally likely), as the random top-k
masks of :func:`rewire.experiments.robust_binary.analysis.sample_random_kernel_counts`.

matplotlib is imported inside the plotting functions only (it is an optional dependency); no backend
is forced. The figures are returned, never shown; save them with
:func:`rewire.reporting.plotting.save_figure` and close them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from rewire.sparse.masks import current_mask, sparse_modules

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "KEPT_COLOR",
    "EMPTY_COLOR",
    "kernel_grid",
    "empty_channels",
    "random_mask_like",
    "layer_masks",
    "block_conv_pairs",
    "ChannelAlignment",
    "channel_alignment",
    "kept_fractions",
    "plot_layer_mask",
    "plot_consecutive_masks",
]

KEPT_COLOR = "#1f5fbf"  # blue: a kept weight, a non-empty channel in the bars
EMPTY_COLOR = "#ffbb78"  # light orange: a channel without any kept weight (Figure 5)


# ============================================================================ masks


def _as_bool(mask: torch.Tensor, min_dim: int = 0) -> torch.Tensor:
    """The mask as a bool CPU tensor; 0/1 masks of any dtype are accepted."""
    mask = torch.as_tensor(mask).detach()
    if mask.dim() < min_dim:
        raise ValueError(f"expected a mask with at least {min_dim} dimensions, got shape {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask entries must be 0 or 1 (or the mask must be bool)")
        mask = mask != 0
    return mask.cpu()


def _as_conv_mask(mask: torch.Tensor) -> torch.Tensor:
    mask = _as_bool(mask)
    if mask.dim() != 4:
        raise ValueError(f"expected a conv mask of shape (r_out, r_in, kh, kw), got shape {tuple(mask.shape)}")
    return mask


def kernel_grid(mask: torch.Tensor, *, transpose: bool = False) -> torch.Tensor:
    """A conv mask ``(r_out, r_in, kh, kw)`` as a 2-D bool grid with one ``kh x kw`` cell per kernel (Figure 5).

    ``transpose=False``: shape ``(r_out * kh, r_in * kw)``,
    ``grid[o * kh + i, c * kw + j] = mask[o, c, i, j]`` -- rows are output channels, columns input channels.

    ``transpose=True``: the matrix transpose of that grid, shape ``(r_in * kw, r_out * kh)``,
    ``grid[c * kw + j, o * kh + i] = mask[o, c, i, j]`` -- rows are *input* channels (Figure 3's layer 2)
    and every kernel cell is transposed with the grid (kernel row i becomes cell column i). For the
    paper's 3x3 kernels this is the ``(r_in * 3, r_out * 3)`` layout of Figure 3, and always
    ``kernel_grid(mask, transpose=True) == kernel_grid(mask).T``.

    Raises ``ValueError`` for a mask that is not 4-D or not 0/1.
    """
    mask = _as_conv_mask(mask)
    r_out, r_in, kh, kw = mask.shape
    grid = mask.permute(0, 2, 1, 3).reshape(r_out * kh, r_in * kw)
    return grid.T.contiguous() if transpose else grid


def empty_channels(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(empty_out, empty_in)``: bool vectors of length ``r_out`` and ``r_in``, True where the output
    channel (dimension 0) or the input channel (dimension 1) has no kept weight at all.

    Works for conv masks ``(r_out, r_in, kh, kw)`` and linear masks ``(out, in)``.
    """
    mask = _as_bool(mask, min_dim=2)
    per_pair = mask.reshape(mask.shape[0], mask.shape[1], -1).any(2)  # (r_out, r_in): kernel has a kept weight
    return ~per_pair.any(1), ~per_pair.any(0)


def random_mask_like(mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A bool mask of ``mask``'s shape keeping exactly as many weights, at uniformly random positions.

    The exact-count law: every subset of that size is equally likely (the first ``k`` entries of a
    uniform random permutation drawn from ``generator``, a CPU generator). Returned on ``mask``'s device.
    """
    device = torch.as_tensor(mask).device
    mask = _as_bool(mask)
    kept = int(mask.sum())
    chosen = torch.randperm(mask.numel(), generator=generator)[:kept]
    flat = torch.zeros(mask.numel(), dtype=torch.bool)
    flat[chosen] = True
    return flat.reshape(mask.shape).to(device)


def layer_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current mask (bool, CPU) of every sparse tensor of ``model``, ``{qualified name: mask}`` in model order.

    Per-forward selectors (edge-popup's scores) choose the mask again from their current scores, as
    :func:`rewire.methods.edge_popup.kept_counts` does; held masks are returned as held.
    """
    return {
        name: current_mask(module, name.rpartition(".")[2], recompute=True).cpu()
        for name, module, _ in sparse_modules(model)
    }


def _numbered_convs(module: nn.Module) -> list[str]:
    """The direct children ``conv1, conv2, ...`` of ``module`` (consecutive numbers from 1)."""
    children = dict(module.named_children())
    names = []
    while f"conv{len(names) + 1}" in children:
        names.append(f"conv{len(names) + 1}")
    return names


def block_conv_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The consecutive conv pairs inside each residual block, as the tensor names of :func:`sparse_modules`.

    A block is any module with children ``conv1, conv2[, conv3]`` (the convention of the blocks in
    :mod:`rewire.models`: ``conv_i -> BN -> ReLU -> conv_{i+1}``), so a BasicBlock gives
    ``("<block>.conv1.weight", "<block>.conv2.weight")`` and a bottleneck two pairs (1 -> 2, 2 -> 3).
    The shortcut conv and the stem (a lone ``conv1`` of the network) are not pairs. A pair is listed
    when both weights are sparse and the channels chain (layer 1's output channels = layer 2's input
    channels; a grouped conv does not). In model order.
    """
    shapes = {name: tuple(p.mask.shape) for name, _, p in sparse_modules(model)}
    pairs = []
    for block_name, block in model.named_modules():
        prefix = f"{block_name}." if block_name else ""
        convs = _numbered_convs(block)
        for first, second in zip(convs, convs[1:]):
            name1, name2 = f"{prefix}{first}.weight", f"{prefix}{second}.weight"
            if name1 not in shapes or name2 not in shapes or len(shapes[name2]) < 2:
                continue
            if shapes[name1][0] != shapes[name2][1]:
                continue
            pairs.append((name1, name2))
    return pairs


# ============================================================================ alignment


@dataclass(frozen=True)
class ChannelAlignment:
    """Empty channels between two consecutive layers (:func:`channel_alignment`).

    ``channels`` = C, the channels between the layers; ``empty_out1`` = a (layer 1's output channels
    without a kept weight), ``empty_in2`` = b (layer 2's input channels without one), ``overlap`` = the
    channels in both sets, ``expected_overlap`` = a·b/C, the overlap if the two sets were independent
    uniform draws of their sizes (the hypergeometric mean). ``random_*``: the same three counts for
    random masks of the two layers' densities, averaged over ``samples`` draws.
    """

    channels: int
    empty_out1: int
    empty_in2: int
    overlap: int
    expected_overlap: float
    empty_out1_channels: tuple[int, ...]
    empty_in2_channels: tuple[int, ...]
    samples: int
    random_empty_out1: float
    random_empty_in2: float
    random_overlap: float

    @property
    def enrichment(self) -> float:
        """``overlap / expected_overlap`` (1: no alignment beyond chance); NaN when nothing is expected."""
        return self.overlap / self.expected_overlap if self.expected_overlap > 0 else math.nan


def _check_consecutive(mask1: torch.Tensor, mask2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mask1, mask2 = _as_bool(mask1, min_dim=2), _as_bool(mask2, min_dim=2)
    if mask1.shape[0] != mask2.shape[1]:
        raise ValueError(
            f"layer 1 has {mask1.shape[0]} output channels (mask {tuple(mask1.shape)}) but layer 2 has "
            f"{mask2.shape[1]} input channels (mask {tuple(mask2.shape)}); they are not consecutive"
        )
    return mask1, mask2


def _empty_between(mask1: torch.Tensor, mask2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer 1's empty outputs and layer 2's empty inputs (both of length C)."""
    return empty_channels(mask1)[0], empty_channels(mask2)[1]


def channel_alignment(
    mask1: torch.Tensor, mask2: torch.Tensor, *, generator: torch.Generator | None = None, samples: int = 20
) -> ChannelAlignment:
    """Section 4.3's aligned pruning pattern for two consecutive layers (layer 1 output c feeds layer 2 input c).

    *Aligned* means the output channels that layer 1 prunes entirely are the input channels that layer 2
    prunes entirely. It is what a good mask should do: with no kept weight, layer 1's output channel is
    the zero map, the non-affine BatchNorm after it (no shift beta) keeps it constant (zero) and so does
    the ReLU, so any kept layer-2 weight reading that channel multiplies a constant and is a wasted part
    of the budget; conversely a layer-2 input that is never read makes layer 1's weights of that channel
    wasted. The masks here are found independently per layer, so alignment is learned, not imposed.

    Counts: a, b, their overlap, and a·b/C, the mean overlap if the b empty inputs were a uniform random
    b-subset of the C channels (hypergeometric), i.e. no alignment. The ``random_*`` fields repeat the
    counts for :func:`random_mask_like` masks of both layers (the same densities, independent), averaged
    over ``samples`` draws from ``generator`` (default: a CPU generator seeded with 0): at high sparsity
    random masks also leave channels empty, and this is how many and how many coincide by chance.

    Masks are conv ``(r_out, r_in, kh, kw)`` or linear ``(out, in)``; ``ValueError`` unless
    ``mask1.shape[0] == mask2.shape[1]``.
    """
    mask1, mask2 = _check_consecutive(mask1, mask2)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    if generator is None:
        generator = torch.Generator(device="cpu").manual_seed(0)
    out1, in2 = _empty_between(mask1, mask2)
    channels, a, b = out1.numel(), int(out1.sum()), int(in2.sum())
    totals = np.zeros(3)
    for _ in range(samples):
        r_out1, r_in2 = _empty_between(random_mask_like(mask1, generator), random_mask_like(mask2, generator))
        totals += (int(r_out1.sum()), int(r_in2.sum()), int((r_out1 & r_in2).sum()))
    means = totals / samples
    return ChannelAlignment(
        channels=channels,
        empty_out1=a,
        empty_in2=b,
        overlap=int((out1 & in2).sum()),
        expected_overlap=a * b / channels,
        empty_out1_channels=tuple(out1.nonzero().flatten().tolist()),
        empty_in2_channels=tuple(in2.nonzero().flatten().tolist()),
        samples=samples,
        random_empty_out1=float(means[0]),
        random_empty_in2=float(means[1]),
        random_overlap=float(means[2]),
    )


# ============================================================================ kept counts


def kept_fractions(model: nn.Module, planned: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Per sparse tensor, in model order: ``index``, ``name``, ``shape``, ``size`` (numel), ``kept`` and
    ``fraction`` (= kept / size), from :func:`layer_masks`; ``pandas.DataFrame(rows)`` makes a table.

    ``planned`` (name -> count, e.g. ``Allocation.counts(rounding)`` of :mod:`rewire.sparse.allocation`)
    adds a ``planned`` column (None for a layer it does not name): a trained edge-popup network keeps
    exactly the planned counts, since the top-k is fixed per layer.
    """
    rows = []
    for index, (name, mask) in enumerate(layer_masks(model).items()):
        kept = int(mask.sum())
        row: dict[str, Any] = {
            "index": index,
            "name": name,
            "shape": tuple(mask.shape),
            "size": mask.numel(),
            "kept": kept,
            "fraction": kept / mask.numel(),
        }
        if planned is not None:
            row["planned"] = planned.get(name)
        rows.append(row)
    return rows


# ============================================================================ figures


def _categories(grid: torch.Tensor, empty_rows: torch.Tensor | None, empty_cols: torch.Tensor | None) -> np.ndarray:
    """0 = pruned (white), 1 = in a shaded empty channel (orange), 2 = kept (blue)."""
    image = np.zeros(tuple(grid.shape), dtype=np.int8)
    if empty_rows is not None:
        image[empty_rows.numpy(), :] = 1
    if empty_cols is not None:
        image[:, empty_cols.numpy()] = 1
    image[grid.numpy()] = 2
    return image


def _channel_ticks(n: int) -> tuple[np.ndarray, list[str]]:
    """At most about 8 ticks, at channel centres, labelled with the channel index."""
    step = next(s for s in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if n / s <= 8) if n <= 4096 else n // 8
    channels = np.arange(0, n, step)
    return channels + 0.5, [str(c) for c in channels]


def _draw_grid(ax: Axes, image: np.ndarray, row_channels: int, col_channels: int, *, aspect: str = "equal") -> None:
    """``image`` in channel units (each channel one unit, whatever the kernel size)."""
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["white", EMPTY_COLOR, KEPT_COLOR])
    ax.imshow(
        image,
        cmap=cmap,
        vmin=0,
        vmax=2,
        interpolation="nearest",
        extent=(0, col_channels, row_channels, 0),
        aspect=aspect,
    )
    ax.set_xticks(*_channel_ticks(col_channels))
    ax.set_yticks(*_channel_ticks(row_channels))
    if max(row_channels, col_channels) <= 32:  # kernel borders: readable for small layers only
        ax.set_xticks(np.arange(col_channels + 1), minor=True)
        ax.set_yticks(np.arange(row_channels + 1), minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.3)
        ax.tick_params(which="minor", length=0)
    ax.grid(which="major", visible=False)


def _draw_bar(ax: Axes, nonempty: torch.Tensor, *, vertical: bool) -> None:
    """One cell per channel: white = empty, blue = non-empty."""
    from matplotlib.colors import ListedColormap

    values = nonempty.numpy().astype(np.int8)
    n = values.size
    image, extent = (values[:, None], (0, 1, n, 0)) if vertical else (values[None, :], (0, n, 1, 0))
    ax.imshow(
        image,
        cmap=ListedColormap(["white", KEPT_COLOR]),
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=extent,
        aspect="auto",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.5")
        spine.set_linewidth(0.5)


def _legend_handles() -> list:
    from matplotlib.patches import Patch

    return [
        Patch(facecolor=KEPT_COLOR, label="kept weight / non-empty channel"),
        Patch(facecolor=EMPTY_COLOR, label="channel without kept weight"),
        Patch(facecolor="white", edgecolor="0.5", label="pruned / empty channel (bars)"),
    ]


def _density(mask: torch.Tensor) -> str:
    return f"{int(mask.sum())}/{mask.numel()} kept ({mask.float().mean().item():.2%})"


def plot_layer_mask(
    mask: torch.Tensor, *, title: str | None = None, ax: Axes | None = None, caption: str | None = None
) -> Figure:
    """Figure 5: one conv mask as the ``(r_out * kh, r_in * kw)`` grid of :func:`kernel_grid`.

    Kept weights blue on white; the columns of input channels without a kept weight shaded orange; above
    the grid a bar with one cell per input channel, white if empty, blue otherwise. Axes are in channel
    units (each kernel a ``kh x kw`` square). Draws into ``ax`` (a bar axis is appended next to it) or a
    new figure; returns the figure (2 axes: grid and bar). ``caption``: a grey line under the legend (e.g. the
    run's label).
    """
    import matplotlib.pyplot as plt
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    mask = _as_conv_mask(mask)
    r_out, r_in, kh, kw = mask.shape
    empty_out, empty_in = empty_channels(mask)
    if ax is None:
        scale = 7.0 / max(r_out, r_in)
        fig, ax = plt.subplots(figsize=(max(3.5, r_in * scale + 1.2), max(3.0, r_out * scale + 1.6)))
    fig = ax.figure
    image = _categories(kernel_grid(mask), None, empty_in.repeat_interleave(kw))
    _draw_grid(ax, image, r_out, r_in)
    ax.set_xlabel(f"input channel (× {kw} kernel columns)")
    ax.set_ylabel(f"output channel (× {kh} kernel rows)")
    bar = make_axes_locatable(ax).append_axes("top", size="4%", pad=0.08)
    _draw_bar(bar, ~empty_in, vertical=False)
    heading = f"{title}: " if title else ""
    bar.set_title(
        f"{heading}{r_out}×{r_in}×{kh}×{kw}, {_density(mask)}\n"
        f"empty input channels: {int(empty_in.sum())}/{r_in}, empty output channels: {int(empty_out.sum())}/{r_out}",
        fontsize=9,
    )
    ax.legend(
        handles=_legend_handles()[:2],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncol=2,
        frameon=False,
        fontsize=8,
    )
    if caption:
        ax.text(0.5, -0.2, caption, transform=ax.transAxes, ha="center", va="top", fontsize=8, color="0.35")
    return fig


def _plot_pair_row(axes: Sequence[Axes], mask1: torch.Tensor, mask2: torch.Tensor, titles: Sequence[str]) -> None:
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    c, r_in1, kh1, _ = mask1.shape
    r_out2, _, _, kw2 = mask2.shape
    out1, in2 = _empty_between(mask1, mask2)
    left, right = axes
    image1 = _categories(kernel_grid(mask1), out1.repeat_interleave(kh1), None)
    image2 = _categories(kernel_grid(mask2, transpose=True), in2.repeat_interleave(kw2), None)
    _draw_grid(left, image1, c, r_in1, aspect="auto")  # the width ratios keep the cells square
    _draw_grid(right, image2, c, r_out2, aspect="auto")
    left.set(xlabel=f"layer 1 input channel (× {mask1.shape[3]})", ylabel=f"layer 1 output channel (× {kh1})")
    right.set(xlabel=f"layer 2 output channel (× {mask2.shape[2]})", ylabel=f"layer 2 input channel (× {kw2})")
    right.yaxis.set_label_position("right")
    right.yaxis.tick_right()
    _draw_bar(make_axes_locatable(left).append_axes("right", size="4%", pad=0.05), ~out1, vertical=True)
    _draw_bar(make_axes_locatable(right).append_axes("left", size="4%", pad=0.05), ~in2, vertical=True)
    for ax, title, mask, empty in ((left, titles[0], mask1, out1), (right, titles[1], mask2, in2)):
        side = "output" if ax is left else "input"
        ax.set_title(f"{title}\n{_density(mask)}, empty {side} channels {int(empty.sum())}/{c}", fontsize=9)


def plot_consecutive_masks(
    mask1: torch.Tensor,
    mask2: torch.Tensor,
    *,
    titles: Sequence[str] = ("layer1", "layer2"),
    random_pair: tuple[torch.Tensor, torch.Tensor] | None = None,
    caption: str | None = None,
) -> Figure:
    """Figure 3: two consecutive conv masks of one residual block, side by side with shared rows.

    Left, layer 1 as ``(r_out * kh, r_in * kw)`` (:func:`kernel_grid`); right, layer 2 transposed,
    ``(r_in * kw, r_out * kh)`` (``kernel_grid(mask2, transpose=True)``), so row c of both panels is
    channel c between the layers (layer 1's output c, layer 2's input c). The empty channels -- layer 1's
    outputs, layer 2's inputs -- are shaded orange and marked in the two side bars in the middle (white =
    empty, blue = non-empty); aligned pruning shows as white cells facing each other.

    ``random_pair`` (two masks of the same shapes, e.g. :func:`random_mask_like` of each): a second row
    drawn the same way, the chance level. ``caption``: a grey line under the legend (e.g. the run's label).
    Returns the figure (4 axes per row: 2 grids, 2 bars).
    ``ValueError`` if the masks are not 4-D, not consecutive, or ``random_pair`` has other shapes.
    """
    import matplotlib.pyplot as plt

    mask1, mask2 = _check_consecutive(_as_conv_mask(mask1), _as_conv_mask(mask2))
    if len(titles) != 2:
        raise ValueError(f"titles needs two entries (layer 1, layer 2), got {len(titles)}")
    rows = [(mask1, mask2, tuple(titles))]
    if random_pair is not None:
        if len(random_pair) != 2:
            raise ValueError(f"random_pair must be two masks, got {len(random_pair)}")
        random1, random2 = (_as_conv_mask(m) for m in random_pair)
        if random1.shape != mask1.shape or random2.shape != mask2.shape:
            raise ValueError(
                f"random_pair has shapes {tuple(random1.shape)} and {tuple(random2.shape)}; "
                f"the layers have {tuple(mask1.shape)} and {tuple(mask2.shape)}"
            )
        rows.append((random1, random2, tuple(f"random mask, same density as {t}" for t in titles)))
    c, r_in1, r_out2 = mask1.shape[0], mask1.shape[1], mask2.shape[0]
    width = 12.0
    panel_height = min(9.0, max(2.5, 0.75 * width * c / (r_in1 + r_out2)))
    fig, axes = plt.subplots(
        len(rows),
        2,
        figsize=(width, panel_height * len(rows) + 1.5),
        squeeze=False,
        gridspec_kw={"width_ratios": [r_in1, r_out2]},  # equal heights: row c is channel c in both panels
    )
    for row_axes, (m1, m2, row_titles) in zip(axes, rows):
        _plot_pair_row(row_axes, m1, m2, row_titles)
    out1, in2 = _empty_between(mask1, mask2)
    overlap, expected = int((out1 & in2).sum()), int(out1.sum()) * int(in2.sum()) / c
    fig.suptitle(
        f"Consecutive layers: {overlap} of {c} channels are empty in both "
        f"(layer 1 outputs {int(out1.sum())}, layer 2 inputs {int(in2.sum())}; unrelated sets: {expected:.2f})",
        fontsize=10,
    )
    fig.legend(
        handles=_legend_handles(), loc="lower center", bbox_to_anchor=(0.5, 0.02), ncol=3, frameon=False, fontsize=8
    )
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8, color="0.35")
    fig.subplots_adjust(bottom=0.1, top=0.88 if len(rows) == 1 else 0.92, hspace=0.4, wspace=0.3)
    return fig
