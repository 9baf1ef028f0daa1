"""DPF against Incremental across training budgets (issue 20, point 2): hand-made ``run.json`` points, no training.

The regime's counts are checked against hand arithmetic on the cpu block's recipe (500 images per class,
10 % held out for validation, batch 128, update every 16 steps, ramp ending at 75 % of training), the paired
DPF - Incremental rows against hand-computed means and a Student-t interval, with DPF below Incremental at
the small budgets and above at the large one, so a swapped sign or a wrong seed set cannot pass.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rewire.experiments.dpf_sweeps.config import Recipe
from rewire.experiments.dpf_sweeps.regime import (
    DIFFERENCE,
    NAME,
    budget_regime,
    iterations_per_epoch,
    regime,
    write_budget_regime,
)

STEPS_PER_EPOCH = 35  # (500 - round(0.1 x 500)) x 10 classes = 4,500 images; 4,500 // 128 = 35 (last batch dropped)
PERIOD = 16  # update_every of the cpu block
LABEL = {"scale": "cpu", "seeds": [0, 1, 2], "data_source": "synthetic", "data_source_description": "made up",
         "device": "cpu", "commit": "test"}  # fmt: skip
# final test top-1 per budget (epochs), method and seed: DPF 3.5 below at 10 epochs, 1.33 below at 20, 2 above at 40;
# DPF's seed 3 at 20 epochs has no Incremental partner and must not enter the difference
TOP1 = {
    10: {"dpf": {0: 60.0}, "incremental": {0: 63.5}},
    20: {"dpf": {0: 70.0, 1: 71.0, 2: 72.5, 3: 99.0}, "incremental": {0: 72.0, 1: 72.5, 2: 73.0}},
    40: {"dpf": {0: 80.0}, "incremental": {0: 78.0}},
}


def _recipe(epochs: int, seeds) -> dict:
    return Recipe(
        epochs=epochs, train_per_class=500, validation_fraction=0.1, batch_size=128, milestones=(0.5, 0.75),
        update_every=PERIOD, seeds=tuple(seeds),
    ).as_dict()  # fmt: skip


def _loss(method: str, epoch: int) -> float:
    return (0.1 if method == "dpf" else 0.05) * epoch  # DPF's loss twice Incremental's: the loss differences are signed


def _updates(method: str, epoch: int) -> int:
    """Mask updates in ``epoch``: DPF every PERIOD steps; Incremental once per epoch (Zhu & Gupta's Δt)."""
    if method == "incremental":
        return 1
    return math.ceil(epoch * STEPS_PER_EPOCH / PERIOD) - math.ceil((epoch - 1) * STEPS_PER_EPOCH / PERIOD)


def _run(method: str, epochs: int, seed: int, top1: float, steps_per_epoch: int = STEPS_PER_EPOCH) -> dict:
    history = [
        {"epoch": k, "phase": method, "step": k * steps_per_epoch, "train_loss": _loss(method, k),
         "mask_updates": _updates(method, k)}
        for k in range(1, epochs + 1)
    ]  # fmt: skip
    # Figure 4's curve: 1 / (e + 1) of the entries still change after epoch e (DPF); Incremental's mask is frozen
    convergence = [1.0 / (e + 1) if method == "dpf" else 0.0 for e in range(epochs)]
    return {"seed": seed, "test_top1": top1, "phases": [method], "history": history, "mask_convergence": convergence}


def _point(method: str, epochs: int, tag: str, finals: dict[int, float], sparsity: float = 0.9) -> dict:
    runs = [_run(method, epochs, seed, top1) for seed, top1 in finals.items()]
    return {"method": method, "sparsity": sparsity, "structured": False, "recipe": _recipe(epochs, finals),
            "runs": runs, "tag": tag, "model": "resnet20"}  # fmt: skip


def _points(budgets=(10, 20, 40)) -> list[dict]:
    tags = {10: "fig-budget-e10", 20: "", 40: "fig-budget-e40"}
    found = [_point(m, e, tags[e], TOP1[e][m]) for e in budgets for m in ("dpf", "incremental")]
    # not part of the comparison: another method, another figure's tag, another sparsity
    found += [_point("snip", 20, "", {0: 1.0}), _point("dpf", 20, "fig9-p1", {0: 1.0})]
    return found + [_point("dpf", 20, "", {0: 1.0}, sparsity=0.5), _point("incremental", 20, "", {0: 1.0}, 0.5)]


def test_iterations_per_epoch_counts_the_loader_without_the_validation_split_and_last_batch():
    assert iterations_per_epoch(Recipe.from_params(_recipe(20, [0]))) == STEPS_PER_EPOCH
    # the whole CIFAR-10 split less 10 %: 45,000 // 128 = 351, as the trainer recorded in a cpu run's history
    assert iterations_per_epoch(Recipe(epochs=2, validation_fraction=0.1, batch_size=128)) == 351
    assert iterations_per_epoch(Recipe(epochs=2, batch_size=128)) == 50_000 // 128 == 390
    # round(0.25 x 10) holds out 3 per class (round half up): 70 images // 32 = 2
    assert iterations_per_epoch(Recipe(epochs=2, train_per_class=10, validation_fraction=0.25, batch_size=32)) == 2


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [  # iterations = 35 e; ramp ends at floor(0.75 e); updates before steps 0, 16, 32, ... of the ramp's 35 x end steps
        (10, {"iterations": 350, "ramp_end_epoch": 7, "ramp_mask_updates": 16, "mask_updates_after_ramp": 6,
              "epochs_at_full_sparsity": 3}),  # 245 ramp steps: ceil(245 / 16) = 16; ceil(350 / 16) = 22 in all
        (20, {"iterations": 700, "ramp_end_epoch": 15, "ramp_mask_updates": 33, "mask_updates_after_ramp": 11,
              "epochs_at_full_sparsity": 5}),  # 525: ceil(32.8) = 33; ceil(43.75) = 44
        (40, {"iterations": 1400, "ramp_end_epoch": 30, "ramp_mask_updates": 66, "mask_updates_after_ramp": 22,
              "epochs_at_full_sparsity": 10}),  # 1,050: ceil(65.6) = 66; ceil(87.5) = 88
    ],
)  # fmt: skip
def test_regime_counts_steps_mask_updates_and_time_at_full_sparsity(epochs, expected):
    shape = regime(Recipe.from_params(_recipe(epochs, [0])), 0.9)
    assert {k: shape[k] for k in expected} == expected
    assert shape["epochs"] == epochs and shape["iterations_per_epoch"] == STEPS_PER_EPOCH


def test_table_rows_per_seed_and_signed_paired_differences():
    table, curves, notes = budget_regime(_points(), model="resnet20")
    assert list(dict.fromkeys(table.budget)) == ["fig-budget-e10", "main", "fig-budget-e40"]  # by iterations
    assert set(table.sparsity) == {0.9}
    seeds = table[table.method != DIFFERENCE]
    assert len(seeds) == 2 + 7 + 2 and set(seeds.method) == {"dpf", "incremental"}
    dpf10 = seeds[(seeds.budget == "fig-budget-e10") & (seeds.method == "dpf")].iloc[0]
    assert dpf10.train_loss_ramp_last_half == pytest.approx(0.55)  # epochs 4..7 of ramp end 7: mean 0.1 x 5.5
    assert dpf10.train_loss_final == pytest.approx(1.0)
    assert dpf10.flipping_after_ramp_pct == pytest.approx(100 / 8)  # after epoch 7
    inc40 = seeds[(seeds.budget == "fig-budget-e40") & (seeds.method == "incremental")].iloc[0]
    assert inc40.train_loss_ramp_last_half == pytest.approx(0.05 * 23)  # epochs 16..30: mean 23
    assert inc40.flipping_after_ramp_pct == 0.0

    difference = table[table.method == DIFFERENCE].set_index("budget")
    assert difference.loc["fig-budget-e10", "test_top1"] == pytest.approx(-3.5)
    assert math.isnan(difference.loc["fig-budget-e10", "top1_ci_low"])  # one seed: the difference only
    assert difference.loc["fig-budget-e40", "test_top1"] == pytest.approx(2.0)
    main = difference.loc["main"]
    assert main.seed == "paired: 0 1 2" and main.paired_seeds == 3  # DPF's seed 3 has no partner
    assert main.test_top1 == pytest.approx(-4 / 3)  # (-2.0 - 1.5 - 0.5) / 3
    assert (main.top1_ci_low, main.top1_ci_high) == pytest.approx((-3.23062, 0.56396), abs=1e-4)  # t(0.975, 2) = 4.3027
    assert main.train_loss_final == pytest.approx(0.1 * 20 - 0.05 * 20)  # DPF's loss minus Incremental's: +1.0
    assert (main.iterations, main.epochs_at_full_sparsity) == (700, 5)
    assert len(curves) == 2 * 10 + 7 * 20 + 2 * 40 and curves.fraction.max() == 1.0  # one row per run and epoch
    assert notes == []


def test_a_history_that_disagrees_with_the_recipe_is_noted():
    points = _points(budgets=(20,))
    points[0]["runs"][0] = _run("dpf", 20, 0, 70.0, steps_per_epoch=36)
    _, _, notes = budget_regime(points)
    assert notes[0] == "main dpf seed 0: history records 720 steps, the recipe gives 700" and len(notes) == 2


def test_missing_budgets_and_methods_do_not_fail(tmp_path):
    table, _, notes = budget_regime(_points(budgets=(20,)))
    assert set(table.budget) == {"main"}
    assert notes == ["no budget entries (tags fig-budget*) in this grid: the main budget only"]
    lonely = [p for p in _points() if not (p["tag"] == "fig-budget-e40" and p["method"] == "incremental")]
    table, _, notes = budget_regime(lonely)
    assert "fig-budget-e40: only dpf; no paired difference" in notes
    assert not ((table.budget == "fig-budget-e40") & (table.method == DIFFERENCE)).any()
    write_budget_regime([], tmp_path, LABEL)  # no DPF or Incremental run at all: "not computed" files
    assert "not computed" in (tmp_path / f"{NAME}.md").read_text() and (tmp_path / f"{NAME}.png").exists()


def test_histories_without_losses_still_give_the_table_and_figure(tmp_path):
    points = _points(budgets=(20,))
    for point in points:
        for run in point["runs"]:
            run["history"] = [{"epoch": 1, "phase": point["method"]}]  # no step, no loss recorded
    write_budget_regime(points, tmp_path, LABEL)
    written = pd.read_csv(tmp_path / f"{NAME}.csv")
    assert written.train_loss_final.isna().all() and (written.iterations == 700).all()
    assert (tmp_path / f"{NAME}.png").exists()


def test_writes_the_labelled_table_and_figure(tmp_path):
    write_budget_regime(_points(), tmp_path, LABEL, "resnet20")
    written = pd.read_csv(tmp_path / f"{NAME}.csv")
    assert len(written) == 11 + 3 and set(written.scale) == {"cpu"}
    markdown = (tmp_path / f"{NAME}.md").read_text()
    assert markdown.startswith("### DPF vs Incremental") and "scale **cpu**" in markdown
    assert (tmp_path / f"{NAME}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_stage_declares_the_outputs():
    with open(Path(__file__).resolve().parents[1] / "dvc.yaml", encoding="utf-8") as handle:
        outs = [next(iter(o)) for o in yaml.safe_load(handle)["stages"]["dpf_sweeps"]["outs"]]
    assert {f"results/dpf_sweeps/{NAME}.{e}" for e in ("csv", "md", "png")} <= set(outs)


def test_incremental_is_checked_against_one_update_per_ramp_epoch_not_dpfs_period():
    points = _points(budgets=(20,))
    incremental = next(p for p in points if p["method"] == "incremental" and p["sparsity"] == 0.9)
    for record in incremental["runs"][0]["history"]:
        record["mask_updates"] = _updates("dpf", record["epoch"])  # DPF's 33 in the ramp: wrong for Incremental
    _, _, notes = budget_regime(points)
    assert notes[0] == "main incremental seed 0: history records 33 mask updates in the ramp, the recipe gives 15"
    assert not any("dpf seed" in note for note in notes)  # DPF's own count matches its period


def test_the_frozen_variant_gets_its_own_rows_and_paired_difference_against_incremental():
    # dpf_frozen on seeds 0 and 2 of the main budget only; Incremental's main finals are TOP1[20]["incremental"]
    frozen = _point("dpf_frozen", 20, "", {0: 70.0, 2: 60.0})
    table, _, notes = budget_regime([*_points(), frozen], model="resnet20")
    rows = table[(table.method == "dpf_frozen")]
    assert list(rows.budget) == ["main", "main"] and list(rows.seed) == ["0", "2"]
    paired = table[table.method == "dpf_frozen - incremental"].set_index("budget")
    assert list(paired.index) == ["main"]  # no frozen runs at the other budgets: no row, no note
    incremental = TOP1[20]["incremental"]
    expected = [70.0 - incremental[0], 60.0 - incremental[2]]
    assert paired.loc["main", "seed"] == "paired: 0 2"
    assert paired.loc["main", "test_top1"] == pytest.approx(sum(expected) / 2)
    # the DPF - Incremental row is unchanged by the variant
    base, _, _ = budget_regime(_points(), model="resnet20")
    assert table[table.method == DIFFERENCE].test_top1.tolist() == base[base.method == DIFFERENCE].test_top1.tolist()
    assert notes == []
