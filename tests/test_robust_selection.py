"""The selected model (issue 19): RobustSelection picks the epoch of best *robust* validation accuracy (clean for
rows trained without an attack), the paper scale's claims and tables read it beside the final epoch, AutoAttack
attacks it; and the p = 0.1 vs p = 1 claim is a strict ``greater`` (tied values do not hold)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from synthetic import tiny_dataset

from rewire.experiments.engine import RunContext
from rewire.experiments.robust_binary.config import Config
from rewire.reporting.claims import VERDICTS, claims_frame
from rewire.train import checkpoint

callbacks = importlib.import_module("rewire.experiments.robust_binary.callbacks")
evaluation = importlib.import_module("rewire.experiments.robust_binary.evaluation")
report = importlib.import_module("rewire.experiments.robust_binary.report")
runs = importlib.import_module("rewire.experiments.robust_binary.runs")

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(model="cresnet18", widths=[2, 2, 4, 4], keep=0.3, epochs=1, steps=2, validation_images=3, test_images=6,
            batch_size=6)  # fmt: skip

# Validation accuracies per epoch (clean, robust): epoch 1 is best clean, epoch 2 best robust, epoch 3 the final one
VALIDATION = {1: (0.90, 0.20), 2: (0.50, 0.40), 3: (0.80, 0.30)}


def row_of(**fields):
    config = Config.from_values({**BASE, "rows": [{"name": "x", **fields}]}, where="test")
    return config.row("x")


def scripted_accuracy(model, loader, n, **attack):
    """The accuracies of the state the model holds (its weight is the epoch it was set at): validation as scripted
    above, test accuracies that name the epoch (clean 0.6 + epoch/100, robust epoch/10)."""
    epoch = int(model.weight.detach().flatten()[0])
    clean, robust = VALIDATION[epoch] if loader == "validation" else (0.6 + epoch / 100, epoch / 10)
    return SimpleNamespace(clean=clean, robust=robust, n=n)


def run_three_epochs(monkeypatch, training: str):
    monkeypatch.setattr(callbacks, "robust_accuracy", scripted_accuracy)
    model = torch.nn.Linear(1, 1, bias=False)
    selection = callbacks.RobustSelection(row_of(training=training, eval_every=1), "validation", "test")
    trainer = SimpleNamespace(model=model, hparams=SimpleNamespace(epochs=3))
    record: dict = {}
    for epoch in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(epoch)
        record = {"epoch": epoch}
        selection.on_epoch_end(trainer, record)
    return selection, model, record


def test_the_selected_epoch_is_the_best_robust_validation_not_the_best_clean(monkeypatch):
    selection, model, final = run_three_epochs(monkeypatch, "pgd")
    assert selection.best_epoch == 2 and final["best_epoch"] == 2 and final["selected_on"] == "robust"
    assert float(selection.best_state["weight"]) == 2.0
    assert final["best_test_pgd_top1"] == pytest.approx(20.0)  # the epoch-2 state on the test images
    assert final["best_test_clean_top1"] == pytest.approx(62.0)
    assert final["test_pgd_top1"] == pytest.approx(30.0) and final["test_clean_top1"] == pytest.approx(63.0)
    assert float(model.weight) == 3.0  # the final state is put back after the selected one is tested
    assert final["val_pgd_top1"] == pytest.approx(30.0) and final["val_clean_top1"] == pytest.approx(80.0)


def test_a_row_trained_without_an_attack_selects_on_clean_validation(monkeypatch):
    selection, _, final = run_three_epochs(monkeypatch, "clean")  # ε = 0: robust accuracy is clean accuracy
    assert selection.best_epoch == 1 and final["selected_on"] == "clean"
    assert final["best_test_clean_top1"] == pytest.approx(61.0)


def test_the_paper_block_validates_every_epoch():
    scales = yaml.safe_load((ROOT / "scales.yaml").read_text())
    for block in ("robust_binary", "robust_binary_imagenet100"):
        config = Config.from_values(scales["paper"][block])
        assert config.eval_every == 1 and {row.eval_every for row in config.resolved_rows()} == {1}, block
        assert config.autoattack == "standard"


# ----------------------------------------------------------------------------------------- the claims


def per_run(values: dict[str, list[float]], selected: dict[str, list[float]] | None = None) -> pd.DataFrame:
    lines = []
    for row, accuracies in values.items():
        chosen = (selected or values)[row]
        lines += [{"row": row, "seed": s, "test_pgd_top1": a, "best_test_pgd_top1": b}
                  for s, (a, b) in enumerate(zip(accuracies, chosen))]  # fmt: skip
    return pd.DataFrame(lines)


def verdict_of(frame: pd.DataFrame, b: str, model: str = "final") -> str:
    table = claims_frame(report.robust_claims(frame, model))
    return dict(zip(table["b"], table["verdict"]))[b]


def test_p01_over_p1_is_strictly_greater_tied_values_do_not_hold():
    tied = per_run({"ours_p01": [30.0, 32.0, 31.0], "ours_p1": [30.0, 32.0, 31.0]})
    assert verdict_of(tied, "ours_p1") == VERDICTS[2]  # "inconclusive": an at_least claim would hold here
    slightly_worse = per_run({"ours_p01": [30.0, 31.6, 30.9], "ours_p1": [30.3, 32.0, 31.1]})
    assert verdict_of(slightly_worse, "ours_p1") == "reversed"  # within at_least's margin, but below
    better = per_run({"ours_p01": [33.0, 35.2, 33.9], "ours_p1": [30.0, 32.0, 31.0]})
    assert verdict_of(better, "ours_p1") == "holds"


def test_the_claims_read_the_model_the_scale_reports():
    assert report.reported_model("paper") == "selected"
    assert report.reported_model("cpu") == report.reported_model("smoke") == "final"
    final = {"ours_p01": [30.0, 32.0, 31.0], "ours_p1": [30.0, 32.0, 31.0]}  # tied at the last epoch
    selected = {"ours_p01": [36.0, 37.5, 36.4], "ours_p1": [30.0, 32.0, 31.0]}  # p = 0.1's best epochs are better
    frame = per_run(final, selected)
    assert verdict_of(frame, "ours_p1", "final") == VERDICTS[2]
    assert verdict_of(frame, "ours_p1", "selected") == "holds"


# -------------------------------------------------------------------- the selected model and its AutoAttack


def test_the_selected_state_is_read_from_the_runs_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
    result = SimpleNamespace(run_dir=tmp_path, model=model)
    assert evaluation.model_of(result, "selected") == (model, "final")  # no checkpoint: the final model, named so
    best = {"weight": torch.full((1, 2), -2.0)}
    checkpoint.save(tmp_path / "checkpoint.pt", {"callbacks": [{"type": "LatentClip", "state": {}},
                                                               {"type": "RobustSelection", "state": {"best_state": best}}]})  # fmt: skip
    chosen, which = evaluation.model_of(result, "selected")
    assert which == "selected" and torch.equal(chosen.weight, best["weight"]) and float(model.weight[0, 0]) == 3.0
    assert evaluation.model_of(result, "final") == (model, "final")
    with pytest.raises(ValueError, match="which"):
        evaluation.model_of(result, "best")


def test_autoattack_runs_on_every_adversarially_trained_run_once(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(evaluation, "_autoattack", lambda config, model, x, y, eps: calls.append(eps) or 0.25)
    config = Config.from_values({**BASE, "autoattack": "standard", "autoattack_images": 4,
                                 "rows": [{"name": "a"}, {"name": "v", "training": "clean"}]})  # fmt: skip
    data = SimpleNamespace(test_images=torch.zeros(10, 3, 4, 4, dtype=torch.uint8), test_labels=torch.zeros(10).long())
    finished = []
    for name, seed in (("a", 0), ("a", 1), ("v", 0)):
        (tmp_path / f"{name}{seed}").mkdir()
        result = SimpleNamespace(run_dir=tmp_path / f"{name}{seed}", model=torch.nn.Linear(1, 1))
        finished.append(SimpleNamespace(row=config.row(name), spec=SimpleNamespace(seed=seed), result=result))
    table = evaluation.autoattack_per_run(config, finished, data, torch.device("cpu"))
    assert list(zip(table.row, table.seed)) == [("a", 0), ("a", 1)]  # the vanilla row is not attacked
    assert list(table.autoattack_top1) == [25.0, 25.0] and set(table.images) == {4} and len(calls) == 2
    assert set(table.model) == {"final"}  # no checkpoint here: the final model, named so
    evaluation.autoattack_per_run(config, finished, data, torch.device("cpu"))
    assert len(calls) == 2  # cached in each run's directory


def test_the_paper_protocol_attacks_every_row_and_the_table_says_which_model(tmp_path, monkeypatch):
    """One small outcome through ``report`` with ``autoattack: standard`` (AutoAttack itself stubbed): every
    adversarially trained run gets its selected model's AutoAttack beside the PGD numbers of both models."""
    from rewire.experiments import robust_binary as rb
    from rewire.experiments.base import RunContextSpec

    attacked = []
    monkeypatch.setattr(evaluation, "_autoattack", lambda config, model, x, y, eps: attacked.append(model) or 0.5)
    config = Config.from_values({**BASE, "autoattack": "standard", "autoattack_images": 6, "seeds": [0],
                                 "rows": [{"name": "ours_p01", "training": "fast"}, {"name": "ours_pgd"},
                                          {"name": "vanilla", "training": "clean"}]})  # fmt: skip
    train, held_out = tiny_dataset().train_validation_split(0.2, seed=0)
    ctx = RunContext(train, torch.device("cpu"), 6, tmp_path / "ck", eval_batch_size=6, progress=False,
                     validation=held_out, code=(runs.RUNS_MODULE,))  # fmt: skip
    outcome = rb.run(config, context=RunContextSpec(), run_context=ctx)
    label = rb.run_label(config, outcome, "paper")
    rb.report(config, outcome, tmp_path / "out", label, scale="paper")
    assert len(attacked) == 2  # ours_p01 and ours_pgd; the main row's cross-check reuses its number
    table = pd.read_csv(tmp_path / "out" / "table_robust.csv").set_index("row")
    assert table.loc["ours_pgd", "autoattack_mean"] == 50.0 and table.loc["ours_pgd", "autoattack_model"] == "selected"
    assert pd.isna(table.loc["vanilla", "autoattack_mean"])
    assert {"pgd2_selected_mean", "pgd2_final_mean"} <= set(table.columns)
    text = (tmp_path / "out" / "table_robust.md").read_text()
    assert "read the **selected** model at the paper scale" in text and "every adversarially trained run" in text
    details = yaml.safe_load((tmp_path / "out" / "details.json").read_text())
    assert details["reported_model"] == "selected" and details["main_row_model"] == "selected"
    assert details["ours_p01_pgd_mean"] == details["ours_p01_pgd_selected_mean"]
    cross = pd.read_csv(tmp_path / "out" / "cross_check.csv")
    assert set(cross.model) == {"selected"} and 50.0 in set(cross.top1)
