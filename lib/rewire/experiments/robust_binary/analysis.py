"""Appendix A of Liu et al., *Robust Binary Models by Pruning Randomly-initialized Networks* (NeurIPS 2022).

Pure functions and small numerical experiments (seconds on a CPU, no real network is
trained) for the four analyses of the paper's Appendix A:

A.1  Layer-wise allocation of a kept-weight budget (Theorems A.1, A.2; proofs in B.1, B.2)
-------------------------------------------------------------------------------------------
An allocation keeps ``kept[i] = m_i`` of the ``sizes[i] = n_i`` weights of layer i,
with ``sum(kept) = budget``.

* :func:`search_space_bound` -- ``prod_i C(n_i, m_i)``, the number of subnetworks, i.e. the
  size of the search space (A.1.1). Theorem A.1: a maximiser satisfies Eq. (5),
  ``|m_j/n_j - m_k/n_k| < 1/n_j + 1/n_k`` for all j, k (:func:`satisfies_eq5`).
* :func:`path_count_bound` -- ``prod_i m_i``, the upper bound on the number of input-output
  paths (A.1.2). Theorem A.2: in a maximiser every layer j has ``m_j = n_j`` or
  ``m_j >= m_k - 1`` for every k (:func:`satisfies_theorem_a2`).
* :func:`brute_force_best` -- every maximiser of either objective over ALL integer
  allocations ``0 <= m_i <= n_i``, ``sum m_i = budget`` (exact integer arithmetic).
* :func:`fixed_rate_allocation` -- the *fixed pruning rate* strategy ``m_i = (1-r) n_i``
  (A.1.1), made integral by largest-remainder rounding of ``budget * n_i / sum(n)``.
* :func:`fixed_count_allocation` -- the *fixed number of parameters* strategy (A.1.2): the
  same count in every layer, layers smaller than that count kept whole (water filling).
* :func:`search_space_optimum` -- one exact integer maximiser of the search-space size.

What exactly holds for integer allocations (derived here, checked by brute force in the tests):

* ``log C(n, m)`` is concave in m, with increments ``log((n - m)/(m + 1))``, so an allocation
  maximises the search space iff one threshold t >= 0 separates the increments taken from those
  not taken, ``(n_i - m_i)/(m_i + 1) <= t <= (n_i - m_i + 1)/m_i``, i.e. with ``rho = 1/(1+t)``::

      rho (n_i + 1) - 1  <=  m_i  <=  rho (n_i + 1)      for every layer i.

  The optimum is thus a fixed rate applied to ``n_i + 1``, not to ``n_i``: the rate-``(1-r)``
  allocation is an exact maximiser when every ``(1-r) n_i`` is an integer, and otherwise the
  rounded fixed-rate allocation is only a *neighbour* of the maximisers (it can differ by one
  weight in a layer, and then its search space is smaller by a factor close to 1).
* ``prod m_i`` (budget >= number of layers) is maximised exactly by the allocations that
  satisfy Theorem A.2's property; the fixed-count allocation is one of them. With
  budget < number of layers every allocation has a zero and the product is 0 everywhere.

A.2  FLOPs of the sparse Conv-BN-ReLU block, full precision vs binary (Table 6)
-----------------------------------------------------------------------------
:func:`table6_flops` gives the six entries of Table 6, term by term with its source in the
appendix text; :func:`binary_flop_ratios` the three binary/full-precision ratios
(0.6616, 0.5740, 0.7065 at r = 0.99, c = 3, r_in = r_out = 128, s = 16).
:func:`text_backward_ratio` evaluates the alternative reading of the backward pass in the
A.2 text ("the overhead is independent of the pruning rate r"), which Table 6 does not follow.

A.3  The last batch normalisation before the softmax
-----------------------------------------------------
:func:`lbn_gradient_experiment` scales the classifier of a small random MLP (512 penultimate
units, 10 classes) by alpha = 16 (:func:`kaiming_constant_to_binary_scale`: signed Kaiming
constant ±sqrt(2/512) = ±1/16 -> binary ±1) and measures the gradient reaching the penultimate
layer with and without a last BatchNorm1d.

A.4  The structure of a randomly pruned 3x3 conv layer
------------------------------------------------------
The paper's counts (8.19 kernels with 3 kept, 0.18 with 4, for n = 3x3x256x256 and r = 0.99)
follow from its Eq. (10), a Stirling approximation of a ``Binomial(m, 9/n)`` "apples in boxes"
model that also drops the factor ``(1 - 9/n)^(m-k)`` (= e^-0.09 here). That model lets one
kernel position receive several apples, so it overcounts multi-weight kernels by about
``9^k / (9·8···(9-k+1))``. A uniformly random mask with exactly m kept weights (random top-k)
follows the hypergeometric law -- 5.18 and 0.078 kernels -- which the i.i.d. Bernoulli law
matches to two decimals (5.18, 0.079); sampled masks agree with these, not with 8.19/0.18.
The qualitative conclusion (kernels with >= 4 kept weights are almost never seen) holds.
The text's ``P(X_j = 0) ~= e^{9(1-r)}`` lacks a minus sign: ``e^{-9(1-r)}``.

:func:`expected_kernels_with_kept` (four models: the paper's Eq. (10), the paper's binomial
before its Stirling step, the exact hypergeometric law of an exact-count random mask and the
i.i.d. Bernoulli law), :func:`sample_random_kernel_counts` (random top-k masks with
:func:`rewire.sparse.masks.topk_mask`) and :func:`kept_per_kernel_histogram` (any 4-d mask,
random or trained; Section 4.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

from rewire.sparse.masks import topk_mask

__all__ = [
    "search_space_bound", "path_count_bound", "OBJECTIVES", "allocations", "BruteForceResult", "brute_force_best",
    "fixed_rate_allocation", "fixed_count_allocation", "search_space_optimum", "satisfies_eq5",
    "satisfies_theorem_a2", "table6_flops", "BinaryFlopRatios", "binary_flop_ratios", "text_backward_ratio",
    "kaiming_constant_to_binary_scale", "last_batch_norm", "LBNResult", "lbn_gradient_experiment",
    "EXPECTATION_MODELS", "expected_kernels_with_kept", "kept_per_kernel_histogram", "KernelCountSample",
    "sample_random_kernel_counts",
]  # fmt: skip


# ============================================================================ A.1 allocations


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if not sizes:
        raise ValueError("sizes must name at least one layer")
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, int):
            raise ValueError(f"layer sizes must be integers, got {n!r}")
        if n <= 0:
            raise ValueError(f"layer sizes must be positive, got {n} in {sizes}")
    return sizes


def _check_budget(sizes: tuple[int, ...], budget: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise ValueError(f"budget must be an integer number of kept weights, got {budget!r}")
    total = sum(sizes)
    if budget < 0:
        raise ValueError(f"budget must be non-negative, got {budget}")
    if budget > total:
        raise ValueError(f"budget {budget} is larger than the total number of weights {total}")
    return budget


def _check_kept(sizes: Sequence[int], kept: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    sizes = _check_sizes(sizes)
    kept = tuple(kept)
    if len(kept) != len(sizes):
        raise ValueError(f"kept has {len(kept)} entries but sizes has {len(sizes)}")
    for m, n in zip(kept, sizes):
        if isinstance(m, bool) or not isinstance(m, int):
            raise ValueError(f"kept counts must be integers, got {m!r}")
        if not 0 <= m <= n:
            raise ValueError(f"kept count {m} outside [0, {n}] (the layer size)")
    return sizes, kept


def search_space_bound(sizes: Sequence[int], kept: Sequence[int]) -> int:
    """``prod_i C(n_i, m_i)``: the number of subnetworks keeping ``kept[i]`` of ``sizes[i]`` weights (A.1.1).

    Exact (a Python int). Theorem A.1 concerns its maximisers under a fixed total.
    """
    sizes, kept = _check_kept(sizes, kept)
    return math.prod(math.comb(n, m) for n, m in zip(sizes, kept))


def path_count_bound(sizes: Sequence[int], kept: Sequence[int]) -> int:
    """``prod_i m_i``: the upper bound on the input-output paths of the pruned feedforward net (A.1.2)."""
    _, kept = _check_kept(sizes, kept)
    return math.prod(kept)


OBJECTIVES: dict[str, Callable[[Sequence[int], Sequence[int]], int]] = {
    "search_space": search_space_bound,
    "path_count": path_count_bound,
}


def allocations(sizes: Sequence[int], budget: int) -> Iterator[tuple[int, ...]]:
    """Every integer allocation ``0 <= m_i <= n_i`` with ``sum m_i = budget``, in lexicographic order."""
    sizes = _check_sizes(sizes)
    budget = _check_budget(sizes, budget)
    room_after = [sum(sizes[i + 1 :]) for i in range(len(sizes))]

    def rec(i: int, left: int, prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        if i == len(sizes):
            yield prefix
            return
        for m in range(max(0, left - room_after[i]), min(sizes[i], left) + 1):
            yield from rec(i + 1, left - m, prefix + (m,))

    yield from rec(0, budget, ())


@dataclass(frozen=True)
class BruteForceResult:
    best_value: int
    maximisers: tuple[tuple[int, ...], ...]  # every allocation reaching best_value, lexicographic
    n_allocations: int  # how many allocations were enumerated


def brute_force_best(
    sizes: Sequence[int], budget: int, objective: str | Callable[[Sequence[int], Sequence[int]], int]
) -> BruteForceResult:
    """All maximisers of ``objective`` (``"search_space"``, ``"path_count"`` or a callable) over ALL allocations."""
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; use one of {sorted(OBJECTIVES)} or a callable")
        objective = OBJECTIVES[objective]
    best, winners, count = None, [], 0
    for alloc in allocations(sizes, budget):
        count += 1
        value = objective(sizes, alloc)
        if best is None or value > best:
            best, winners = value, [alloc]
        elif value == best:
            winners.append(alloc)
    return BruteForceResult(best, tuple(winners), count)


def fixed_rate_allocation(sizes: Sequence[int], budget: int) -> tuple[int, ...]:
    """Fixed pruning rate (A.1.1): ``m_i ~= (1-r) n_i`` with ``1-r = budget / sum(n)``, summing to ``budget``.

    Integer counts by largest-remainder rounding of the exact shares ``budget * n_i / sum(n)``
    (floors first, then +1 to the largest remainders; equal remainders: the lower layer index).
    When every share is an integer this is exactly ``(1-r) n_i``.
    """
    sizes = _check_sizes(sizes)
    budget = _check_budget(sizes, budget)
    total = sum(sizes)
    shares = [Fraction(budget * n, total) for n in sizes]
    kept = [math.floor(s) for s in shares]
    order = sorted(range(len(sizes)), key=lambda i: (-(shares[i] - kept[i]), i))
    for i in order[: budget - sum(kept)]:
        kept[i] += 1
    return tuple(kept)


def fixed_count_allocation(sizes: Sequence[int], budget: int) -> tuple[int, ...]:
    """Fixed number of parameters (A.1.2): the same count in every layer, small layers kept whole.

    Water filling: layers (smallest first) whose size is at most an equal share of what is left
    are kept entirely; the remaining layers get ``q`` or ``q + 1`` each (``q`` the integer share,
    the ``+1`` going to the lowest layer indices). Every layer then has ``m_j = n_j`` or
    ``m_j >= m_k - 1`` for all k -- Theorem A.2's property.
    """
    sizes = _check_sizes(sizes)
    budget = _check_budget(sizes, budget)
    kept = [0] * len(sizes)
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    left = budget
    rest: list[int] = []
    for pos, i in enumerate(order):
        if sizes[i] <= left // (len(sizes) - pos):
            kept[i] = sizes[i]
            left -= sizes[i]
        else:
            rest = sorted(order[pos:])
            break
    if rest:
        q, extra = divmod(left, len(rest))
        for t, i in enumerate(rest):
            kept[i] = q + (1 if t < extra else 0)
    return tuple(kept)


def search_space_optimum(sizes: Sequence[int], budget: int) -> tuple[int, ...]:
    """One exact maximiser of ``prod C(n_i, m_i)``: greedy on the concave increments ``(n - m)/(m + 1)``.

    Each step adds one kept weight to the layer with the largest ratio (exact fractions; ties:
    the lower layer index). Greedy is exact for a separable concave objective.
    """
    sizes = _check_sizes(sizes)
    budget = _check_budget(sizes, budget)
    kept = [0] * len(sizes)
    for _ in range(budget):
        best = max(
            (i for i in range(len(sizes)) if kept[i] < sizes[i]),
            key=lambda i: (Fraction(sizes[i] - kept[i], kept[i] + 1), -i),
        )
        kept[best] += 1
    return tuple(kept)


def satisfies_eq5(sizes: Sequence[int], kept: Sequence[int]) -> bool:
    """Theorem A.1, Eq. (5): ``|m_j/n_j - m_k/n_k| < 1/n_j + 1/n_k`` for all j, k (exact fractions)."""
    sizes, kept = _check_kept(sizes, kept)
    rates = [Fraction(m, n) for m, n in zip(kept, sizes)]
    return all(
        abs(rates[j] - rates[k]) < Fraction(1, sizes[j]) + Fraction(1, sizes[k])
        for j in range(len(sizes))
        for k in range(len(sizes))
    )


def satisfies_theorem_a2(sizes: Sequence[int], kept: Sequence[int]) -> bool:
    """Theorem A.2's property: every layer has ``m_j = n_j`` or ``m_j >= m_k - 1`` for all k."""
    sizes, kept = _check_kept(sizes, kept)
    top = max(kept)
    return all(m == n or m >= top - 1 for m, n in zip(kept, sizes))


# ============================================================================ A.2 Table 6


def _check_flop_args(r: float, c: int, s: int, r_in: int, r_out: int) -> None:
    if not 0 <= r < 1:
        raise ValueError(f"pruning rate r must be in [0, 1) (0 = the dense block), got {r}")
    for name, v in (("c", c), ("s", s), ("r_in", r_in), ("r_out", r_out)):
        if v <= 0:
            raise ValueError(f"{name} must be positive, got {v}")


def table6_flops(r: float, c: int, s: int, r_in: int, r_out: int) -> dict[str, float]:
    """The six entries of Table 6 (Appendix A.2): FLOPs of a sparse Conv-BN-ReLU block.

    ``c`` kernel size, ``s`` feature-map size (square), ``r_in``/``r_out`` channels, ``r`` pruning
    rate. Keys ``{fp,binary}_{forward_train,forward_eval,backward}``. Terms (A.2 text):

    * convolution: ``2 (1-r) c² s² r_in r_out`` full precision (multiply + add per kept weight and
      position) and ``(1-r) c² s² r_in r_out`` binary (a ±1 kernel needs no multiplication),
      "Forward Pass" paragraph;
    * batch norm: ``10 s² r_out`` in training (the running statistics are updated) and
      ``3 s² r_out`` at inference, no affine parameters (same paragraph);
    * ReLU: ``s² r_out`` always (same paragraph); so ``11 s² r_out`` (training) and ``4 s² r_out``
      (inference) in the forward rows;
    * backward (Table 6, third row; "Backward Pass" paragraph and "Discussion"):
      transposed convolution for the input gradient ``2 (1-r) c² s² r_in r_out`` (fp) /
      ``(1-r) c² s² r_in r_out`` (binary), the gradient of the scores ``2 (1-r) c² s² r_in r_out``
      (both), the multiplication by the weights when back-propagating to the scores
      ``c² r_in r_out`` (full precision only; "no multiplication ... for binary blocks"), and
      ``4 s² r_out`` for BN (training mode) and ReLU, a total the paper does not split.

    Note: the text says the score-gradient overhead ``2 c² s² r_in r_out`` is "independent of the
    pruning rate r", whereas Table 6 and the quoted ratio 0.7065 carry ``(1-r)`` on it; this
    function follows Table 6 (see :func:`text_backward_ratio` for the other reading).
    """
    _check_flop_args(r, c, s, r_in, r_out)
    conv = (1 - r) * c**2 * s**2 * r_in * r_out  # one kept weight at one output position
    act = s**2 * r_out  # one output element
    return {
        "fp_forward_train": 2 * conv + (10 + 1) * act,
        "binary_forward_train": conv + (10 + 1) * act,
        "fp_forward_eval": 2 * conv + (3 + 1) * act,
        "binary_forward_eval": conv + (3 + 1) * act,
        "fp_backward": 2 * conv + 2 * conv + 4 * act + c**2 * r_in * r_out,
        "binary_backward": conv + 2 * conv + 4 * act,
    }


@dataclass(frozen=True)
class BinaryFlopRatios:
    forward_train: float  # binary / full precision, forward pass, training-mode BN
    forward_eval: float  # binary / full precision, forward pass, inference-mode BN
    backward: float  # binary / full precision, backward pass


def binary_flop_ratios(r: float = 0.99, c: int = 3, s: int = 16, r_in: int = 128, r_out: int = 128) -> BinaryFlopRatios:
    """Binary over full-precision FLOPs of the Conv-BN-ReLU block (A.2); the defaults are the paper's example."""
    t = table6_flops(r, c, s, r_in, r_out)
    return BinaryFlopRatios(
        forward_train=t["binary_forward_train"] / t["fp_forward_train"],
        forward_eval=t["binary_forward_eval"] / t["fp_forward_eval"],
        backward=t["binary_backward"] / t["fp_backward"],
    )


def text_backward_ratio(r: float = 0.99, c: int = 3, s: int = 16, r_in: int = 128, r_out: int = 128) -> float:
    """Backward ratio if the score-gradient overhead is dense, ``2 c² s² r_in r_out`` (A.2 text), not ``(1-r)`` times it."""
    _check_flop_args(r, c, s, r_in, r_out)
    conv = (1 - r) * c**2 * s**2 * r_in * r_out
    overhead = 2 * c**2 * s**2 * r_in * r_out
    act = s**2 * r_out
    fp = 2 * conv + overhead + c**2 * r_in * r_out + 4 * act
    binary = conv + overhead + 4 * act
    return binary / fp


# ============================================================================ A.3 last batch norm


def kaiming_constant_to_binary_scale(fan_in: int) -> float:
    """alpha = 1 / sqrt(2 / fan_in): the factor from signed Kaiming constant ±sqrt(2/fan_in) to binary ±1 (A.3)."""
    if fan_in <= 0:
        raise ValueError(f"fan_in must be positive, got {fan_in}")
    return 1.0 / math.sqrt(2.0 / fan_in)


@dataclass(frozen=True)
class LBNResult:
    alpha: float
    n_correct: int  # samples whose label is the argmax of the logits (the same for alpha * logits)
    n_incorrect: int
    # with the last BN (training mode, batch statistics)
    lbn_max_rel_change_u: float  # max |g_alpha - g_1| / max |g_1|, gradient w.r.t. the penultimate output u
    lbn_max_rel_change_w1: float  # the same for the first layer's weights (the "previous layers")
    lbn_norm_ratio_u: float  # ||g_alpha|| / ||g_1||
    # with the last BN at fixed running statistics b, v scaled to alpha b, alpha v (Eqs. 7-8)
    lbn_running_max_rel_change_u: float
    # without the last BN, per sample (sum reduction), ||dL/du|| at alpha over at 1
    plain_norm_ratio_correct_median: float
    plain_norm_ratio_correct_max: float
    plain_norm_ratio_incorrect_median: float
    plain_norm_ratio_incorrect_min: float
    # max_j |softmax_j - 1(j = c)| < near_zero_tol: the softmax gradient has (numerically) vanished
    frac_near_zero_correct_alpha1: float
    frac_near_zero_correct_alpha: float
    # incorrect samples: max_j |softmax(alpha o)_j - 1(j = argmax o)|, the distance to the saturated one-hot
    saturation_gap_incorrect_median_alpha1: float
    saturation_gap_incorrect_median_alpha: float


def last_batch_norm(
    o: torch.Tensor, eps: float = 1e-5, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None
) -> torch.Tensor:
    """Training-mode ``BatchNorm1d`` on logits ``(N, classes)``: batch mean, biased batch variance.

    Written out (it equals ``F.batch_norm(..., training=True)``) so that ``eps`` may be 0.
    """
    out = (o - o.mean(0)) / torch.sqrt(o.var(0, unbiased=False) + eps)
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    return out


def _mlp(generator: torch.Generator, n: int, d_in: int, width: int, classes: int):
    x = torch.randn(n, d_in, generator=generator, dtype=torch.float64)
    w1 = torch.randn(width, d_in, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / d_in)
    signs = torch.randint(0, 2, (classes, width), generator=generator).to(torch.float64) * 2 - 1
    return x, w1, signs


def lbn_gradient_experiment(
    alpha: float = 16.0,
    n: int = 256,
    d_in: int = 32,
    width: int = 512,
    classes: int = 10,
    p_correct: float = 0.4,
    near_zero_tol: float = 1e-3,
    affine: bool = False,
    eps: float = 1e-5,
    seed: int = 0,
) -> LBNResult:
    """Appendix A.3 on a random MLP ``x -> ReLU(W1 x) = u -> W u [-> BN1d] -> cross-entropy``.

    ``W`` is the signed Kaiming constant ``±sqrt(2/width)`` (``±1/16`` at 512 units) and is then
    scaled by ``alpha`` (16 turns it into the binary ``±1``). Labels: with probability
    ``p_correct`` the argmax of the logits (a correctly classified input), otherwise another
    class drawn uniformly. Float64. ``affine=True`` gives the BN random (non-trivial) affine
    parameters; the invariance does not depend on them.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if not 0 < p_correct < 1:
        raise ValueError(f"p_correct must be in (0, 1), got {p_correct}")
    g = torch.Generator().manual_seed(seed)
    x, w1, signs = _mlp(g, n, d_in, width, classes)
    w_kc = signs * math.sqrt(2.0 / width)
    u0 = torch.relu(x @ w1.T)
    pred = (u0 @ w_kc.T).argmax(1)
    other = (pred + torch.randint(1, classes, (n,), generator=g)) % classes
    labels = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < p_correct, pred, other)
    correct = labels == pred
    gamma = torch.rand(classes, generator=g, dtype=torch.float64) + 0.5 if affine else None
    beta = torch.randn(classes, generator=g, dtype=torch.float64) if affine else None
    stats_o = u0 @ w_kc.T
    run_mean, run_std = stats_o.mean(0), stats_o.std(0)  # stand-in running statistics b, v

    def grads(scale: float, head: str):
        w1_ = w1.clone().requires_grad_(True)
        u = torch.relu(x @ w1_.T)
        u.retain_grad()
        o = u @ (scale * w_kc).T
        if head == "bn":
            o = last_batch_norm(o, eps, gamma, beta)
        elif head == "running":
            o = (o - scale * run_mean) / (scale * run_std)
        F.cross_entropy(o, labels, reduction="sum").backward()
        return u.grad.detach(), w1_.grad.detach()

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max() / b.abs().max())

    gu1, gw1 = grads(1.0, "bn")
    gua, gwa = grads(alpha, "bn")
    ru1, _ = grads(1.0, "running")
    rua, _ = grads(alpha, "running")
    pu1, _ = grads(1.0, "plain")
    pua, _ = grads(alpha, "plain")
    ratio = pua.norm(dim=1) / pu1.norm(dim=1)

    onehot = F.one_hot(labels, classes).to(torch.float64)
    top = F.one_hot(pred, classes).to(torch.float64)
    p1, pa = torch.softmax(stats_o, 1), torch.softmax(alpha * stats_o, 1)
    near1 = (p1 - onehot).abs().amax(1) < near_zero_tol
    neara = (pa - onehot).abs().amax(1) < near_zero_tol
    gap1, gapa = (p1 - top).abs().amax(1), (pa - top).abs().amax(1)
    return LBNResult(
        alpha=alpha,
        n_correct=int(correct.sum()),
        n_incorrect=int((~correct).sum()),
        lbn_max_rel_change_u=rel(gua, gu1),
        lbn_max_rel_change_w1=rel(gwa, gw1),
        lbn_norm_ratio_u=float(gua.norm() / gu1.norm()),
        lbn_running_max_rel_change_u=rel(rua, ru1),
        plain_norm_ratio_correct_median=float(ratio[correct].median()),
        plain_norm_ratio_correct_max=float(ratio[correct].max()),
        plain_norm_ratio_incorrect_median=float(ratio[~correct].median()),
        plain_norm_ratio_incorrect_min=float(ratio[~correct].min()),
        frac_near_zero_correct_alpha1=float(near1[correct].double().mean()),
        frac_near_zero_correct_alpha=float(neara[correct].double().mean()),
        saturation_gap_incorrect_median_alpha1=float(gap1[~correct].median()),
        saturation_gap_incorrect_median_alpha=float(gapa[~correct].median()),
    )


# ============================================================================ A.4 random kernels

EXPECTATION_MODELS = ("paper_eq10", "paper_binomial", "hypergeometric", "bernoulli")


def _log_binom(a: float, b: float) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def expected_kernels_with_kept(
    k: int, n: int = 3 * 3 * 256 * 256, r: float = 0.99, kernel: int = 9, model: str = "hypergeometric"
) -> float:
    """Expected number of kernels (``n / kernel`` of them) with exactly ``k`` kept weights at pruning rate ``r``.

    ``model``:

    * ``"paper_eq10"`` -- the paper's Eq. (10), ``sqrt(m / (2 pi k (m-k))) (9 e (1-r) / k)^k`` with
      ``m = (1-r) n`` (Stirling applied to the binomial below and ``(1 - 9/n)^(m-k)`` set to 1);
      this gives the quoted 8.19 (k = 3) and 0.18 (k = 4). Defined for k >= 1.
    * ``"paper_binomial"`` -- the paper's "apples in boxes" model before Eq. (9):
      ``Binomial(m, kernel/n)`` with ``m = (1-r) n`` (real, via the gamma function).
    * ``"hypergeometric"`` -- exact for a mask keeping exactly ``M = round((1-r) n)`` weights
      chosen uniformly (random top-k): ``C(kernel, k) C(n - kernel, M - k) / C(n, M)``.
    * ``"bernoulli"`` -- each weight kept independently with probability ``1-r``:
      ``Binomial(kernel, 1-r)``.
    """
    if not 0 < r < 1:
        raise ValueError(f"pruning rate r must be in (0, 1), got {r}")
    if n <= 0 or kernel <= 0 or n % kernel:
        raise ValueError(f"n must be a positive multiple of the kernel size {kernel}, got n={n}")
    if not 0 <= k <= kernel:
        raise ValueError(f"k must be in [0, {kernel}], got {k}")
    if model not in EXPECTATION_MODELS:
        raise ValueError(f"unknown model {model!r}; use one of {EXPECTATION_MODELS}")
    kernels = n // kernel
    m = (1 - r) * n
    if model == "paper_eq10":
        if k == 0:
            raise ValueError("Eq. (10) is stated for k >= 1")
        return kernels * math.sqrt(m / (2 * math.pi * k * (m - k))) * (kernel * math.e * (1 - r) / k) ** k
    if model == "paper_binomial":
        p = kernel / n
        return kernels * math.exp(_log_binom(m, k) + k * math.log(p) + (m - k) * math.log1p(-p))
    if model == "hypergeometric":
        big_m = round(m)
        if k > big_m or kernel - k > n - big_m:
            return 0.0
        return kernels * math.exp(
            math.log(math.comb(kernel, k)) + _log_binom(n - kernel, big_m - k) - _log_binom(n, big_m)
        )
    return kernels * math.comb(kernel, k) * (1 - r) ** k * r ** (kernel - k)


def kept_per_kernel_histogram(mask: torch.Tensor) -> torch.Tensor:
    """Number of kernels with exactly j kept weights, j = 0..kh*kw, for a conv mask ``(out, in, kh, kw)``.

    Works on any 0/1 or bool mask: a random one or a trained network's (Section 4.3).
    Returns an int64 tensor of length ``kh * kw + 1`` summing to ``out * in``.
    """
    if mask.ndim != 4:
        raise ValueError(f"expected a conv mask of shape (out, in, kh, kw), got shape {tuple(mask.shape)}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask entries must be 0 or 1")
    per_kernel = (mask != 0).reshape(mask.shape[0] * mask.shape[1], -1).sum(1)
    return torch.bincount(per_kernel, minlength=mask.shape[2] * mask.shape[3] + 1).cpu()


@dataclass(frozen=True)
class KernelCountSample:
    histograms: torch.Tensor  # (seeds, kernel + 1) int64: one kept-per-kernel histogram per seed
    mean: torch.Tensor  # (kernel + 1,) float64
    standard_error: torch.Tensor  # (kernel + 1,) float64: sample std / sqrt(seeds)


def sample_random_kernel_counts(
    shape: tuple[int, int, int, int] = (256, 256, 3, 3), r: float = 0.99, seeds: Sequence[int] = range(40)
) -> KernelCountSample:
    """Kept-per-kernel histograms of random exact-count masks: top-k of uniform scores, ``k = round((1-r) n)``."""
    if not 0 < r < 1:
        raise ValueError(f"pruning rate r must be in (0, 1), got {r}")
    seeds = list(seeds)
    if len(seeds) < 2:
        raise ValueError("need at least two seeds for a standard error")
    n = math.prod(shape)
    k = round((1 - r) * n)
    hists = []
    for seed in seeds:
        scores = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
        hists.append(kept_per_kernel_histogram(topk_mask(scores, k)))
    h = torch.stack(hists)
    hd = h.to(torch.float64)
    return KernelCountSample(h, hd.mean(0), hd.std(0) / math.sqrt(len(seeds)))
