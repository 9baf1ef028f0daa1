"""DNW Section 2.2, checked numerically: does swapping a hallucinated edge in for a real one lower the loss?

The paper's claim (Section 2.2, proof via Eq. 3-8 and Lemma 1 of Appendix D): with the
node states held fixed and a learning rate alpha below some alpha* > 0, when the update
rule of Algorithm 1 line 10, ``w~_uk = w_uk + <Z_u, -alpha dL/dI_k>``, makes a
hallucinated edge (i, k) overtake a real edge (j, k) in magnitude, then using the new
edge set (A) gives a lower loss than keeping the old one (B), both with the updated weights.

``swap_trials`` runs many independent random instances of that situation at once, for one
receiving node k:

- m emitting nodes with fixed states ``Z_u`` (standard normal vectors of dimension d) and
  weights ``w_uk`` drawn uniformly from [-1, 1] (Algorithm 1 line 2);
- the real edges are the ``real`` largest |w_uk| (line 5); ``I_k = sum over real edges w_uk Z_u``;
- the loss is ``L(I_k) = 1/2 ||I_k - y||^2`` with a random target y (Lipschitz on bounded sets);
- one application of the update rule to every edge, real or hallucinated (line 10);
- a trial *swaps* when the top-``real`` set of |w~| differs from that of |w|.
- besides the loss itself, the proof's first-order condition (Eq. 4, equivalently Eq. 6) is
  counted: ``<A - I_k, g> >= <B - I_k, g>`` with ``g = -alpha dL/dI_k``. Lemma 1 turns it into a
  loss decrease only to first order, so the two counts can differ.
- the claim is about a single exchange, so single swaps are counted apart from multiple
  ones, and trials where an update flips a weight's sign (excluded by the paper's
  assumption sign(w~) = sign(w)) are left out of both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class SwapTrialResult:
    alpha: float
    trials: int
    swaps: int  # trials whose edge set changed
    single_swaps: int  # ... by exactly one exchange, with every sign preserved (the claim's setting)
    holds: int  # single swaps where L(A) < L(B): swapping lowered the loss
    aligned: int  # single swaps satisfying the proof's Eq. 4: <A - I_k, g> >= <B - I_k, g>
    multi_swaps: int
    multi_holds: int

    @property
    def fraction_holds(self) -> float:
        """Share of the claim's cases (single swap, signs preserved) in which the swap lowered the loss."""
        return self.holds / self.single_swaps if self.single_swaps else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "fraction_holds": self.fraction_holds}


def top_edges(weights: torch.Tensor, real: int) -> torch.Tensor:
    """Bool mask of the ``real`` largest |w| in each row (Algorithm 1 line 5, one receiving node per row)."""
    index = weights.abs().topk(real, dim=1).indices
    return torch.zeros_like(weights, dtype=torch.bool).scatter_(1, index, True)


def node_input(weights: torch.Tensor, mask: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """``I_k = sum over real edges of w_uk Z_u``; weights/mask ``[T, m]``, states ``[T, m, d]``."""
    return torch.einsum("tm,tmd->td", weights * mask, states)


def quadratic_loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return 0.5 * (inputs - targets).pow(2).sum(dim=1)


def swap_trials(
    alpha: float, *, trials: int = 20_000, emitters: int = 8, real: int = 4, dim: int = 16, seed: int = 0
) -> SwapTrialResult:
    """Run ``trials`` random instances of one update step at learning rate ``alpha`` (see module docstring)."""
    if not 0 < real < emitters:
        raise ValueError(f"need 0 < real < emitters, got real={real}, emitters={emitters}")
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(trials, emitters, dim, generator=g, dtype=torch.float64)
    weights = torch.rand(trials, emitters, generator=g, dtype=torch.float64) * 2 - 1
    targets = torch.randn(trials, dim, generator=g, dtype=torch.float64)

    mask = top_edges(weights, real)
    grad_input = node_input(weights, mask, states) - targets  # dL/dI_k of the quadratic loss
    updated = weights - alpha * torch.einsum("tmd,td->tm", states, grad_input)  # line 10, every edge
    new_mask = top_edges(updated, real)

    entered = (new_mask & ~mask).sum(dim=1)
    signs_kept = (torch.sign(updated) == torch.sign(weights)).all(dim=1)
    loss_swapped = quadratic_loss(node_input(updated, new_mask, states), targets)  # A
    loss_kept = quadratic_loss(node_input(updated, mask, states), targets)  # B
    lowered = loss_swapped < loss_kept
    inputs = node_input(weights, mask, states)
    descent = -alpha * grad_input  # g of the proof
    towards_a = ((node_input(updated, new_mask, states) - inputs) * descent).sum(dim=1)
    towards_b = ((node_input(updated, mask, states) - inputs) * descent).sum(dim=1)
    aligned = towards_a >= towards_b

    single = (entered == 1) & signs_kept
    multi = (entered > 1) & signs_kept
    return SwapTrialResult(
        alpha=alpha,
        trials=trials,
        swaps=int((entered > 0).sum()),
        single_swaps=int(single.sum()),
        holds=int((single & lowered).sum()),
        aligned=int((single & aligned).sum()),
        multi_swaps=int(multi.sum()),
        multi_holds=int((multi & lowered).sum()),
    )
