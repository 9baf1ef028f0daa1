"""Guards for the paper recipes: each test pins one property of DNW / DPF / SM / the loader / evaluation
that a single plausible edit of the library would silently break (signed weights, the gradient route
of DPF, the rewind to initialisation, the mask-update phase, resume state, SM's redistribution,
evaluation mode, crop augmentation, per-layer sparsity). Every expected value is written or computed
by hand, independently of the code under test, on tiny synthetic problems with signed, asymmetric data.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from synthetic import tiny_dataset

from rewire import methods
from rewire.data import BatchLoader
from rewire.experiments.dpf_sweeps import procedures, runs
from rewire.experiments.dpf_sweeps.config import Recipe
from rewire.methods.dnw import apply_method
from rewire.methods.dpf import GRADUAL_METHODS, GradualPruning, SparsitySchedule
from rewire.methods.dynamic_sparse import SparseMomentum
from rewire.models import SmallConvNet
from rewire.sparse.groups import MaskGroup, PruningRule
from rewire.sparse.masks import TopKMagnitude, current_mask
from rewire.sparse.stats import layer_sparsities
from rewire.train.trainer import Callback, Trainer, TrainingHparams, build_optimizer, evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

NUM_CLASSES = 4


# ----------------------------------------------------------------------------- helpers


def global_magnitude_masks(weights, sparsity):
    """Independent reference of DPF's rule: keep the N - round(s N) largest |w| over all tensors together."""
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights])
    keep = flat.numel() - round(sparsity * flat.numel())
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[flat.topk(keep).indices] = True
    return [part.reshape(w.shape) for part, w in zip(chosen.split([w.numel() for w in weights]), weights)]


def conv_modules(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def synthetic_loaders(seed=0, augment=True):
    """48 images of 4 classes, batches of 8 (6 steps per epoch)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(12)
    images = (torch.randint(0, 200, (labels.numel(), 3, 8, 8), generator=g) + 10 * labels[:, None, None, None]).to(
        torch.uint8
    )
    mean, std = (0.5, 0.4, 0.6), (0.25, 0.2, 0.3)
    train = BatchLoader(
        images,
        labels,
        8,
        shuffle=True,
        augment=augment,
        mean=mean,
        std=std,
        order_seed=seed,
        augmentation_seed=seed + 1,
        drop_last=True,
    )
    test = BatchLoader(images, labels, 16, shuffle=False, augment=False, mean=mean, std=std)
    return train, test


def tiny_convnet(seed=0):
    torch.manual_seed(seed)
    return SmallConvNet(num_classes=NUM_CLASSES, width=4)


SWEEP_RECIPE = Recipe(epochs=2, model="small_convnet", batch_size=10, lottery_rounds=2)


def sweep_context(tmp_path, recipe=SWEEP_RECIPE):
    return runs.make_context(recipe, tiny_dataset(), torch.device("cpu"), tmp_path, progress=False)


# ------------------------------------------------------------- 1. DNW ranks by |w|, not by w


def test_topk_magnitude_ranks_signed_weights_by_their_absolute_value():
    w = torch.tensor([[-5.0, 1.0, -0.5], [3.0, -2.0, 0.1]])
    selector = TopKMagnitude(3)
    selector.bind(w)
    # |w| = 5, 1, 0.5, 3, 2, 0.1: the three largest are -5, 3 and -2 (the signed top-3 would be 3, 1, 0.1)
    assert selector.select(w).tolist() == [[True, False, False], [True, True, False]]
    allowed = torch.tensor([[False, True, True], [True, True, True]])  # -5 is not a candidate
    restricted = TopKMagnitude(2, allowed)
    restricted.bind(w)
    assert restricted.select(w).tolist() == [[False, False, False], [True, True, False]]


def test_dnw_forward_uses_the_largest_magnitude_edges_of_a_signed_layer():
    layer = nn.Linear(4, 2, bias=False).double()
    weight = torch.tensor([[-4.0, 0.5, 2.5, -0.25], [1.0, -3.0, -0.75, 0.3]], dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(weight)
    apply_method(layer, "dnw", k=3)
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 0.25, 2.0, -0.5]], dtype=torch.float64)
    # k = 3 largest |w|: -4 (0,0), -3 (1,1), 2.5 (0,2); every positive-only ranking would differ
    real = torch.tensor([[-4.0, 0.0, 2.5, 0.0], [0.0, -3.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(layer(x), x @ real.t())
    assert current_mask(layer).tolist() == [[True, False, True, False], [False, True, False, False]]


# --------------------------------------------------------- 2. DPF's gradient at the pruned model


def random_masks(weights, keep=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(w.shape, generator=g) < keep for w in weights]


def assert_dpf_gradient_reaches_pruned_weights(model, group, reference, x, y):
    """``model`` carries ``group`` (masks assigned); ``reference`` is the same network without sparsity.
    Every dense weight, pruned ones included, must receive dL/dw~ taken at the pruned model w~ = m * w."""
    masks = [m.clone() for m in group.masks()]
    dense = [w.detach().clone() for w in group.dense_weights()]
    leaves = []
    for conv, w, m in zip(conv_modules(reference), dense, masks):
        del conv.weight
        leaf = (w * m).requires_grad_(True)  # the pruned model's weights, as leaves
        conv.weight = leaf
        leaves.append(leaf)
    model.train()
    reference.train()
    F.cross_entropy(reference(x), y).backward()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    for w, m, leaf in zip(group.dense_weights(), masks, leaves):
        torch.testing.assert_close(w.grad, leaf.grad, rtol=1e-6, atol=1e-9)
        assert bool((w.grad[~m] != 0).any())  # feedback: pruned weights get the gradient too


def test_dpf_from_the_registry_feeds_the_gradient_at_the_pruned_model_to_every_weight():
    model = tiny_convnet().double()
    reference = copy.deepcopy(model)
    attached = methods.get("dpf").attach(model, schedule=SparsitySchedule(final=0.6, end=1.0), update_every=4)
    assert attached.group.route == "straight_through" == GRADUAL_METHODS["dpf"][1]
    (callback,) = attached.callbacks
    assert isinstance(callback, GradualPruning) and callback.update_every == 4 and not callback.zero_pruned
    callback.update(None, 1.0)  # the DPF mask at the final sparsity
    expected = global_magnitude_masks(attached.group.dense_weights(), 0.6)
    assert all(torch.equal(a, b) for a, b in zip(attached.group.masks(), expected))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 2, 3, 3])
    assert_dpf_gradient_reaches_pruned_weights(model, attached.group, reference, x, y)


def test_the_sweeps_dpf_phase_trains_with_the_straight_through_route(tmp_path, monkeypatch):
    captured = {}

    def fake_train(ctx, name, seed, config, model, group, hparams, callbacks=()):
        captured.update(model=model, group=group, hparams=hparams, callbacks=list(callbacks))
        return procedures.Phase(name, model, group, [{"epoch": 1}], list(callbacks), hparams)

    monkeypatch.setattr(procedures, "_train", fake_train)
    ctx = sweep_context(tmp_path)
    (phase,) = procedures.run_phases(ctx, "dpf", 0.5, 0)
    assert phase.group.route == "straight_through"
    assert [type(c) for c in phase.callbacks] == [GradualPruning]
    assert phase.callbacks[0].update_every == SWEEP_RECIPE.update_every == 16
    group = phase.group
    group.assign(random_masks(group.dense_weights(), keep=0.3, seed=1))
    reference = ctx.fresh_model(0)  # the same initialisation, never sparsified
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 16, 16, generator=g)
    y = torch.tensor([2, 0, 1, 2])
    assert_dpf_gradient_reaches_pruned_weights(phase.model, group, reference, x, y)


# ----------------------------------------------------- 3. lottery ticket and DPF rewind: back to init


class PhaseRecorder:
    """A stand-in for ``procedures._train``: records every phase's starting state, then 'trains' by a
    deterministic perturbation (so trained weights differ from the initial ones); a DPF phase ends with
    an asymmetric global magnitude mask of its trained weights, a fixed-mask phase keeps pruned weights zero."""

    def __init__(self):
        self.starts = {}
        self.final_masks = {}

    def __call__(self, ctx, name, seed, config, model, group, hparams, callbacks=()):
        start = {"state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        if group is not None:
            start["names"] = list(group.names)
            start["dense"] = [w.detach().clone() for w in group.dense_weights()]
            start["masks"] = [m.clone() for m in group.masks()]
        self.starts[name] = start
        g = torch.Generator().manual_seed(100 + len(self.starts))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g))
            for b in model.buffers():
                if b.is_floating_point():
                    b.mul_(1.5).add_(0.25)  # batch-norm running statistics move too
            if group is not None and any(isinstance(c, GradualPruning) for c in callbacks):
                group.assign(global_magnitude_masks(group.dense_weights(), 0.5))
            elif group is not None:
                group.zero_pruned()
        if group is not None:
            self.final_masks[name] = [m.clone() for m in group.masks()]
        return procedures.Phase(name, model, group, [{"epoch": 1}], list(callbacks), hparams)


def assert_starts_from_init(start, init, masks):
    """The phase started from the initial weights under ``masks``: w = w_0 * m, everything else w_0."""
    assert len(start["names"]) == len(masks) == 6
    for name, dense, held, mask in zip(start["names"], start["dense"], start["masks"], masks):
        assert torch.equal(held, mask), name
        assert torch.equal(dense, init[name] * mask), name
        assert bool(mask.any()) and not bool(mask.all())
    plain = {k: v for k, v in start["state"].items() if ".parametrizations." not in k}
    assert set(plain) == set(init) - set(start["names"])
    for key, value in plain.items():
        assert torch.equal(value, init[key]), key


def test_lottery_rounds_rewind_to_the_initial_weights(tmp_path, monkeypatch):
    recorder = PhaseRecorder()
    monkeypatch.setattr(procedures, "_train", recorder)
    ctx = sweep_context(tmp_path)
    init = {k: v.clone() for k, v in ctx.fresh_model(0).state_dict().items()}
    phases = procedures.run_phases(ctx, "lottery", 0.75, 0)
    assert [p.name for p in phases] == ["dense", "lottery_round1", "lottery_round2"]
    assert set(recorder.starts["dense"]["state"]) == set(init)
    assert all(torch.equal(v, init[k]) for k, v in recorder.starts["dense"]["state"].items())

    conv_names = recorder.starts["lottery_round1"]["names"]
    trained_dense = [phases[0].model.get_submodule(n.rpartition(".")[0]).weight.detach() for n in conv_names]
    assert not torch.equal(trained_dense[0], init[conv_names[0]])  # training moved the weights
    # round 1 of 2 prunes to 1 - 0.25 ** (1/2) = 0.5 by the trained dense magnitudes ...
    round1 = global_magnitude_masks(trained_dense, 0.5)
    assert_starts_from_init(recorder.starts["lottery_round1"], init, round1)
    # ... round 2 to 0.75 by the magnitudes of round 1's trained pruned model, again from w_0
    trained_round1 = [w.detach() * m for w, m in zip(phases[1].group.dense_weights(), phases[1].group.masks())]
    round2 = global_magnitude_masks(trained_round1, 0.75)
    assert all(not bool((b & ~a).any()) for a, b in zip(round1, round2))  # survivors of survivors
    assert_starts_from_init(recorder.starts["lottery_round2"], init, round2)


def test_dpf_rewind_retrains_dpfs_final_mask_from_the_initial_weights(tmp_path, monkeypatch):
    recorder = PhaseRecorder()
    monkeypatch.setattr(procedures, "_train", recorder)
    ctx = sweep_context(tmp_path)
    init = {k: v.clone() for k, v in ctx.fresh_model(0).state_dict().items()}
    phases = procedures.run_phases(ctx, "dpf_rewind", 0.5, 0)
    assert [p.name for p in phases] == ["dpf", "dpf_rewind"]
    dpf_start = recorder.starts["dpf"]  # DPF itself starts dense from w_0
    assert all(bool(m.all()) for m in dpf_start["masks"])
    assert all(torch.equal(d, init[n]) for n, d in zip(dpf_start["names"], dpf_start["dense"]))
    assert_starts_from_init(recorder.starts["dpf_rewind"], init, recorder.final_masks["dpf"])
    assert phases[1].group.route == "masked"


def test_structured_rewind_retrains_structured_dpfs_final_mask_from_init_for_rewind_epochs(tmp_path, monkeypatch):
    recorder = PhaseRecorder()
    monkeypatch.setattr(procedures, "_train", recorder)
    recipe = dataclasses.replace(SWEEP_RECIPE, rewind_epochs=SWEEP_RECIPE.epochs + 3)
    ctx = sweep_context(tmp_path, recipe)
    init = {k: v.clone() for k, v in ctx.fresh_model(0).state_dict().items()}
    phases = procedures.run_phases(ctx, "dpf_structured_rewind", 0.5, 0)
    assert [p.name for p in phases] == ["dpf_structured", "dpf_structured_rewind"]
    assert_starts_from_init(recorder.starts["dpf_structured_rewind"], init, recorder.final_masks["dpf_structured"])
    # Figure 8's separate retraining budget: the rewind phase trains rewind_epochs, its DPF run the recipe's epochs
    assert phases[0].hparams.epochs == SWEEP_RECIPE.epochs and phases[1].hparams.epochs == SWEEP_RECIPE.epochs + 3
    # ... and that DPF run is the same run (same settings) as without a rewind budget, so it is trained once
    assert ctx.base_config(0) == sweep_context(tmp_path).base_config(0)


# ------------------------------------------------------------- 4. the recipe and the mask phase


def test_dpf_recipe_is_sgd_with_nesterov_momentum_and_the_papers_constants():
    hparams = runs.recipe(Recipe(epochs=8))
    assert hparams.optimizer == "sgd" and hparams.nesterov is True
    assert (hparams.lr, hparams.momentum, hparams.weight_decay) == (0.2, 0.9, 1e-4)
    assert (hparams.schedule, hparams.milestones, hparams.gamma) == ("multistep", (4.0, 6.0), 0.1)
    assert runs.recipe(Recipe(epochs=8), epochs=2, lr=0.01, schedule="cosine").nesterov is True  # fine-tuning too
    optimizer = build_optimizer(tiny_convnet(), hparams)
    assert all(group["nesterov"] is True and group["momentum"] == 0.9 for group in optimizer.param_groups)


def test_the_sweeps_phases_use_the_nesterov_recipe(tmp_path, monkeypatch):
    recorder = PhaseRecorder()
    monkeypatch.setattr(procedures, "_train", recorder)
    phases = procedures.run_phases(sweep_context(tmp_path), "dpf_ft", 0.5, 0)
    assert [p.name for p in phases] == ["dpf", "dpf_ft"]
    assert all(p.hparams.nesterov is True and p.hparams.momentum == 0.9 for p in phases)


class MaskTimeline(Callback):
    """Placed after GradualPruning: the global step, the masks and the dense weights the forward pass sees."""

    def __init__(self, group):
        self.group = group
        self.steps = []

    def on_batch_start(self, trainer, inputs, targets):
        self.steps.append(
            (
                trainer.global_step,
                [m.clone() for m in self.group.masks()],
                [w.detach().clone() for w in self.group.dense_weights()],
            )
        )


def test_dpf_masks_are_recomputed_exactly_before_steps_0_p_2p():
    model = tiny_convnet()
    group = MaskGroup(model)
    schedule = SparsitySchedule(final=0.6, end=1.0, initial=0.3, frequency=0.0)
    pruning = GradualPruning(group, PruningRule(), schedule, update_every=4)
    calls = []
    update = pruning.update
    pruning.update = lambda trainer, epoch_time: (
        calls.append((trainer.global_step, epoch_time)) or update(trainer, epoch_time)
    )
    timeline = MaskTimeline(group)
    train, test = synthetic_loaders()
    hparams = TrainingHparams(epochs=2, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="constant")
    history = Trainer(model, hparams, train, test, callbacks=[pruning, timeline], progress=False).fit()

    # 6 steps per epoch, p = 4: updates before steps 0, 4, 8 at t = 0, 4/6, 8/6 epochs
    assert calls == [(0, 0.0), (4, 4 / 6), (8, 8 / 6)]
    assert [r["mask_updates"] for r in history.records] == [2, 1]
    previous = [torch.ones_like(m) for m in group.masks()]  # dense before the first update
    changed = []
    for step, masks, dense in timeline.steps:
        if not all(torch.equal(a, b) for a, b in zip(previous, masks)):
            changed.append(step)
        previous = masks
        if step % 4 == 0:  # the mask the step's forward pass uses: the rule on this step's dense weights
            t = step / 6
            target = 0.6 + (0.3 - 0.6) * (1 - min(t, 1.0)) ** 3
            expected = global_magnitude_masks(dense, target)
            assert all(torch.equal(a, b) for a, b in zip(masks, expected)), step
    assert changed == [0, 4, 8]
    assert [s for s, _, _ in timeline.steps] == list(range(12))


# ------------------------------------------------------------- 5. DPF resume keeps Figure 4's state


class KillAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, loss):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def dpf_trainer(run_dir, kill_at=-1):
    model = tiny_convnet()
    group = MaskGroup(model)
    pruning = GradualPruning(group, PruningRule(), SparsitySchedule(final=0.8, end=2.0, frequency=0.0), update_every=2)
    train, test = synthetic_loaders()
    hparams = TrainingHparams(
        epochs=3, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="multistep", milestones=(1.0, 2.0)
    )
    trainer = Trainer(
        model, hparams, train, test, run_dir=run_dir, callbacks=[pruning, KillAt(kill_at)], progress=False
    )
    return trainer, pruning


def test_a_resumed_dpf_run_has_the_mask_convergence_of_an_uninterrupted_one(tmp_path):
    whole, whole_pruning = dpf_trainer(tmp_path / "whole")
    whole.fit()
    killed, _ = dpf_trainer(tmp_path / "killed", kill_at=9)  # checkpoint after epoch 1 (step 6), killed at 9
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    resumed, resumed_pruning = dpf_trainer(tmp_path / "killed")
    resumed.fit(resume=True)

    curve = whole_pruning.mask_convergence(3)
    assert resumed_pruning.mask_convergence(3) == curve
    for a, b in zip(whole_pruning.last_flip_epoch, resumed_pruning.last_flip_epoch):
        assert torch.equal(a, b)
    flat = torch.cat([t.reshape(-1) for t in whole_pruning.last_flip_epoch])
    assert bool((flat == 1).any())  # some entries last flipped in the epoch before the checkpoint
    assert curve[0] > curve[1] > 0.0

    state = whole_pruning.state_dict()
    fresh = GradualPruning(
        MaskGroup(tiny_convnet()), PruningRule(), SparsitySchedule(final=0.8, end=2.0, frequency=0.0), update_every=2
    )
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.last_flip_epoch, whole_pruning.last_flip_epoch))
    assert fresh.mask_convergence(3) == curve


# ------------------------------------------------------------- 6. Sparse Momentum, by hand


class TwoConvs(nn.Module):
    """conv a (1 -> 2, 2x2) -> tanh -> conv b (2 -> 1, 2x2): 8 weights each, runnable on 3x3 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 2, bias=False)
        self.b = nn.Conv2d(2, 1, 2, bias=False)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))).flatten()


def two_conv_group(kept_a, kept_b, values_a, values_b):
    model = TwoConvs().double()
    group = MaskGroup(model, route="masked")
    masks = []
    for weight, kept, values in zip(group.dense_weights(), (kept_a, kept_b), (values_a, values_b)):
        mask = torch.zeros(8, dtype=torch.bool)
        mask[list(kept)] = True
        with torch.no_grad():
            weight.copy_(torch.tensor(values, dtype=weight.dtype).reshape(weight.shape))
        masks.append(mask.reshape(weight.shape))
    group.assign(masks)
    return model, group


def test_sm_redistributes_by_the_mean_momentum_of_kept_weights_only():
    # A keeps 2 of 8 entries, B keeps 6 of 8: averaging over all 8 entries would weigh them 1 : 1.5
    _, group = two_conv_group([0, 1], range(6), [0.5, -3.0, 0, 0, 0, 0, 0, 0], [1.0, -2.0, 0.1, 4.0, -0.3, 6.0, 0, 0])
    wa, wb = group.dense_weights()
    optimizer = torch.optim.SGD(group.dense_weights(), lr=0.1, momentum=0.9)
    optimizer.state[wa]["momentum_buffer"] = torch.tensor([4.0, -4, 0, 0, 0, 0, 0, 0]).double().reshape(wa.shape)
    optimizer.state[wb]["momentum_buffer"] = torch.tensor([2.0, -2, 2, -2, 2, -2, 0, 0]).double().reshape(wb.shape)
    sm = SparseMomentum(group, 0.5)
    sm.started = True
    sm.dense_momentum[0].copy_(torch.tensor([0.0, 0, 0.2, -9, 1, -5, 0.3, 7]).reshape(wa.shape))
    sm.dense_momentum[1].copy_(torch.tensor([0.0, 0, -4, 0, 0.5, 0, 3, -2]).reshape(wb.shape))

    # kept means: A 4, B 2 -> c = (2/3, 1/3)
    assert sm.momentum_contributions(optimizer) == pytest.approx([2 / 3, 1 / 3], abs=1e-12)
    # p = 0.5: A drops round(1) = 1 (|0.5|), B drops round(3) = 3 (|0.1|, |-0.3|, |1|); R = 4
    # regrowth c * R = (2.67, 1.33) -> largest remainders (3, 1)
    a, b = (m.reshape(-1) for m in sm.update(optimizer, 0.5))
    assert a.nonzero().squeeze(1).tolist() == [1, 3, 5, 7]  # A regrows |m| = 9, 7, 5
    assert b.nonzero().squeeze(1).tolist() == [1, 2, 3, 5]  # B regrows |m| = 4 (its entry 2, pruned just now)
    assert [int(m.sum()) for m in group.masks()] == [4, 4]
    assert wa.detach().reshape(-1).tolist() == [0, -3.0, 0, 0, 0, 0, 0, 0]
    assert wb.detach().reshape(-1).tolist() == [0, -2.0, 0, 4.0, 0, 6.0, 0, 0]


def dense_gradients(model, masks, x, c):
    """dL/dW_eff by hand: the effective weights m * w as leaves of a plain functional forward pass."""
    wa = (model.a.parametrizations.weight.original.detach() * masks[0]).requires_grad_(True)
    wb = (model.b.parametrizations.weight.original.detach() * masks[1]).requires_grad_(True)
    out = F.conv2d(torch.tanh(F.conv2d(x, wa)), wb).flatten()
    return torch.autograd.grad((out * c).sum(), [wa, wb])


@pytest.mark.parametrize("dampening", [0.0, 0.25])
def test_sm_dense_momentum_is_the_optimizers_decaying_average_of_dense_gradients(dampening):
    model, group = two_conv_group(
        [0, 3, 5],
        [1, 2, 6, 7],
        [0.7, -1.2, 0.4, 0.9, -0.3, 1.5, -0.8, 0.2],
        [-0.6, 1.1, -1.4, 0.5, 0.9, -0.2, 0.3, -1.0],
    )
    sm = SparseMomentum(group, 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=dampening)
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(3, 1, 3, 3, generator=g, dtype=torch.float64), torch.tensor([1.0, -2.0, 0.5])) for _ in "ab"
    ]
    masks = [m.clone() for m in group.masks()]
    expected = [torch.zeros(8, dtype=torch.float64).reshape(w.shape) for w in group.dense_weights()]
    for x, c in batches:
        sm.on_batch_start(None, x, c)
        optimizer.zero_grad()
        (model(x) * c).sum().backward()
        sm.accumulate_momentum(optimizer)
        grads = dense_gradients(model, masks, x, c)
        expected = [0.9 * e + (1 - dampening) * gr for e, gr in zip(expected, grads)]
    for ours, ref, mask in zip(sm.dense_momentum, expected, masks):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
        assert bool((ours[~mask] != 0).all())  # pruned positions see the dense gradient


# ------------------------------------------------------------- 7. evaluation uses running statistics


def test_evaluate_uses_batch_norm_running_statistics_and_restores_the_mode():
    model = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 4)).double()
    bn, linear = model
    f64 = {"dtype": torch.float64}
    rm, rv = torch.tensor([0.5, -1.0, 2.0], **f64), torch.tensor([4.0, 0.25, 1.0], **f64)
    gamma, beta = torch.tensor([1.5, -0.5, 2.0], **f64), torch.tensor([0.1, 0.2, -0.3], **f64)
    w = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 0.5, 2.0], [0.3, 1.2, -0.7], [-0.4, -0.9, 0.1]], **f64)
    b = torch.tensor([0.0, 0.3, -0.2, 0.1], **f64)
    with torch.no_grad():
        for target, value in ((bn.running_mean, rm), (bn.running_var, rv), (bn.weight, gamma), (bn.bias, beta)):
            target.copy_(value)
        linear.weight.copy_(w)
        linear.bias.copy_(b)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(5, 3, generator=g, **f64) * 3 + 1 for _ in range(2)]
    ys = [torch.tensor([0, 1, 2, 3, 1]), torch.tensor([3, 2, 2, 0, 0])]

    x, y = torch.cat(xs), torch.cat(ys)
    logits = ((x - rm) / torch.sqrt(rv + 1e-5) * gamma + beta) @ w.t() + b  # eval-mode batch norm, by hand
    expected_loss = F.cross_entropy(logits, y).item()
    expected_top1 = 100.0 * (logits.argmax(1) == y).sum().item() / 10

    stats = {k: v.clone() for k, v in bn.state_dict().items()}
    for mode in (True, False):
        model.train(mode)
        metrics = evaluate(model, list(zip(xs, ys)), topk=(1,))
        assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-12)
        assert metrics["top1"] == pytest.approx(expected_top1)
        assert model.training is mode and bn.training is mode and linear.training is mode
        for key, value in bn.state_dict().items():
            assert torch.equal(value, stats[key]), key  # running statistics untouched
    assert abs(metrics["loss"] - F.cross_entropy(model.train()(x), y).item()) > 1e-3  # batch stats would differ


# ------------------------------------------------------------- 8. crop augmentation


def reference_crop(image: torch.Tensor, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    """Per-image Python reference (as tests/test_data.py): zero-pad, cut the window, mirror."""
    c, h, w = image.shape
    padded = torch.zeros((c, h + 2 * padding, w + 2 * padding), dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    window = padded[:, top : top + h, left : left + w]
    return window.flip(-1) if flip else window


def test_default_crop_padding_is_4_and_offsets_reach_both_sides():
    assert inspect.signature(BatchLoader).parameters["crop_padding"].default == 4
    n, size = 24, 6
    # every pixel distinct and nonzero: a crop determines its offsets and flip uniquely
    images = torch.arange(1, 3 * size * size + 1, dtype=torch.uint8).repeat(n, 1).reshape(n, 3, size, size)
    images = images + torch.arange(n, dtype=torch.uint8)[:, None, None, None]  # also distinct per image
    labels = torch.arange(n)
    loader = BatchLoader(
        images, labels, 8, shuffle=True, augment=True, mean=(0, 0, 0), std=(1, 1, 1), augmentation_seed=3
    )
    assert loader.crop_padding == 4
    padding = 4
    tops, lefts = set(), set()
    for _ in range(4):
        for x, y in loader:
            pixels = (x * 255).round().to(torch.uint8)
            for out, index in zip(pixels, y.tolist()):
                matches = [
                    (t, left)
                    for t in range(2 * padding + 1)
                    for left in range(2 * padding + 1)
                    for f in (False, True)
                    if torch.equal(out, reference_crop(images[index], t, left, f, padding))
                ]
                assert len(matches) == 1, f"image {index}: {matches}"
                tops.add(matches[0][0])
                lefts.add(matches[0][1])
    # offsets span [0, 2p] in both axes: shifted up/left and down/right by the full padding
    assert {0, 2 * padding} <= tops <= set(range(2 * padding + 1))
    assert {0, 2 * padding} <= lefts <= set(range(2 * padding + 1))


# ------------------------------------------------------------- 9. per-layer sparsity


def test_layer_sparsities_are_the_pruned_shares_of_each_layer():
    masks = [
        torch.tensor([[True, False, False], [False, False, False]]),  # 1 of 6 kept
        torch.tensor([True, True, False, True]),  # 3 of 4 kept
        torch.zeros(2, 2, 2, dtype=torch.bool),  # all pruned
    ]
    result = layer_sparsities(["conv1.weight", "conv2.weight", "conv3.weight"], masks)
    assert list(result) == ["conv1.weight", "conv2.weight", "conv3.weight"]
    assert result["conv1.weight"] == pytest.approx(5 / 6, abs=1e-7)  # a float32 mean
    assert result["conv2.weight"] == 0.25
    assert result["conv3.weight"] == 1.0
