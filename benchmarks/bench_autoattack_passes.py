"""What the standard AutoAttack costs per test image, counted in passes through the model.

Liu et al. 2022 report AutoAttack (Croce & Hein 2020, the standard version: APGD-CE, APGD-T, FAB-T and
Square) for every "Ours" row. Each attack runs only on the images the previous ones left correctly
classified, so its cost depends on the model's robust accuracy. This benchmark counts, with a forward
hook, the forward passes with and without a gradient that each component of
:func:`rewire.attacks.autoattack.autoattack_accuracy`'s settings (100 iterations, 9 target classes, 5,000
queries) spends on an image it never breaks (a budget of 0.25/255 on a small random CNN whose labels are
its own predictions: nothing is broken, so every iteration runs). The counts are the attacks' own and
do not depend on the model.

The cost of one test image at paper scale follows from the counts and the accuracies after each stage
(``--clean``, ``--robust``: the fraction still correct when each later attack starts; the defaults are
the paper's PGD-trained CIFAR-10 "Ours" row at r = 0.99, p = 0.1: 76.59 % clean, Table 10, and 45.06 %
under AutoAttack, Table 9; the fraction that survives APGD-CE is taken as the final robust one, so APGD-T,
FAB-T and Square are counted on slightly too few images), in *training-image equivalents*: a pass with a gradient is a forward and a backward
(3 forward costs), one training image of a PGD-free step is the same. Writes
``benchmarks/results/autoattack_passes.json``. Takes about 10 minutes on 2 cores.

    python benchmarks/bench_autoattack_passes.py [--images 4] [--clean 0.7659] [--robust 0.4506]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn as nn

from rewire.attacks.autoattack import AUTOATTACK_STANDARD, _build
from rewire.io import write_json

# AutoAttack's standard settings (Croce & Hein 2020): 100 iterations, 9 target classes, 5,000 queries
STEPS, QUERIES, CLASSES = 100, 5000, 10
BACKWARD_COST = 2.0  # a backward pass costs about two forward passes (the usual rule of thumb)


def count_passes(images: int, seed: int = 0) -> dict:
    """Forward passes per never-broken image, with and without a gradient, by component."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, CLASSES)
    ).eval()
    x = torch.rand(images, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(1)
    counts = {"grad": 0, "nograd": 0}

    def hook(module, inputs, output):
        with_grad = torch.is_grad_enabled() and output.requires_grad and inputs[0].requires_grad
        counts["grad" if with_grad else "nograd"] += inputs[0].shape[0]

    model[0].register_forward_hook(hook)
    found = {}
    for name in AUTOATTACK_STANDARD:
        counts.update(grad=0, nograd=0)
        attack = _build(name, model, eps=0.25 / 255, n_classes=CLASSES, seed=seed, steps=STEPS, n_queries=QUERIES)
        start = time.perf_counter()
        adversarial = attack(x, y)
        with torch.no_grad():
            unbroken = (model(adversarial).argmax(1) == y).float().mean().item()
        found[name] = {
            "grad_passes_per_image": counts["grad"] / images,
            "nograd_passes_per_image": counts["nograd"] / images,
            "unbroken_fraction": unbroken,  # 1.0: every iteration ran (the counts are the full cost)
            "cpu_seconds": round(time.perf_counter() - start, 1),
        }
        print(name, found[name], flush=True)
    return found


def cost_per_test_image(passes: dict, clean: float, robust: float) -> float:
    """Training-image equivalents per test image: APGD-CE on the clean-correct fraction, the others on the
    final robust fraction (a lower bound: APGD-T starts on APGD-CE's survivors, a few more images)."""
    total = 0.0
    for name, count in passes.items():
        forward_equivalents = (1 + BACKWARD_COST) * count["grad_passes_per_image"] + count["nograd_passes_per_image"]
        share = clean if name == "apgd-ce" else robust
        total += share * forward_equivalents / (1 + BACKWARD_COST)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument(
        "--clean", type=float, default=0.7659, help="clean accuracy (fraction); default: Table 10, Ours, CIFAR-10"
    )
    parser.add_argument(
        "--robust", type=float, default=0.4506, help="AutoAttack accuracy (fraction); default: Table 9, Ours, CIFAR-10"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "autoattack_passes.json"))
    args = parser.parse_args()
    if not (0 <= args.robust <= args.clean <= 1):
        parser.error(f"need 0 <= robust <= clean <= 1, got clean {args.clean}, robust {args.robust}")
    passes = count_passes(args.images)
    per_image = cost_per_test_image(passes, args.clean, args.robust)
    result = {
        "settings": {"steps": STEPS, "queries": QUERIES, "target_classes": CLASSES - 1, "images": args.images},
        "passes_per_unbroken_image": passes,
        "accuracies": {"clean": args.clean, "robust": args.robust},
        "training_image_equivalents_per_test_image": round(per_image, 1),
        "training_image_equivalents_10000_test_images": round(per_image * 10_000),
    }
    write_json(args.out, result)
    print(f"{per_image:.0f} training-image equivalents per test image; written to {args.out}")


if __name__ == "__main__":
    main()
