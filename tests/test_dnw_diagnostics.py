"""Graph diagnostics of DNW on MobileNetV1-DNW (issue 20, point 3): :mod:`rewire.methods.dnw_diagnostics`.

Every number is checked on a hand-made graph where the answer is known exactly: live receivers of a given mask,
the churn between two given masks (both directions: they differ), |w| over the real edges only (hallucinated
entries hold larger values, so a mean over the wrong set cannot pass), and the hallucinated edges' gradient
norm of a loss whose gradient dL/dW_eff is a known signed matrix, through the callback as the trainer calls it.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from rewire.experiments.mobilenet_dnw.config import Config
from rewire.experiments.mobilenet_dnw.runs import DIAGNOSED_METHODS, _diagnostics
from rewire.methods.dnw import apply_method
from rewire.methods.dnw_diagnostics import (
    GraphDiagnostics,
    edge_churn,
    hallucinated_gradient_norm,
    live_receivers,
    real_edge_magnitudes,
)
from rewire.models.mobilenet_dnw import edge_budgets, mobilenet_v1_dnw

T, F = True, False

# a 3-receiver x 4-emitter adjacency: receiver 0 is fed by emitter 0, receiver 1 by nothing, receiver 2 by 1 and 2
REAL = torch.tensor([[T, F, F, F], [F, F, F, F], [F, T, T, F]])
# feed-forward entries: the last column is not one (a lower block may not emit into row 0 ... here: column 3)
FEED_FORWARD = torch.tensor([[T, T, T, F], [T, T, T, F], [T, T, T, T]])
WEIGHT = torch.tensor(
    [
        [-0.5, 9.0, 9.0, 9.0],
        [9.0, 9.0, 9.0, 9.0],
        [9.0, 0.25, -2.0, 9.0],
    ]
)


def test_live_receivers_are_the_rows_with_an_incoming_real_edge():
    assert live_receivers(REAL).tolist() == [True, False, True]
    # a real edge in the last column feeds receiver 1: the live set follows the rows, never the columns
    fed = REAL.clone()
    fed[1, 3] = True
    assert live_receivers(fed).tolist() == [True, True, True]


def test_churn_counts_the_replaced_real_edges_over_the_earlier_ones():
    before = torch.tensor([[T, T, F], [T, T, F]])  # 4 edges
    now = torch.tensor([[T, T, F], [T, F, T]])  # 1 replaced
    assert edge_churn(before, now) == 0.25
    grown = torch.tensor([[T, T, T], [T, T, T]])  # 2 new edges of 4 earlier ones
    assert edge_churn(before, grown) == 0.5
    assert edge_churn(grown, before) == 0.0  # nothing of `before` is new against `grown`
    assert edge_churn(before, before) == 0.0
    with pytest.raises(ValueError, match="at least one real edge"):
        edge_churn(torch.zeros(2, 3, dtype=torch.bool), now)


def test_magnitudes_read_the_real_edges_only():
    mean, largest = real_edge_magnitudes(WEIGHT, REAL)
    assert mean == pytest.approx((0.5 + 0.25 + 2.0) / 3)
    assert largest == 2.0
    assert all(math.isnan(x) for x in real_edge_magnitudes(WEIGHT, torch.zeros_like(REAL)))


def test_hallucinated_gradient_norm_is_over_feed_forward_entries_that_are_not_real():
    grad = torch.arange(12, dtype=torch.float32).reshape(3, 4) - 5.0  # signed, all entries distinct
    # hallucinated: feed-forward and not real = (0,1) (0,2) (1,0) (1,1) (1,2) (2,0) (2,3)
    values = [-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0]
    expected = math.sqrt(sum(v * v for v in values))
    assert float(hallucinated_gradient_norm(grad, REAL, FEED_FORWARD)) == pytest.approx(expected)


class TinyGraph(nn.Module):
    """One adjacency read once per forward; the loss sum(C * W_eff) has dL/dW_eff = C exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.graph = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            self.graph.weight.copy_(WEIGHT)

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        return (self.graph.weight * coefficients).sum()


COEFFICIENTS = torch.tensor(
    [
        [1.0, -2.0, 3.0, 100.0],  # (0,3) is not feed-forward: never counted
        [0.5, -0.5, 4.0, 100.0],
        [-1.0, 7.0, -8.0, 2.0],
    ]
)


def _step(model: TinyGraph, callback: GraphDiagnostics, trainer) -> None:
    model.zero_grad()
    model(COEFFICIENTS).backward()
    trainer.global_step += 1
    callback.on_batch_end(trainer, None)


@pytest.mark.parametrize("method", ["dnw", "rg"])
def test_callback_records_the_gradient_dnw_sends_to_hallucinated_edges(method):
    model = TinyGraph()
    # k = 3 of the feed-forward entries; DNW's top-|w| choice among F: the 9.0 entries of rows 0-2
    apply_method(model, method, k=3, allowed=FEED_FORWARD, targets=("graph.weight",), seed=3)
    callback = GraphDiagnostics(model, {"graph.weight": FEED_FORWARD}, every_steps=1)
    trainer = SimpleNamespace(global_step=0)
    callback.on_fit_start(trainer)
    callback.on_epoch_start(trainer)
    real = model.graph.parametrizations.weight[0].mask.clone() & FEED_FORWARD
    _step(model, callback, trainer)
    hallucinated = FEED_FORWARD & ~real
    expected = float(COEFFICIENTS[hallucinated].norm())
    expected_real = float(COEFFICIENTS[real].norm())
    record = {}
    callback.on_epoch_end(trainer, record)
    assert record["diag_hallucinated_grad_norm"] == pytest.approx(expected)
    assert record["diag_real_grad_norm"] == pytest.approx(expected_real)
    assert record["diag_hallucinated_grad_max"] == pytest.approx(float(COEFFICIENTS[hallucinated].abs().max()))
    assert record["diag_steps"][1]["diag_hallucinated_grad_norm"] == pytest.approx(expected)
    original_grad = model.graph.parametrizations.weight.original.grad
    # the route decides what the parameter receives, not what is measured: DNW passes it on, RG drops it
    sent = float(original_grad[hallucinated].norm())
    assert sent == (pytest.approx(expected) if method == "dnw" else 0.0)
    assert record["diag_live_fraction_per_stage"] == [live_receivers(real).float().mean().item()]


def test_callback_churn_and_magnitudes_follow_the_chosen_edges():
    model = TinyGraph()
    apply_method(model, "dnw", k=3, allowed=FEED_FORWARD, targets=("graph.weight",))
    callback = GraphDiagnostics(model, {"graph.weight": FEED_FORWARD})
    trainer = SimpleNamespace(global_step=0)
    callback.on_fit_start(trainer)
    callback.on_epoch_start(trainer)
    original = model.graph.parametrizations.weight.original
    with torch.no_grad():  # a known choice: the three largest feed-forward |w| are (0,0) (1,1) (2,2)
        original.copy_(torch.tensor([[-5.0, 1, 1, 50], [1, 6.0, 1, 50], [1, 1, -7.0, 1]]))
    callback.on_fit_start(trainer)  # the reference mask of the first epoch
    with torch.no_grad():  # swap (2,2) out for (2,0): one edge of three replaced; the not-feed-forward 50s never count
        original[2, 0] = 8.0
        original[2, 2] = 0.5
    record = {}
    callback.on_epoch_end(trainer, record)
    assert record["diag_churn"] == pytest.approx(1 / 3)
    assert record["diag_abs_w_mean"] == pytest.approx((5.0 + 6.0 + 8.0) / 3)
    assert record["diag_abs_w_max"] == 8.0
    assert record["diag_live_nodes_per_stage"] == [3]
    assert record["diag_real_edges"] == 3


def test_callback_refuses_a_dense_tensor_and_bad_steps():
    with pytest.raises(ValueError, match="not sparse"):
        GraphDiagnostics(TinyGraph(), {"graph.weight": FEED_FORWARD})
    model = TinyGraph()
    apply_method(model, "rg", k=3, allowed=FEED_FORWARD, targets=("graph.weight",))
    with pytest.raises(ValueError, match="every_steps must be an int >= 0"):
        GraphDiagnostics(model, {"graph.weight": FEED_FORWARD}, every_steps=-1)


def test_mobilenet_dnw_runs_attach_diagnostics_to_every_stage():
    model = mobilenet_v1_dnw(10, node_width=0.125)
    for budget in edge_budgets(model, 0.225):
        apply_method(model, "dnw", k=budget.k, allowed=budget.allowed, targets=(budget.target,))
    callback = _diagnostics(model, Config())
    assert [probe.target for probe in callback.probes] == list(model.stage_targets())
    assert {"dnw", "rg"} <= set(DIAGNOSED_METHODS)


def test_cpu_dense_baseline_has_the_graphs_parameter_count():
    import yaml

    block = yaml.safe_load((Path(__file__).resolve().parents[1] / "scales.yaml").read_text())["cpu"]["mobilenet_dnw"]
    counts = Config.from_values(block, where="cpu").parameter_counts()
    # the graph: 9,936 real edges + 11,160 depthwise + 2,992 batch norm + 216 stem + 2,570 classifier
    assert counts == {"graph": 26_874, "dense": 27_434}  # MobileNetV1 x0.0825; x0.0625 had 17,126
    assert abs(counts["dense"] / counts["graph"] - 1) < 0.05
    paper = Config(node_width=1.0, dense_width=0.25).parameter_counts()
    assert paper == {"graph": 226_666, "dense": 215_642}  # the paper's own pairing: equal edges, not equal params


def test_diagnostics_table_csv_and_figure(tmp_path):
    from rewire.experiments.mobilenet_dnw.diagnostics_figure import (
        diagnostics_table,
        plot_diagnostics,
        write_diagnostics_csv,
    )

    def record(step, w, churn, live):
        return {
            "step": step,
            "diag_abs_w_mean": w,
            "diag_churn": churn,
            "diag_hallucinated_grad_norm": 10.0 * w,
            "diag_live_fraction_per_stage": live,
        }

    runs = [
        {
            "row": "dnw",
            "seed": 0,
            "records": [
                {"epoch": 1, **record(4, 3.0, 0.5, [0.25, 0.5]), "diag_steps": [record(2, 1.5, 0.75, [1.0, 0.5])]}
            ],
        },
        {"row": "rg", "seed": 0, "records": [{"epoch": 1, **record(4, 0.3, 0.0, [0.75, 1.0])}]},
        {"row": "complete", "seed": 0, "records": [{"epoch": 1, "step": 4, "test_top1": 50.0}]},  # not diagnosed
    ]
    table = diagnostics_table(runs)
    assert [(e["row"], e["record"], e["step"]) for e in table] == [
        ("dnw", "step", 2),
        ("dnw", "epoch", 4),
        ("rg", "epoch", 4),
    ]
    assert table[0]["live_fraction_stage0"] == 1.0 and table[1]["live_fraction_stage0"] == 0.25
    path = write_diagnostics_csv(runs, tmp_path / "diagnostics.csv")
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("row,seed,record,step,epoch,abs_w_mean")
    figure = plot_diagnostics(table, tmp_path / "diagnostics.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_diagnostics_summary_averages_seeds_per_row_at_the_kept_steps_and_the_last_epoch():
    from rewire.experiments.mobilenet_dnw.diagnostics_figure import diagnostics_summary

    def entry(row, seed, record, step=None, epoch=None, w=0.0, churn=math.nan):
        return {"row": row, "seed": seed, "record": record, "step": step, "epoch": epoch, "abs_w_mean": w,
                "churn": churn}  # fmt: skip

    table = [
        entry("dnw", 0, "step", step=5, w=1.0, churn=0.5), entry("dnw", 1, "step", step=5, w=3.0, churn=0.1),
        entry("dnw", 0, "step", step=7, w=99.0),  # not a kept step
        entry("dnw", 0, "epoch", epoch=1, w=10.0), entry("dnw", 0, "epoch", epoch=2, w=20.0),
        entry("dnw", 1, "epoch", epoch=2, w=-4.0, churn=0.2),
        entry("rg", 0, "step", step=5, w=0.25),
    ]  # fmt: skip
    summary = {(r["row"], r["at"]): r for r in diagnostics_summary(table, steps=(5,))}
    assert set(summary) == {("dnw", "step 5"), ("dnw", "last epoch"), ("rg", "step 5")}
    assert summary[("dnw", "step 5")]["abs_w_mean"] == 2.0 and summary[("dnw", "step 5")]["seeds"] == 2
    assert summary[("dnw", "step 5")]["churn"] == pytest.approx(0.3)
    # the last epoch of each seed (epoch 2 for both), not epoch 1: (20 + (-4)) / 2; a NaN churn is left out
    assert summary[("dnw", "last epoch")]["abs_w_mean"] == 8.0 and summary[("dnw", "last epoch")]["churn"] == 0.2
    assert summary[("rg", "step 5")]["abs_w_mean"] == 0.25 and summary[("rg", "step 5")]["seeds"] == 1
    assert [r["at"] for r in diagnostics_summary(table, steps=(5,)) if r["row"] == "dnw"] == ["step 5", "last epoch"]
