"""The numerical check of DNW's swap claim (Section 2.2) counts what it says it counts."""

import pytest
import torch

from rewire.experiments.tiny_graphs.swap_claim import swap_trials, top_edges


def test_top_edges_keeps_exactly_the_largest_magnitudes_per_row():
    w = torch.tensor([[0.1, -0.9, 0.5, -0.2], [0.3, 0.2, -0.1, 0.05]])
    assert top_edges(w, 2).tolist() == [[False, True, True, False], [True, True, False, False]]


def reference_counts(alpha, trials, emitters, real, dim, seed):
    """The same experiment written trial by trial, with the update rule from autograd."""
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(trials, emitters, dim, generator=g, dtype=torch.float64)
    weights = torch.rand(trials, emitters, generator=g, dtype=torch.float64) * 2 - 1
    targets = torch.randn(trials, dim, generator=g, dtype=torch.float64)
    single = holds = 0
    for t in range(trials):
        w, z, y = weights[t], states[t], targets[t]
        old = set(w.abs().argsort(descending=True)[:real].tolist())
        node_input = torch.zeros(dim, dtype=torch.float64, requires_grad=True)
        loss = 0.5 * ((sum(w[u] * z[u] for u in old) + node_input - y) ** 2).sum()
        (grad_input,) = torch.autograd.grad(loss, node_input)  # dL/dI_k
        new_w = torch.stack([w[u] - alpha * torch.dot(z[u], grad_input) for u in range(emitters)])
        new = set(new_w.abs().argsort(descending=True)[:real].tolist())
        if len(new - old) == 1 and bool((new_w.sign() == w.sign()).all()):
            single += 1
            loss_a = 0.5 * ((sum(new_w[u] * z[u] for u in new) - y) ** 2).sum()
            loss_b = 0.5 * ((sum(new_w[u] * z[u] for u in old) - y) ** 2).sum()
            holds += int(loss_a < loss_b)
    return single, holds


def test_counts_match_a_trial_by_trial_reference():
    result = swap_trials(0.02, trials=300, emitters=6, real=3, dim=5, seed=7)
    assert (result.single_swaps, result.holds) == reference_counts(0.02, 300, 6, 3, 5, 7)
    assert result.single_swaps > 0


def test_invariants_and_the_proofs_first_order_condition_at_small_alpha():
    result = swap_trials(1e-3, trials=5000, seed=1)
    assert 0 < result.single_swaps <= result.swaps <= result.trials
    assert result.holds <= result.single_swaps
    assert result.aligned == result.single_swaps  # Eq. 4-6 hold whenever a single swap happens, for small alpha
    assert swap_trials(1e-3, trials=5000, seed=1) == result  # seeded


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": 0.1, "real": 0}, {"alpha": 0.1, "real": 8}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        swap_trials(**kwargs)
