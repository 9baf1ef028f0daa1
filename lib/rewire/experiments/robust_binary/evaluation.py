"""What the robust-binary report computes from trained networks and from the paper's formulas (no training).

* :func:`cross_check` -- our PGD against torchattacks' PGD and AutoAttack (APGD-CE alone, or the standard four:
  the paper's protocol) on a fixed random subset of the test images;
* :func:`model_of` / :func:`selected_state` -- a run's network at the epoch chosen on robust validation (the
  authors' model selection) or at its last epoch; :func:`autoattack_per_run` -- AutoAttack on every adversarially
  trained run's selected model (the paper scale, ``autoattack: standard``), cached per run directory;
* :func:`allocation_table` -- the adaptive allocation kept_i = c n_i^p of cResNet34 at the paper's keep 0.01
  (:mod:`rewire.sparse.allocation`), per p;
* :func:`kept_fraction_table` -- trained vs planned kept weights per layer of every edge-popup row;
* :func:`appendix_checks` -- Table 6, Theorems A.1-A.2, A.3 and A.4 checked exactly, beside the paper's numbers;
* :func:`kernel_counts` -- Section 4.3 / A.4 on a trained mask: kept weights per 3x3 kernel against a random mask
  of the same density (the exact-count law);
* :func:`alignment_table` -- Section 4.3's aligned pattern: channels empty on both sides of a block's two convs.

Attacks and mask statistics read the models, never train them; none of this is part of a run's identity.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from rewire.experiments.robust_binary import analysis, masks, paper
from rewire.experiments.robust_binary.callbacks import evaluation_subset
from rewire.experiments.robust_binary.config import Config
from rewire.io import write_json

__all__ = [
    "MODELS",
    "AUTOATTACK_CACHE",
    "attacked_test_images",
    "autoattack_name",
    "selected_state",
    "model_of",
    "autoattack_per_run",
    "CROSS_CHECK_SEED",
    "ALIGNMENT_SAMPLES",
    "ALLOCATION_P",
    "cross_check",
    "allocation_table",
    "kept_fraction_table",
    "appendix_checks",
    "kernel_counts",
    "alignment_table",
]

CROSS_CHECK_SEED = 0  # our PGD's random start in the cross-check (torchattacks' own seeds are fixed too)
ALIGNMENT_SAMPLES = 20  # random masks of the same densities per block pair (Section 4.3's baseline)
ALLOCATION_P = (0.0, 0.1, 0.5, 1.0)  # the allocation figure's exponents: fixed count, the paper's, between, fixed rate
PAPER_KEEP = 0.01  # the paper's 99 % pruning (Tables 9-11)


def attacked_test_images(config: Config, data, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``autoattack_images`` test images AutoAttack and the cross-check attack (the fixed random subset that
    robust evaluation attacks, :func:`evaluation_subset`), pixels in [0, 1], and their labels."""
    index = evaluation_subset(len(data.test_labels), config.autoattack_images)
    return data.test_images[index].float().div(255).to(device), data.test_labels[index].to(device)


def autoattack_name(config: Config) -> str:
    """The AutoAttack variant in words: APGD-CE alone (smoke, cpu) or the standard four (the paper's, Appendix D.1)."""
    if config.autoattack == "apgd-ce":
        return f"APGD-CE (AutoAttack's first attack, {config.apgd_steps} steps)"
    return f"AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square; {config.apgd_steps} steps)"


def _autoattack(config: Config, model: nn.Module, images, labels, eps: float) -> float:
    from rewire.attacks.autoattack import autoattack_accuracy

    attacks = ("apgd-ce",) if config.autoattack == "apgd-ce" else None  # None: the standard list
    return autoattack_accuracy(model, images, labels, eps, attacks=attacks, steps=config.apgd_steps)


def cross_check(
    config: Config, model: nn.Module, data, device: torch.device, autoattack: float | None = None
) -> dict[str, Any]:
    """Clean accuracy, PGD (ours and torchattacks') and AutoAttack (``config.autoattack``) top-1 in % of ``model``
    on the ``autoattack_images`` test images robust evaluation attacks, same ε, steps and step size.
    ``autoattack``: the model's AutoAttack top-1 (%) already measured on these images (not attacked again)."""
    from rewire.attacks.autoattack import torchattacks_pgd_accuracy
    from rewire.attacks.pgd import pgd_linf

    images, labels = attacked_test_images(config, data, device)
    eps, step = config.eps_255 / 255, config.step_255 / 255
    model.eval()
    with torch.no_grad():
        clean = float((model(images).argmax(1) == labels).float().mean())
    generator = torch.Generator().manual_seed(CROSS_CHECK_SEED)
    adversarial = pgd_linf(model, images, labels, eps=eps, step_size=step, steps=config.steps, generator=generator)
    with torch.no_grad():
        ours = float((model(adversarial).argmax(1) == labels).float().mean())
    theirs = torchattacks_pgd_accuracy(model, images, labels, eps, step_size=step, steps=config.steps)
    return {
        "images": int(labels.numel()),
        "clean": 100 * clean,
        "pgd_ours": 100 * ours,
        "pgd_torchattacks": 100 * theirs,
        "autoattack": autoattack if autoattack is not None else 100 * _autoattack(config, model, images, labels, eps),
        "autoattack_name": autoattack_name(config),
    }


# ------------------------------------------------------------------------ the selected model and its AutoAttack

MODELS = ("selected", "final")  # the epoch RobustSelection chose on validation, or the last epoch
AUTOATTACK_CACHE = "autoattack.json"  # per run directory: standard AutoAttack costs hours per run at paper scale


def selected_state(result) -> dict[str, torch.Tensor] | None:
    """The state of the epoch :class:`~rewire.experiments.robust_binary.callbacks.RobustSelection` chose, read
    from the run's checkpoint (the callback's state), or None (no checkpoint, no validation split)."""
    from rewire.train import checkpoint
    from rewire.train.trainer import Trainer

    path = Path(result.run_dir) / Trainer.CHECKPOINT_FILE
    if not path.exists():
        return None
    for entry in checkpoint.load(path).get("callbacks", ()):
        if entry.get("type") == "RobustSelection":
            return entry["state"].get("best_state")
    return None


def model_of(result, which: str) -> tuple[nn.Module, str]:
    """(the run's network in the state ``which`` names, the state it is): "selected" loads the selected epoch's
    state into a copy (falling back to the final one, named so, where none was kept); "final" the trained model."""
    if which not in MODELS:
        raise ValueError(f"which must be one of {MODELS}, got {which!r}")
    state = selected_state(result) if which == "selected" else None
    if state is None:
        return result.model, "final"
    chosen = copy.deepcopy(result.model)
    chosen.load_state_dict(state)
    return chosen, "selected"


def autoattack_per_run(config: Config, runs, data, device: torch.device, which: str = "selected") -> pd.DataFrame:
    """``config.autoattack`` on the ``which`` model of every run of every adversarially trained row (the paper's
    protocol: the authors ran the standard AutoAttack on the full test set after every training), ε the row's own,
    on the ``autoattack_images`` test images. One line per run: row, seed, the model attacked, the attack, images,
    ``autoattack_top1`` (%). Cached in each run's directory under the attack's settings (a found run is attacked
    once)."""
    images, labels = attacked_test_images(config, data, device)
    lines = []
    for run in runs:
        if run.row.training == "clean":
            continue
        settings = {"attack": config.autoattack, "steps": config.apgd_steps, "images": int(labels.numel()),
                    "eps_255": run.row.eps_255, "model": which}  # fmt: skip
        key = json.dumps(settings, sort_keys=True)
        cache = Path(run.result.run_dir) / AUTOATTACK_CACHE
        stored = json.loads(cache.read_text()) if cache.exists() else {}
        if key not in stored:
            model, attacked = model_of(run.result, which)
            top1 = 100 * _autoattack(config, model, images, labels, run.row.eps)
            stored[key] = {"model": attacked, "autoattack_top1": top1}
            write_json(cache, stored)
        lines.append({"row": run.row.name, "seed": run.spec.seed, "attack": autoattack_name(config),
                      "images": int(labels.numel()), **stored[key]})  # fmt: skip
    return pd.DataFrame(lines, columns=["row", "seed", "attack", "images", "model", "autoattack_top1"])


def allocation_table() -> pd.DataFrame:
    """Kept fraction per layer of cResNet34 (the paper's network) at keep 0.01 for each p of :data:`ALLOCATION_P`:
    rates clipped at 1 and the budget recomputed; the total kept is the same for every p (up to the floors)."""
    from rewire.methods.edge_popup import default_targets
    from rewire.models import build_model
    from rewire.sparse.allocation import adaptive_allocation

    network = build_model("cresnet34", num_classes=10)
    sizes = {t: network.get_parameter(t).numel() for t in default_targets(network)}
    return pd.DataFrame(
        [
            {"p": p, "layer": i, "name": name, "size": n, "kept": kept, "fraction": kept / n}
            for p in ALLOCATION_P
            for i, ((name, n), kept) in enumerate(
                zip(sizes.items(), adaptive_allocation(sizes, PAPER_KEEP, p).kept.values())
            )
        ]
    )


def kept_fraction_table(runs) -> pd.DataFrame:
    """Per layer of the first seed of every edge-popup row: kept weights trained and planned (the allocation's
    floors); they agree exactly (top-k of |s| per layer)."""
    from rewire.sparse.allocation import adaptive_allocation

    rows, seen = [], set()
    for run in runs:
        if run.row.method != "edge_popup" or run.row.name in seen:
            continue
        seen.add(run.row.name)
        layers = masks.kept_fractions(run.result.model)
        sizes = {layer["name"]: layer["size"] for layer in layers}
        planned = adaptive_allocation(sizes, run.row.keep, run.row.p).counts("floor")
        rows += [{"row": run.row.name, **layer, "planned": planned[layer["name"]]} for layer in layers]
    return pd.DataFrame(rows)


def appendix_checks() -> pd.DataFrame:
    """The appendix checked exactly, beside the paper's numbers: Table 6's FLOP ratios, Theorems A.1 and A.2 by
    brute force on small layers, A.3's last-batch-norm gradients, A.4's kernel counts (Eq. 10 and the exact law)."""
    ratios, example = analysis.binary_flop_ratios(), paper.TABLE6_EXAMPLE
    checks = [
        ("Table 6: binary/FP FLOPs, forward training (r=0.99, c=3, 128 channels, s=16)", ratios.forward_train,
         example.forward_train_ratio),
        ("Table 6: forward inference", ratios.forward_eval, example.forward_eval_ratio),
        ("Table 6: backward", ratios.backward, example.backward_ratio),
    ]  # fmt: skip
    for sizes, budget in (((4, 7, 12), 10), ((5, 9, 11, 6), 14), ((12, 4, 8), 15)):
        best = analysis.brute_force_best(sizes, budget, "search_space")
        holds = all(analysis.satisfies_eq5(sizes, m) for m in best.maximisers)
        checks.append((f"Theorem A.1, sizes {sizes}, budget {budget}: every maximiser satisfies Eq. 5", holds, 1.0))
        best = analysis.brute_force_best(sizes, budget, "path_count")
        holds = analysis.fixed_count_allocation(sizes, budget) in best.maximisers
        checks.append((f"Theorem A.2, sizes {sizes}, budget {budget}: fixed count is a maximiser", holds, 1.0))
    lbn = analysis.lbn_gradient_experiment(alpha=16.0)
    nan = float("nan")
    checks += [
        ("A.3: with LBN, max relative change of the penultimate gradient at α = 16", lbn.lbn_max_rel_change_u, 0.0),
        ("A.3: without LBN, median gradient ratio α=16 / α=1, correct inputs (vanishes)",
         lbn.plain_norm_ratio_correct_median, nan),
        ("A.3: without LBN, median gradient ratio, misclassified inputs (saturates)",
         lbn.plain_norm_ratio_incorrect_median, nan),
    ]  # fmt: skip
    a4 = paper.APPENDIX_A4
    for kept, stated in ((3, a4.kernels_with_3_kept), (4, a4.kernels_with_4_kept)):
        for model, words in (("paper_eq10", f"A.4: kernels with {kept} kept weights, 3x3x256x256 at r = 0.99, Eq. 10"),
                             ("hypergeometric", "A.4: the same, exact count (hypergeometric)")):  # fmt: skip
            value = analysis.expected_kernels_with_kept(kept, a4.num_weights, a4.pruning_rate_r, model=model)
            checks.append((words, value, stated))
    return pd.DataFrame([{"check": c, "ours": float(ours), "paper": p} for c, ours, p in checks])


KERNEL_MIN_KERNELS = 64  # layers with fewer 3x3 kernels are left out (too few for a count)


def kernel_counts(model: nn.Module) -> pd.DataFrame:
    """Kernels with 2, 3, 4 kept weights per 3x3 conv of a trained network against the exact-count random law."""
    from rewire.sparse.masks import sparse_modules

    rows = []
    for name, _, parametrization in sparse_modules(model):
        mask = parametrization.mask
        if mask.dim() != 4 or mask.shape[-1] != 3 or mask.shape[0] * mask.shape[1] < KERNEL_MIN_KERNELS:
            continue
        histogram = analysis.kept_per_kernel_histogram(mask)
        rate = 1 - float(mask.float().mean())
        for kept in range(2, 5):
            expected = (
                analysis.expected_kernels_with_kept(kept, mask.numel(), rate, model="hypergeometric")
                if 0 < rate < 1
                else float("nan")
            )
            rows.append({"layer": name, "kept_per_kernel": kept, "trained": int(histogram[kept]),
                         "random_expected": expected})  # fmt: skip
    return pd.DataFrame(rows, columns=["layer", "kept_per_kernel", "trained", "random_expected"])


def alignment_table(model: nn.Module, generator: torch.Generator) -> pd.DataFrame:
    """For every block's ``conv1 -> conv2``: channels empty on both sides (an empty output channel of layer 1 is
    constant after the non-affine BN, so layer-2 weights reading it are wasted), against the count expected if
    the two empty sets were independent (a·b/C) and the mean over random masks of the same densities."""
    layers = masks.layer_masks(model)
    rows = []
    for first, second in masks.block_conv_pairs(model):
        result = masks.channel_alignment(layers[first], layers[second], generator=generator, samples=ALIGNMENT_SAMPLES)
        rows.append(
            {
                "layer1": first,
                "layer2": second,
                "channels": result.channels,
                "empty_out_layer1": result.empty_out1,
                "empty_in_layer2": result.empty_in2,
                "both_empty": result.overlap,
                "expected_if_independent": result.expected_overlap,
                "random_masks_both_empty": result.random_overlap,
            }
        )
    return pd.DataFrame(rows)
