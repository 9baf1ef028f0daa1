"""L1 + Anneal (DNW Section 3.3): the edge-count schedule, the annealed top-k selector, the L1 gradient term.

Exact properties: the schedule's endpoints, hand values and monotonicity; exactly k_t real edges
after every update, nested masks (a removed edge never returns, even when its weight grows); the
L1 gradient λ·sign(w) on the real edges and nothing on removed ones, on a hand-made signed tensor
with dyadic values (so the comparison is exact); a Trainer run that ends with exactly k and resumes
bit-identically.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from synthetic import separable_loaders

from rewire.methods.anneal import (
    AnnealedTopK,
    AnnealSchedule,
    EdgeAnnealing,
    L1Penalty,
    annealed_edge_count,
    apply_anneal,
    attach_l1_anneal,
    l1_penalty,
)
from rewire.sparse.masks import is_sparse, sparsify, topk_mask, update_masks
from rewire.sparse.schedules import cubic_sparsity
from rewire.train.trainer import Callback, Trainer, TrainingHparams

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ schedule


def test_schedule_endpoints_hand_values_and_monotonicity():
    count = lambda t: annealed_edge_count(t, n_allowed=1000, k=100, start=1.0, end=11.0)
    assert count(0.0) == count(1.0) == 1000  # the complete graph until the start
    assert count(11.0) == count(50.0) == 100  # exactly k from the end on
    # t = 3.5: progress 0.25, k_t = 100 + 900 * 0.75^3 = 479.6875 -> 480
    assert count(3.5) == 480
    # t = 6: progress 0.5, 100 + 900 / 8 = 212.5 -> 213 (halves round up)
    assert count(6.0) == 213
    # the same curve as Zhu & Gupta's sparsity s_t: k_t = n (1 - s_t) with s_f = 1 - k/n
    for t in (1.7, 4.2, 9.9):
        s = cubic_sparsity(t, final=0.9, end=11.0, start=1.0)
        assert abs(count(t) - 1000 * (1 - s)) <= 0.5 + 1e-9
    values = [count(1.0 + i / 100) for i in range(1001)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # non-increasing
    assert values[0] == 1000 and values[-1] == 100
    # small n: still exact at the ends and monotone at every step of a fine grid
    small = [annealed_edge_count(i / 997, n_allowed=7, k=3, start=0.0, end=1.0) for i in range(998)]
    assert small[0] == 7 and small[-1] == 3 and all(a >= b for a, b in zip(small, small[1:]))
    # with Δt the count changes only at start + j Δt
    stepped = lambda t: annealed_edge_count(t, n_allowed=1000, k=100, start=0.0, end=10.0, frequency=2.0)
    assert stepped(3.9) == stepped(2.0) != stepped(4.0)


def test_schedule_errors():
    with pytest.raises(ValueError, match="k must be in"):
        annealed_edge_count(0.0, n_allowed=10, k=11, start=0.0, end=1.0)
    with pytest.raises(ValueError, match="k must be in"):
        annealed_edge_count(0.0, n_allowed=10, k=0, start=0.0, end=1.0)
    with pytest.raises(ValueError, match="must be an int"):
        annealed_edge_count(0.0, n_allowed=10.0, k=3, start=0.0, end=1.0)
    with pytest.raises(ValueError, match="start < end"):
        AnnealSchedule(end=0.0)
    with pytest.raises(ValueError, match="frequency"):
        AnnealSchedule(end=3.0, frequency=-1.0)
    assert AnnealSchedule(end=10.0).edges_at(0.0, 50, 5) == 50


# ------------------------------------------------------------------ selector

# |w| ranks, largest first: 1.0 (1,0) .75 (0,2) .5 (0,0) .25 (0,1) .125 (1,1) .0625 (1,2)
WEIGHT = [[0.5, -0.25, 0.75], [-1.0, 0.125, -0.0625]]


def layer(weight=WEIGHT) -> nn.Linear:
    lin = nn.Linear(len(weight[0]), len(weight), bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(weight, dtype=torch.float64))
    return lin


def annealed(k=2, allowed=None, weight=WEIGHT) -> nn.Linear:
    lin = layer(weight)
    sparsify(lin, selector=AnnealedTopK(k, allowed), route="masked")
    return lin


def anneal_to(lin: nn.Linear, edges: int) -> torch.Tensor:
    p = lin.parametrizations.weight[0]
    p.selector.set_budget(edges)
    return p.update_mask(lin.parametrizations.weight.original).clone()


def test_starts_complete_and_keeps_exactly_k_t_nested_edges():
    lin = annealed(k=2)
    assert bool(lin.parametrizations.weight[0].mask.all())  # t = 0: every entry real
    expected = {
        5: [[1, 1, 1], [1, 1, 0]],
        4: [[1, 1, 1], [1, 0, 0]],
        3: [[1, 0, 1], [1, 0, 0]],
        2: [[0, 0, 1], [1, 0, 0]],
    }
    previous = torch.ones(2, 3, dtype=torch.bool)
    for edges, rows in expected.items():
        mask = anneal_to(lin, edges)
        assert torch.equal(mask, torch.tensor(rows, dtype=torch.bool))
        assert int(mask.sum()) == edges
        assert not bool((mask & ~previous).any())  # nested
        assert torch.equal(lin.weight.detach(), torch.where(mask, torch.tensor(WEIGHT, dtype=torch.float64), 0.0))
        previous = mask


def test_with_fixed_weights_the_masks_are_the_global_top_k_t_and_nested_on_a_random_stage():
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(20, 30, generator=g, dtype=torch.float64)
    allowed = torch.rand(20, 30, generator=g) < 0.6
    lin = layer(weight.tolist())
    sparsify(lin, selector=AnnealedTopK(40, allowed), route="masked")
    n = int(allowed.sum())
    schedule = AnnealSchedule(end=1.0)
    previous = allowed
    for step in range(11):
        edges = schedule.edges_at(step / 10, n, 40)
        mask = anneal_to(lin, edges)
        assert int(mask.sum()) == edges
        assert torch.equal(mask, topk_mask(weight.abs(), edges, allowed))
        assert not bool((mask & ~previous).any())
        previous = mask
    assert int(previous.sum()) == 40


def test_a_removed_edge_never_returns_even_when_its_weight_grows():
    lin = annealed(k=2)
    mask = anneal_to(lin, 4)  # removes (1,1) and (1,2)
    with torch.no_grad():
        lin.parametrizations.weight.original[1, 2] = 100.0  # now the largest |w|
    assert torch.equal(anneal_to(lin, 3), torch.tensor([[1, 0, 1], [1, 0, 0]], dtype=torch.bool))
    assert torch.equal(anneal_to(lin, 3) & ~mask, torch.zeros(2, 3, dtype=torch.bool))
    assert update_masks(lin) == 1 and int(lin.parametrizations.weight[0].mask.sum()) == 3  # idempotent


def test_budget_errors():
    lin = annealed(k=2)
    selector = lin.parametrizations.weight[0].selector
    anneal_to(lin, 4)
    with pytest.raises(ValueError, match="only removes edges"):
        selector.set_budget(5)
    with pytest.raises(ValueError, match=r"\[k=2, 4\]"):
        selector.set_budget(1)
    with pytest.raises(ValueError, match="must be an int"):
        selector.set_budget(3.0)
    with pytest.raises(ValueError, match="k must be in"):
        annealed(k=7)


def test_state_dict_restores_budget_and_edges():
    lin = annealed(k=2)
    anneal_to(lin, 4)
    restored = annealed(k=2)
    restored.load_state_dict(lin.state_dict())
    selector = restored.parametrizations.weight[0].selector
    assert int(selector.budget) == 4 and torch.equal(selector.kept, lin.parametrizations.weight[0].mask)
    assert torch.equal(restored.weight, lin.weight)
    with pytest.raises(ValueError, match="only removes edges"):
        selector.set_budget(5)


# ------------------------------------------------------------------ L1 term


def test_l1_gradient_is_lambda_sign_on_real_edges_and_removed_edges_get_none():
    lin = annealed(k=2)
    anneal_to(lin, 4)  # real: (0,0) .5, (0,1) -.25, (0,2) .75, (1,0) -1; removed: (1,1), (1,2)
    model = nn.Sequential(lin)
    x = torch.tensor([[1.0, 2.0, 4.0], [0.5, -1.0, 0.25]], dtype=torch.float64)
    model(x).sum().backward()
    original = lin.parametrizations.weight.original
    column_sums = x.sum(0)  # dL/dW_eff[v, u] = sum_b x[b, u] = (1.5, 1, 4.25)
    assert torch.equal(original.grad, torch.tensor([[1.5, 1.0, 4.25], [1.5, 0.0, 0.0]], dtype=torch.float64))
    L1Penalty(model, 0.25).on_after_backward(trainer=None)
    expected = torch.tensor(
        [[1.5 + 0.25, 1.0 - 0.25, 4.25 + 0.25], [1.5 - 0.25, 0.0, 0.0]], dtype=torch.float64
    )  # + λ sign(w) on the four real edges
    assert torch.equal(original.grad, expected)
    assert torch.equal(column_sums, torch.tensor([1.5, 1.0, 4.25], dtype=torch.float64))
    # the same as autograd of loss + λ Σ|w_eff| (d|x|/dx = sign x)
    original.grad = None
    (model(x).sum() + l1_penalty([lin.weight], 0.25)).backward()
    assert torch.equal(original.grad, expected)


def test_l1_sign_of_zero_is_zero_and_a_missing_gradient_is_created():
    lin = annealed(k=2, weight=[[0.0, -0.5, 0.25], [1.0, -2.0, 0.125]])
    penalty = L1Penalty(nn.Sequential(lin), 0.5)
    penalty.on_after_backward(trainer=None)  # no backward ran: grad is None
    assert torch.equal(
        lin.parametrizations.weight.original.grad,
        torch.tensor([[0.0, -0.5, 0.5], [0.5, -0.5, 0.5]], dtype=torch.float64),
    )


def test_l1_errors():
    lin = annealed(k=2)
    for bad in (-1e-3, float("inf"), float("nan"), True, "1e-5"):
        with pytest.raises(ValueError, match="L1 coefficient"):
            L1Penalty(lin, bad)
    with pytest.raises(ValueError, match="not sparse tensors"):
        L1Penalty(lin, 1e-5, targets=("bias",))
    with pytest.raises(ValueError, match="apply_anneal"):
        L1Penalty(layer(), 1e-5)
    with pytest.raises(ValueError, match="at least one"):
        l1_penalty([], 1.0)


# ------------------------------------------------------------- in a training run


class TinyNet(nn.Module):
    """Flatten -> 192 -> 16 (the annealed stage) -> ReLU -> 4 classes, on the 8x8 separable images."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Linear(192, 16)
        self.graph = nn.Linear(16, 16, bias=False)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(F.relu(self.graph(F.relu(self.stem(x.flatten(1))))))


ALLOWED = torch.ones(16, 16, dtype=torch.bool).tril(-1)  # 120 feed-forward entries
K = 30


class Spy(Callback):
    """Records (budget, mask) of the annealed stage after each optimizer step."""

    def __init__(self, model) -> None:
        self.p = model.graph.parametrizations.weight[0]
        self.seen: list[tuple[int, torch.Tensor]] = []

    def on_batch_end(self, trainer, loss) -> None:
        self.seen.append((int(self.p.selector.budget), self.p.mask.clone()))


def anneal_trainer(run_dir, epochs=3, end=2.0, update_every=2, spy=False):
    model = TinyNet()
    attached = attach_l1_anneal(
        model,
        k={"graph.weight": K},
        schedule=AnnealSchedule(end=end),
        allowed=ALLOWED,
        targets=("graph.weight",),
        l1=1e-3,
        update_every=update_every,
    )
    callbacks = [*attached.callbacks, Spy(model)] if spy else attached.callbacks
    train, test = separable_loaders(4)  # 6 steps per epoch
    hparams = TrainingHparams(epochs=epochs, lr=0.05, weight_decay=1e-4, schedule="cosine")
    return Trainer(model, hparams, train, test, run_dir=run_dir, callbacks=callbacks, progress=False)


def test_a_run_anneals_to_exactly_k_with_nested_masks_and_no_gradient_to_removed_edges():
    trainer = anneal_trainer(None, spy=True)
    history = trainer.fit()
    spy = trainer.callbacks[-1]
    schedule = AnnealSchedule(end=2.0)
    previous = ALLOWED
    for step, (budget, mask) in enumerate(spy.seen):
        due = step // 2 * 2  # the last update, at or before this step
        assert budget == schedule.edges_at(due / 6, 120, K)
        assert int(mask.sum()) == budget  # exactly k_t after every update
        assert not bool((mask & ~previous).any())  # nested while the weights train
        previous = mask
    assert spy.seen[0][0] == 120 and spy.seen[-1][0] == K
    assert [r["anneal_edges"] for r in history.records][-1] == K
    assert history.final["anneal_budget"] == K and history.final["l1_penalty"] > 0
    # removed edges received no gradient in the last step (the masked route and the L1 term both skip them)
    original = trainer.model.graph.parametrizations.weight.original
    assert bool((original.grad[~previous] == 0).all()) and bool((original.grad[previous] != 0).any())


def test_a_resumed_anneal_run_matches_an_uninterrupted_one(tmp_path):
    full = anneal_trainer(tmp_path / "full")
    full.fit()
    part = anneal_trainer(tmp_path / "part")
    part._train_one_epoch()  # killed after the first epoch, mid-anneal
    part.save_checkpoint(part.run_dir / Trainer.CHECKPOINT_FILE)
    resumed = anneal_trainer(tmp_path / "part")
    resumed.fit(resume=True)
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    strip = lambda rs: [
        {k: v for k, v in r.items() if k not in ("train_seconds", "data_seconds", "images_per_second")} for r in rs
    ]
    assert strip(resumed.history.records) == strip(full.history.records)


def test_an_anneal_ending_after_the_last_update_is_refused_and_bad_input_changes_nothing():
    trainer = anneal_trainer(None, epochs=2, end=2.0, update_every=4)  # last update at step 8 = epoch 1.33
    with pytest.raises(ValueError, match="never be reached"):
        trainer.fit()
    model = TinyNet()
    with pytest.raises(ValueError, match="update_every"):
        attach_l1_anneal(model, k=K, schedule=AnnealSchedule(end=1.0), targets=("graph.weight",), update_every=0)
    with pytest.raises(ValueError, match="L1 coefficient"):
        attach_l1_anneal(model, k=K, schedule=AnnealSchedule(end=1.0), targets=("graph.weight",), l1=-1.0)
    with pytest.raises(TypeError, match="AnnealSchedule"):
        attach_l1_anneal(model, k=K, schedule=2.0, targets=("graph.weight",))
    with pytest.raises(ValueError, match="k must be in"):
        apply_anneal(model, k=200, allowed=ALLOWED, targets=("graph.weight",))
    assert not is_sparse(model.graph)
    with pytest.raises(ValueError, match="apply_anneal"):
        EdgeAnnealing(model, AnnealSchedule(end=1.0))
    apply_anneal(model, k=K, allowed=ALLOWED, targets=("graph.weight",))
    callback = EdgeAnnealing(model, AnnealSchedule(end=1.0), update_every=5)
    with pytest.raises(ValueError, match="update_every=5"):
        EdgeAnnealing(model, AnnealSchedule(end=1.0), update_every=6).load_state_dict(callback.state_dict())
