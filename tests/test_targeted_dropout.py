"""Targeted dropout (DNW Section 3.3 and Appendix B; Gomez et al. 2019) as a selector of the one mask mechanism.

Hand-made signed, asymmetric weights with distinct magnitudes fix the candidate sets exactly (per
stage and per row); the dropout rate is checked against binomial tolerances; the generator's state
travels in the state_dict, so a resumed Trainer run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from synthetic import separable_loaders

from rewire.methods.targeted_dropout import TargetedDropout, apply_targeted_dropout, row_budgets
from rewire.sparse.masks import current_mask, is_sparse, sparsify, topk_mask
from rewire.train.trainer import Trainer, TrainingHparams

pytestmark = pytest.mark.usefixtures("one_thread")

# |w| ranks, largest first: .95 (3,4) .90 (1,0) .85 (3,3) .80 (0,1) .75 (3,1) .70 (1,3) .65 (2,3) .60 (0,4)
# .55 (3,0) .50 (2,2) .45 (2,4) .40 (1,2) .35 (2,1) .30 (0,2) .25 (2,0) .20 (1,1) .15 (1,4) .12 (3,2) .10 (0,0) .05 (0,3)
WEIGHT = [
    [0.10, -0.80, 0.30, -0.05, 0.60],
    [-0.90, 0.20, -0.40, 0.70, -0.15],
    [0.25, -0.35, 0.50, -0.65, 0.45],
    [-0.55, 0.75, -0.12, 0.85, -0.95],
]
K = 8
# unconstrained, k = 8: the 8 largest |w| of the whole stage
KEPT_STAGE = [
    [0, 1, 0, 0, 1],
    [1, 0, 0, 1, 0],
    [0, 0, 0, 1, 0],
    [0, 1, 0, 1, 1],
]
# regular, k = 8 over 4 rows of 5 allowed entries: 2 per row, the 2 largest |w| of each row
KEPT_ROWS = [
    [0, 1, 0, 0, 1],
    [1, 0, 0, 1, 0],
    [0, 0, 1, 1, 0],
    [0, 0, 0, 1, 1],
]
# ``allowed`` excludes three of the largest entries, (1,0), (2,3), (3,4): n_allowed = 17
ALLOWED = [
    [1, 1, 1, 1, 1],
    [0, 1, 1, 1, 1],
    [1, 1, 1, 0, 1],
    [1, 1, 1, 1, 0],
]
K_ALLOWED = 6
# unconstrained, k = 6 among the allowed: .85 (3,3) .80 (0,1) .75 (3,1) .70 (1,3) .60 (0,4) .55 (3,0)
KEPT_STAGE_ALLOWED = [
    [0, 1, 0, 0, 1],
    [0, 0, 0, 1, 0],
    [0, 0, 0, 0, 0],
    [1, 1, 0, 1, 0],
]
# regular, k = 6: quotas 6*(5,4,4,4)/17 = 1.76, 1.41, 1.41, 1.41 -> floors (1,1,1,1), the two places left go to
# row 0 (remainder 13/17) and row 1 (7/17, the lowest index of a three-way tie): budgets (2, 2, 1, 1)
KEPT_ROWS_ALLOWED = [
    [0, 1, 0, 0, 1],
    [0, 0, 1, 1, 0],
    [0, 0, 1, 0, 0],
    [0, 0, 0, 1, 0],
]


def as_bool(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def layer(weight=WEIGHT) -> nn.Linear:
    lin = nn.Linear(5, 4, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(weight, dtype=torch.float64))
    return lin


def td_layer(k=K, allowed=None, *, rho=0.75, variant="unconstrained", seed=0) -> nn.Linear:
    lin = layer()
    allowed = None if allowed is None else as_bool(allowed)
    sparsify(lin, selector=TargetedDropout(k, allowed, rho=rho, variant=variant, seed=seed), route="masked")
    return lin


def dense(lin: nn.Linear) -> torch.Tensor:
    return lin.parametrizations.weight.original


def selector(lin: nn.Linear) -> TargetedDropout:
    return lin.parametrizations.weight[0].selector


def training_masks(lin: nn.Linear, draws: int) -> torch.Tensor:
    """The real entries of ``draws`` training forward passes (the hand weights have no zero), ``[draws, 4, 5]``."""
    lin.train()
    with torch.no_grad():
        return torch.stack([lin.weight != 0 for _ in range(draws)])


# -------------------------------------------------------------- candidate sets


@pytest.mark.parametrize(
    ("variant", "k", "allowed", "kept"),
    [
        ("unconstrained", K, None, KEPT_STAGE),
        ("regular", K, None, KEPT_ROWS),
        ("unconstrained", K_ALLOWED, ALLOWED, KEPT_STAGE_ALLOWED),
        ("regular", K_ALLOWED, ALLOWED, KEPT_ROWS_ALLOWED),
    ],
)
def test_candidates_are_exactly_the_bottom_gamma_per_stage_or_per_row(variant, k, allowed, kept):
    lin = td_layer(k, allowed, variant=variant)
    chosen = selector(lin)
    allowed_mask = torch.ones(4, 5, dtype=torch.bool) if allowed is None else as_bool(allowed)
    assert torch.equal(chosen.select(dense(lin)), as_bool(kept))
    assert torch.equal(chosen.candidates(dense(lin)), allowed_mask & ~as_bool(kept))
    assert chosen.gamma == pytest.approx(1 - k / int(allowed_mask.sum()))
    lin.eval()
    w_eff = lin.weight.detach()
    # evaluation: every candidate dropped, exactly k real edges, and the weights keep their signs
    assert torch.equal(w_eff, torch.where(as_bool(kept), torch.tensor(WEIGHT, dtype=torch.float64), 0.0))
    assert int((w_eff != 0).sum()) == k
    assert torch.equal(current_mask(lin), as_bool(kept))


def test_unconstrained_candidates_match_the_global_top_k_on_a_larger_random_stage():
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(30, 40, generator=g, dtype=torch.float64)
    allowed = torch.rand(30, 40, generator=g) < 0.7
    lin = nn.Linear(40, 30, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(weight)
    sparsify(lin, selector=TargetedDropout(250, allowed, rho=0.5), route="masked")
    kept = selector(lin).select(dense(lin))
    assert torch.equal(kept, topk_mask(weight.abs(), 250, allowed))
    assert not bool((kept & ~allowed).any())


def test_regular_budgets_keep_exactly_k_per_stage_and_the_row_shares_on_a_dag():
    n = 12
    weight = torch.randn(n, n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    allowed = torch.ones(n, n, dtype=torch.bool).tril(-1)  # node 0 receives nothing
    lin = nn.Linear(n, n, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(weight)
    sparsify(lin, selector=TargetedDropout(23, allowed, rho=0.9, variant="regular"), route="masked")
    kept = selector(lin).select(dense(lin))
    budgets = row_budgets(allowed.sum(1), 23)
    assert int(kept.sum()) == 23 and not bool((kept & ~allowed).any())
    assert torch.equal(kept.sum(1), budgets)
    for row in range(n):  # each row keeps its largest allowed |w|
        scores = torch.where(allowed[row], weight[row].abs(), -1.0)
        expected = torch.zeros(n, dtype=torch.bool)
        expected[scores.argsort(descending=True)[: int(budgets[row])]] = True
        assert torch.equal(kept[row], expected)


def test_row_budgets_floor_plus_largest_remainders():
    # 6-node DAG rows hold 0..5 allowed entries (n = 15); k = 7: quotas 0, .47, .93, 1.4, 1.87, 2.33
    # floors 0,0,0,1,1,2 (sum 4); the 3 places left go to remainders 14/15 (row 2), 13/15 (row 4), 7/15 (row 1)
    assert row_budgets(torch.arange(6), 7).tolist() == [0, 1, 1, 1, 2, 2]
    assert row_budgets(torch.tensor([2, 2, 2]), 4).tolist() == [2, 1, 1]  # tied remainders: lower row first
    assert row_budgets(torch.tensor([5, 5, 5, 5]), 8).tolist() == [2, 2, 2, 2]
    assert row_budgets(torch.tensor([3, 0, 4]), 0).tolist() == [0, 0, 0]
    assert row_budgets(torch.tensor([3, 0, 4]), 7).tolist() == [3, 0, 4]
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        counts = torch.randint(0, 9, (7,), generator=g)
        k = int(torch.randint(0, int(counts.sum()) + 1, (), generator=g))
        budgets = row_budgets(counts, k)
        assert int(budgets.sum()) == k and bool((budgets <= counts).all())
        quotas = counts.double() * k / max(int(counts.sum()), 1)
        assert bool(((budgets - quotas).abs() < 1).all())  # within one edge of the row's share
    with pytest.raises(ValueError, match="k must be an int in"):
        row_budgets(torch.tensor([1, 2]), 4)
    with pytest.raises(ValueError, match="integer tensor"):
        row_budgets(torch.tensor([1.0, 2.0]), 1)
    with pytest.raises(ValueError, match="non-negative"):
        row_budgets(torch.tensor([-1, 2]), 1)


def test_ties_and_nan_never_break_the_exact_counts():
    tied = [[0.5, -0.5, 0.5, -0.5], [0.5, 0.5, -0.5, float("nan")]]
    for variant, expected in (
        ("unconstrained", [[1, 1, 1, 0], [0, 0, 0, 0]]),  # the three lowest flat indices of eight ties
        ("regular", [[1, 1, 0, 0], [1, 0, 0, 0]]),  # budgets (2, 1): lowest columns first; NaN ranks last
    ):
        lin = nn.Linear(4, 2, bias=False).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(tied, dtype=torch.float64))
        sparsify(lin, selector=TargetedDropout(3, rho=0.5, variant=variant), route="masked")
        assert torch.equal(selector(lin).select(dense(lin)), as_bool(expected)), variant


# ------------------------------------------------------------ training vs eval


def test_selector_follows_model_train_and_eval():
    model = nn.Sequential(td_layer())
    chosen = selector(model[0])
    model.eval()
    assert not chosen.training
    assert torch.equal(model[0].weight != 0, as_bool(KEPT_STAGE))
    model.train()
    assert chosen.training
    # with rho = 0.75 and 12 candidates, all 12 dropped in 20 draws has probability 0.75^240: never
    masks = training_masks(model[0], 20)
    assert bool((masks & ~as_bool(KEPT_STAGE)).any())


@pytest.mark.parametrize("variant", ["unconstrained", "regular"])
def test_training_drops_each_candidate_with_probability_rho_and_never_a_kept_edge(variant):
    rho, draws = 0.75, 2000
    lin = td_layer(rho=rho, variant=variant)
    kept = as_bool(KEPT_STAGE if variant == "unconstrained" else KEPT_ROWS)
    masks = training_masks(lin, draws)
    assert bool(masks[:, kept].all())  # non-candidates: drop rate exactly 0
    drop_rate = 1.0 - masks[:, ~kept].double().mean(0)  # 12 candidates
    # per entry: Binomial(2000, 0.75)/2000 has sd sqrt(.75*.25/2000) = 0.0097; 5 sd = 0.048
    assert bool(((drop_rate - rho).abs() < 5 * math.sqrt(rho * (1 - rho) / draws)).all())
    # pooled over the 12 candidates: sd 0.0028; 5 sd = 0.014
    assert abs(float(drop_rate.mean()) - rho) < 5 * math.sqrt(rho * (1 - rho) / (12 * draws))
    # draws are independent across entries: pairwise joint drop rate ~ rho^2 (sd 0.0097 per pair, 5 sd)
    dropped = ~masks[:, ~kept]
    joint = (dropped[:, 0] & dropped[:, 1]).double().mean()
    assert abs(float(joint) - rho**2) < 5 * math.sqrt(rho**2 * (1 - rho**2) / draws)


def test_rho_gamma_zero_and_one():
    lin = td_layer(rho="gamma")
    chosen = selector(lin)
    assert chosen.rho == chosen.gamma == pytest.approx(1 - K / 20)  # 0.6
    drop_rate = 1.0 - training_masks(lin, 1000)[:, ~as_bool(KEPT_STAGE)].double().mean()
    assert abs(float(drop_rate) - 0.6) < 5 * math.sqrt(0.6 * 0.4 / 12_000)
    assert "rho=gamma=0.6" in repr(chosen)
    lin = td_layer(K_ALLOWED, ALLOWED, rho=0.0)  # nothing dropped in training: every allowed entry, none outside
    assert bool((training_masks(lin, 5) == as_bool(ALLOWED)).all())
    lin = td_layer(rho=1.0)  # every candidate dropped in training too: training = evaluation
    assert bool((training_masks(lin, 5) == as_bool(KEPT_STAGE)).all())


def test_allowed_entries_only_in_training_too():
    lin = td_layer(K_ALLOWED, ALLOWED, rho=0.3)
    masks = training_masks(lin, 300)
    assert not bool((masks & ~as_bool(ALLOWED)).any())
    assert bool(masks[:, as_bool(KEPT_STAGE_ALLOWED)].all())


def test_signs_are_kept_in_training_and_evaluation():
    """The authors' code returns the masked |W|: this must differ from it wherever a negative weight is real."""
    lin = td_layer(rho=0.5)
    w = torch.tensor(WEIGHT, dtype=torch.float64)
    for mode in (True, False):
        lin.train(mode)
        with torch.no_grad():
            w_eff = lin.weight.clone()
        real = w_eff != 0
        assert torch.equal(w_eff, torch.where(real, w, 0.0))
        assert bool((w_eff[real & (w < 0)] < 0).all()) and bool((real & (w < 0)).any())
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5, 3.0]], dtype=torch.float64)
    expected = x @ torch.where(as_bool(KEPT_STAGE), w, 0.0).t()  # evaluation: the kept set, signed
    assert torch.allclose(lin(x), expected)
    assert not torch.allclose(lin(x), x @ torch.where(as_bool(KEPT_STAGE), w.abs(), 0.0).t())


def test_dropped_entries_get_zero_gradient_and_the_others_their_own():
    lin = td_layer(rho=0.5)
    lin.train()
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5, 3.0], [0.25, -2.0, 1.5, 1.0, -0.5]], dtype=torch.float64)
    c = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 0.5, 2.0, -0.25]], dtype=torch.float64)
    w_eff = lin.weight  # one read: one draw
    real = (w_eff != 0).detach()
    assert bool((real & ~as_bool(KEPT_STAGE)).any()) and bool((~real).any())  # some candidates survive, some drop
    (F.linear(x, w_eff) * c).sum().backward()
    reference = c.t() @ x  # dL/dW_eff[v, u] = sum_b c[b, v] x[b, u]
    assert torch.allclose(dense(lin).grad, torch.where(real, reference, 0.0))
    assert bool((dense(lin).grad[~real] == 0).all())


# ------------------------------------------------------- seeds and resume


def test_draws_are_deterministic_with_the_seed_and_differ_across_seeds():
    a, b, c = td_layer(seed=4), td_layer(seed=4), td_layer(seed=5)
    masks_a, masks_b, masks_c = (training_masks(m, 30) for m in (a, b, c))
    assert torch.equal(masks_a, masks_b)
    assert not torch.equal(masks_a, masks_c)
    # building the parametrization, evaluation and current_mask never draw: the stream is unchanged by them
    d = td_layer(seed=4)
    d.eval()
    _ = d.weight
    current_mask(d, recompute=True)
    assert torch.equal(training_masks(d, 30), masks_a)


def test_generator_state_travels_in_the_state_dict_through_a_weights_only_load():
    original = td_layer(seed=7)
    training_masks(original, 13)  # advance the stream
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = td_layer(seed=7)
    resumed.load_state_dict(state)
    assert torch.equal(training_masks(resumed, 20), training_masks(original, 20))
    fresh = td_layer(seed=7)
    fresh.load_state_dict(td_layer(seed=7).state_dict())  # an untouched generator restarts from the seed
    assert torch.equal(training_masks(fresh, 5), training_masks(td_layer(seed=7), 5))
    with pytest.raises(ValueError, match="seed 7"):
        td_layer(seed=8).load_state_dict(state)


class TinyNet(nn.Module):
    """Flatten -> 192 -> 16 (the targeted-dropout stage) -> ReLU -> 4 classes, on the 8x8 separable images."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Linear(192, 16)
        self.graph = nn.Linear(16, 16, bias=False)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(F.relu(self.graph(F.relu(self.stem(x.flatten(1))))))


def td_trainer(run_dir, epochs=2):
    model = TinyNet()
    allowed = torch.ones(16, 16, dtype=torch.bool).tril(-1)
    apply_targeted_dropout(model, k=40, rho=0.9, allowed=allowed, seed=3, targets=("graph.weight",))
    train, test = separable_loaders(4)
    hparams = TrainingHparams(epochs=epochs, lr=0.05, weight_decay=1e-4, schedule="cosine")
    return Trainer(model, hparams, train, test, run_dir=run_dir, progress=False)


def test_a_resumed_trainer_run_drops_the_same_entries_as_an_uninterrupted_one(tmp_path):
    full = td_trainer(tmp_path / "full")
    full.fit()
    part = td_trainer(tmp_path / "part")
    part._train_one_epoch()  # killed after the first epoch's checkpoint
    part.save_checkpoint(part.run_dir / Trainer.CHECKPOINT_FILE)
    resumed = td_trainer(tmp_path / "part")
    resumed.fit(resume=True)
    full_state, resumed_state = full.model.state_dict(), resumed.model.state_dict()
    assert list(full_state) == list(resumed_state)
    for name, a in full_state.items():
        b = resumed_state[name]
        if isinstance(a, dict):  # the selector's extra state: the generator after the last draw
            assert torch.equal(a["generator_state"], b["generator_state"]) and a["generator_state"].numel() > 0
        else:
            assert torch.equal(a, b), name
    assert full.history.final["test_loss"] == resumed.history.final["test_loss"]
    full.model.eval()
    assert int((full.model.graph.weight != 0).sum()) == 40  # evaluation: exactly k


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("rho", [-0.1, 1.5, float("nan"), True, "half", None])
def test_bad_rho_is_refused(rho):
    with pytest.raises(ValueError, match="rho must be a probability"):
        TargetedDropout(3, rho=rho)
    lin = layer()
    with pytest.raises(ValueError, match="rho must be a probability"):
        apply_targeted_dropout(lin, k=3, rho=rho)
    assert not is_sparse(lin)


def test_bad_k_variant_and_targets_are_refused_before_any_change():
    with pytest.raises(ValueError, match="k must be in"):
        td_layer(k=0)
    with pytest.raises(ValueError, match="k must be in"):
        td_layer(k=21)
    with pytest.raises(ValueError, match="k must be in"):
        td_layer(k=K_ALLOWED + 12, allowed=ALLOWED)  # 18 > 17 allowed entries
    with pytest.raises(ValueError, match="k must be an int"):
        TargetedDropout(2.5, rho=0.5)
    with pytest.raises(ValueError, match="variant must be one of"):
        TargetedDropout(3, rho=0.5, variant="per_node")
    with pytest.raises(ValueError, match="per row"):
        sparsify(nn.Linear(3, 2), "bias", selector=TargetedDropout(1, rho=0.5, variant="regular"))
    model = nn.Sequential(layer(), layer())
    with pytest.raises(ValueError, match="'1.weight'"):  # the second target's k is impossible
        apply_targeted_dropout(model, k={"0.weight": 5, "1.weight": 30}, rho=0.5, targets=("0.weight", "1.weight"))
    assert not is_sparse(model[0]) and not is_sparse(model[1])
    with pytest.raises(ValueError, match="needs exactly the targets"):
        apply_targeted_dropout(model, k={"0.weight": 5}, rho=0.5, targets=("0.weight", "1.weight"))
    with pytest.raises(ValueError, match="not a tensor"):
        apply_targeted_dropout(model, k=5, rho=0.5, targets=("2.weight",))
    with pytest.raises(ValueError, match="distinct"):
        apply_targeted_dropout(model, k=5, rho=0.5, targets=("0.weight", "0.weight"))
    assert not is_sparse(model[0]) and not is_sparse(model[1])


def test_apply_targeted_dropout_per_target_k_seeds_and_route():
    model = nn.Sequential(layer(), layer())
    parametrizations = apply_targeted_dropout(
        model,
        k={"0.weight": 5, "1.weight": 9},
        rho="gamma",
        variant="regular",
        seed=2,
        targets=("0.weight", "1.weight"),
    )
    first, second = (parametrizations[t] for t in ("0.weight", "1.weight"))
    assert first.route == second.route == "masked"
    assert (first.selector.k, second.selector.k) == (5, 9)
    assert first.selector.seed != second.selector.seed
    assert first.selector.rho == pytest.approx(1 - 5 / 20) and second.selector.rho == pytest.approx(1 - 9 / 20)
    model.eval()
    assert int((model[0].weight != 0).sum()) == 5 and int((model[1].weight != 0).sum()) == 9
    with pytest.raises(ValueError, match="already sparse"):
        apply_targeted_dropout(model, k=5, rho=0.5, targets=("0.weight",))
