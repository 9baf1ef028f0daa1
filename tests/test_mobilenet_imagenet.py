"""DNW Table 3 (rewire.experiments.imagenet.dnw) and DPF's ImageNet ResNet-50 preset (rewire.experiments.imagenet.dpf).

Counter golden values at 224 px, the rows against the paper, the recipes field by field, the error messages, and
smoke trainings on a synthetic image folder (tests/test_imagefolder.py's ``make_folder``: 2 classes x 4 train +
2 val images of 40x48, cropped to 32 px).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_imagefolder import make_folder

from rewire.data.imagefolder import ImageFolderLayoutError, scan_image_folder
from rewire.experiments.imagenet import dnw, folders
from rewire.experiments.imagenet import dpf as dpf_imagenet
from rewire.experiments.imagenet.dnw import (
    TABLE3_HPARAMS,
    TABLE3_ROWS,
    build_row_model,
    row_by_key,
    table3_counts,
    table3_hparams,
    train_table3_row,
    trainable_rows,
)
from rewire.methods.dnw_profile import profile_graph
from rewire.models.mobilenet_dnw import MobileNetV1DNW
from rewire.models.resnet_imagenet import resnet50

SMOKE = dict(crop_size=32, resize_size=36, num_workers=0, device="cpu", progress=False)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imagenet"
    make_folder(root, constant=False, train=4, val=2, classes=("ant", "bee"))
    return root


# ------------------------------------------------------------------------------------------- the counter


@pytest.fixture(scope="module")
def counts():
    torch.set_num_threads(1)
    return {c.row.key: c for c in table3_counts()}


def test_counter_golden_values_at_224_px(counts):
    # dense MobileNetV1 x0.25: Howard et al.'s 41M multiply-adds, 0.46M weights (Table 3 rounds to 0.5M)
    assert counts["mobilenet_x25"].flops == pytest.approx(41.030272, abs=1e-6)
    assert counts["mobilenet_x25"].params == pytest.approx(0.4646, abs=1e-4)
    assert counts["mobilenet_x5"].flops == pytest.approx(149.497088, abs=1e-6)  # paper 149M
    # RG x0.225: paper 1.2M / 55.7M
    assert 55.65 <= counts["rg_x225"].flops <= 55.75
    assert 1.22 <= counts["rg_x225"].params <= 1.24
    # the paper's RG "x0.49" (170M) is the authors' d = 0.51; d = 0.49 gives about 159M
    assert 169.5 <= counts["rg_x51"].flops <= 169.7
    assert 158.7 <= counts["rg_x49"].flops <= 158.9
    assert abs(counts["rg_x51"].flops - 170) < abs(counts["rg_x49"].flops - 170)
    # edge budgets (Section 2.4): x0.225 = 104 + 1,245 + 4,977 + 72,991 + 79,627; Small adds 0.225 * 1024 * 1000
    assert counts["dnw_x225"].real_edges == 158_944 == counts["rg_x225"].real_edges
    assert counts["dnw_small_x225"].real_edges == 158_944 + 230_400
    # DNW rows need a trained model; quoted rows are paper numbers only
    assert counts["dnw_x225"].params is None and counts["dnw_x225"].flops is None
    assert counts["shufflenetv2_x5"].flops is None and counts["shufflenetv2_x5"].row.quoted


def test_rg_count_depends_on_the_seed_only_through_stage_0():
    """Stage 0 has 104 random edges among 32 x 64 entries: a seed whose edges miss some of the 32 input nodes
    skips their stem channel and depthwise convolution at 112 px (about 0.45M multiply-adds each)."""
    torch.set_num_threads(1)
    row = row_by_key("rg_x225")
    profiles = [profile_graph(build_row_model(row, seed=s)) for s in (1, 2)]
    assert [p.stem_live_channels for p in profiles] == [30, 32]
    assert [round(p.macs / 1e6, 1) for p in profiles] == [55.7, 56.6]
    assert all(1.22e6 <= p.params <= 1.24e6 for p in profiles)


def test_profile_of_an_untrained_dnw_model_is_the_random_graph_count():
    """A DNW row's count comes from its model. At initialisation (uniform random weights) the top-k edges are as
    random as RG's, so nearly every node is live and the count is RG's (~56M); the paper's 42.1M for x0.225
    comes from the nodes that die in training."""
    torch.set_num_threads(1)
    model = build_row_model("dnw_x225", seed=0)
    profile = dnw.profile_trained("dnw_x225", model)
    assert profile.real_edges == 158_944
    assert 55.5e6 < profile.macs < 56.7e6
    assert profile.classifier_params == 1_025_000  # the dense 1024 x 1000 classifier dominates Params (1.1M)


# ---------------------------------------------------------------------------------------------- the rows


def test_rows_match_the_paper():
    rows = {r.key: r for r in TABLE3_ROWS}
    assert len(TABLE3_ROWS) == 23  # 22 rows of the paper + the d = 0.51 reading of RG x0.49
    expected = {  # key: (params M, FLOPs M, top-1 %) from DNW Table 3
        "mobilenet_x25": (0.5, 41, 50.6),
        "rg_x225": (1.2, 55.7, 53.3),
        "dnw_small_x15": (0.24, 22.1, 50.3),
        "dnw_small_x225": (0.4, 41.2, 59.9),
        "dnw_x225": (1.1, 42.1, 60.9),
        "dnw_x3": (1.3, 66.7, 65.0),
        "mobilenet_x5": (1.3, 149, 63.7),
        "rg_x49": (1.8, 170, 64.1),
        "rg_x51": (1.8, 170, 64.1),
        "dnw_x49": (1.8, 154, 70.4),
        "mnasnet_search1": (1.9, 65, 64.9),
        "shufflenetv2_x5": (1.4, 41, 60.3),
        "shufflenetv2_x1": (2.3, 146, 69.4),
        "mobilenetv2_x15": (None, 39, 44.9),
    }
    for key, (params, flops, top1) in expected.items():
        assert (rows[key].paper_params, rows[key].paper_flops, rows[key].paper_top1) == (params, flops, top1), key
    assert trainable_rows() == [
        "mobilenet_x25",
        "rg_x225",
        "dnw_small_x15",
        "dnw_small_x225",
        "dnw_x225",
        "dnw_x3",
        "mobilenet_x5",
        "rg_x49",
        "rg_x51",
        "dnw_x49",
    ]
    assert {(r.key, r.width, r.small, r.kind) for r in TABLE3_ROWS if r.key.startswith("dnw")} == {
        ("dnw_small_x15", 0.15, True, "dnw"),
        ("dnw_small_x225", 0.225, True, "dnw"),
        ("dnw_x225", 0.225, False, "dnw"),
        ("dnw_x3", 0.3, False, "dnw"),
        ("dnw_x49", 0.49, False, "dnw"),
    }
    assert rows["rg_x51"].width == 0.51 and "0.51" in rows["rg_x51"].note
    assert all(r.quoted == (r.kind == "other") for r in TABLE3_ROWS)


def test_recipe_fields_are_exact():
    h = TABLE3_HPARAMS
    assert (h.epochs, h.optimizer, h.lr, h.momentum, h.nesterov) == (250, "sgd", 0.1, 0.9, False)
    assert (h.weight_decay, h.no_weight_decay_on, h.label_smoothing) == (5e-5, (), 0.0)
    assert (h.schedule, h.schedule_step, h.warmup_epochs) == ("cosine", "iteration", 0.0)
    assert dnw.TABLE3_BATCH_SIZE == 512
    short = table3_hparams(3)
    assert short.epochs == 3 and short.lr == 0.1 and short.lr_at(3, 0, 10) == pytest.approx(0.0)
    assert short.lr_at(1, 5, 10) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 1.5 / 3)))


# ------------------------------------------------------------------------------------------- bad input


def test_unknown_row_lists_the_rows(folder, tmp_path):
    with pytest.raises(ValueError, match="unknown Table 3 row 'dnw_x7'; trainable rows: mobilenet_x25, rg_x225"):
        train_table3_row("dnw_x7", folder, checkpoint_root=tmp_path / "ck")
    with pytest.raises(ValueError, match="quoted from the paper"):
        train_table3_row("shufflenetv2_x5", folder, checkpoint_root=tmp_path / "ck")


def test_impossible_width_is_the_edge_budget_error(folder, tmp_path):
    with pytest.raises(ValueError, match=r"gives stage 0 .* choose d in \(0, 1.0000\]"):
        train_table3_row("dnw_x225", folder, width=1.5, checkpoint_root=tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_malformed_folder_shows_the_expected_layout(tmp_path, capsys):
    bad = tmp_path / "bad"
    (bad / "train" / "ant").mkdir(parents=True)
    with pytest.raises(ImageFolderLayoutError, match="expected layout") as error:
        train_table3_row("dnw_x225", bad, checkpoint_root=tmp_path / "ck")
    assert "val/ is missing" in str(error.value)
    assert not (tmp_path / "ck").exists()
    code = dnw.main(["--data", str(bad), "--row", "dnw_x225", "--checkpoints", str(tmp_path / "ck")])
    assert code == 2 and "expected layout" in capsys.readouterr().err
    code = dnw.main(["--data", str(bad), "--row", "nope"])
    assert code == 2 and "trainable rows: mobilenet_x25" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ smoke


def test_smoke_dnw_x225_one_epoch_then_skipped(folder, tmp_path):
    torch.set_num_threads(1)
    kwargs = dict(checkpoint_root=tmp_path / "ck", epochs=1, batch_size=4, seed=0, **SMOKE)
    first = train_table3_row("dnw_x225", folder, **kwargs)
    assert first.run.trained_now
    record = json.loads((first.run.run_dir / "record.json").read_text())
    assert record["config"]["row"] == "dnw_x225" and record["config"]["stem_stride"] == 2
    assert record["model"] == {
        "name": "mobilenet_v1_dnw",
        "num_classes": 2,
        "kwargs": {"stem_stride": 2, "small": False},
    }
    assert record["epochs"] == 1 and "test_top1" in record["final"]
    assert isinstance(first.run.model, MobileNetV1DNW) and first.run.model.stem.stride == (2, 2)
    assert first.profile.real_edges == 158_944  # the count is at 224 px, whatever the training crop
    assert first.profile.image_size == 224 and 0 < first.macs < 60e6
    second = train_table3_row("dnw_x225", folder, **kwargs)
    assert not second.run.trained_now and second.run.run_dir == first.run.run_dir
    assert second.macs == first.macs


# ------------------------------------------------------------------------------------------ DPF ImageNet


def test_resnet50_is_the_paper_model():
    model = resnet50()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # Table 3 caption: 25.56 M
    assert isinstance(list(model.modules())[-1], torch.nn.Linear) and model.fc.out_features == 1000


@pytest.mark.parametrize("sparsity, remaining, reached", [(0.8, 6.79e6, 0.735), (0.9, 4.45e6, 0.826)])
def test_remaining_params_reproduce_table3_columns(sparsity, remaining, reached):
    """Only the convolutions are pruned: Table 3's remaining parameters and 'Reached' ratio follow."""
    got_remaining, got_reached = dpf_imagenet.remaining_params(resnet50(), sparsity)
    assert got_remaining == pytest.approx(remaining, abs=0.01e6)
    assert got_reached == pytest.approx(reached, abs=0.001)
    for row in dpf_imagenet.paper_rows("dpf", sparsity) + dpf_imagenet.paper_rows("incremental", sparsity):
        assert (row.remaining_params, row.reached) == (remaining / 1e6, reached)


def test_dpf_imagenet_preset_and_paper_rows():
    p = dpf_imagenet.PRESET
    assert (p["epochs"], p["batch_size"], p["lr"], p["warmup_start_lr"], p["warmup_epochs"]) == (90, 1024, 0.4, 0.1, 5)
    assert (p["milestones"], p["gamma"], p["weight_decay"], p["momentum"], p["nesterov"]) == (
        (30, 60, 80),
        0.1,
        1e-4,
        0.9,
        True,
    )
    assert set(dpf_imagenet.SOURCES) == set(p)
    h = dpf_imagenet.hparams()
    assert h.lr_at(0, 0, 100) == pytest.approx(0.1)  # warm-up starts at 0.1 ...
    assert h.lr_at(2, 50, 100) == pytest.approx(0.1 + 0.3 * 2.5 / 5)  # ... rises linearly per iteration ...
    assert h.lr_at(5, 0, 100) == pytest.approx(0.4)  # ... reaches 0.4 after 5 epochs
    assert h.lr_at(29, 99, 100) == pytest.approx(0.4) and h.lr_at(30, 0, 100) == pytest.approx(0.04)
    assert h.lr_at(60, 0, 100) == pytest.approx(0.004) and h.lr_at(80, 0, 100) == pytest.approx(0.0004)
    schedule = dpf_imagenet.sparsity_schedule(0.9)
    assert (schedule.end, schedule.frequency) == (60.0, 1.0)
    dpf = {r.target: r for r in dpf_imagenet.paper_rows("dpf")}
    assert (dpf[0.8].top1_pruned, dpf[0.8].top5_pruned, dpf[0.9].top1_pruned, dpf[0.9].top5_pruned) == (
        75.48,
        92.59,
        74.55,
        92.13,
    )
    assert len(dpf_imagenet.PAPER_TABLE3) == 8
    assert all(r.quoted_from == "Mostafa & Wang (2019)" for r in dpf_imagenet.paper_rows("dsr"))
    # the differences are the paper's, verbatim; one of them does not match its own columns (74.55 - 75.95 = -1.40)
    inconsistent = [
        (r.method, r.target)
        for r in dpf_imagenet.PAPER_TABLE3
        if not math.isclose(r.top1_pruned - r.top1_dense, r.top1_difference, abs_tol=0.011)
        or not math.isclose(r.top5_pruned - r.top5_dense, r.top5_difference, abs_tol=0.011)
    ]
    assert inconsistent == [("dpf", 0.9)] and dpf[0.9].top1_difference == -1.44


def test_dpf_bad_method_is_refused_before_any_work(folder, tmp_path):
    with pytest.raises(ValueError, match="unknown method 'snip'; DPF Table 3's methods here: dense, dpf"):
        dpf_imagenet.train_point("snip", 0.8, folder, checkpoint_root=tmp_path / "ck")
    with pytest.raises(ValueError, match="needs a target sparsity"):
        dpf_imagenet.train_point("dpf", 0.0, folder, checkpoint_root=tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_smoke_dpf_resnet50_two_steps_then_skipped(folder, tmp_path):
    """Two epochs of one step each (batch 8 = the whole folder), mask updated every step: the ramp ends at epoch 1."""
    torch.set_num_threads(1)
    kwargs = dict(
        checkpoint_root=tmp_path / "ck", epochs=2, batch_size=8, update_every=1, seed=0, eval_every=2, **SMOKE
    )
    first = dpf_imagenet.train_point("dpf", 0.8, folder, **kwargs)
    assert first["trained_now"] and first["epochs"] == 2
    assert first["reached_sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert (first["result"].run_dir / "record.json").exists()
    second = dpf_imagenet.train_point("dpf", 0.8, folder, **kwargs)
    assert not second["trained_now"] and second["run_dir"] == first["run_dir"]


def test_subset_index_is_class_balanced_and_deterministic(folder, capsys):

    index = scan_image_folder(folder)
    part = folders.subset_index(index, max_train_images=4, max_val_images=2)
    assert part.labels["train"].tolist() == [0, 0, 1, 1] and part.labels["val"].tolist() == [0, 1]
    assert [f.decode() for f in part.files["train"]] == [
        "train/ant/img0.jpg",
        "train/ant/img1.png",
        "train/bee/img0.jpg",
        "train/bee/img1.png",
    ]
    with pytest.raises(ValueError, match="max_train_images must be a positive int"):
        folders.subset_index(index, max_train_images=0)
    code = dpf_imagenet.main(["--data", str(folder), "--method", "snip", "--sparsity", "0.8"])
    assert code == 2 and "unknown method 'snip'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ several processes


def test_the_table3_cli_trains_one_row_on_two_processes(folder, tmp_path):
    """torchrun + gloo, 2 CPU processes: each decodes its half of every global batch (DistributedSampler), the
    engine trains data-parallel, rank 0 alone writes the run (world_size 2) and the summary."""
    import os
    import subprocess
    import sys

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    from test_distributed import free_port

    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TQDM_DISABLE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONWARNINGS": "ignore",
    }
    if "GLOO_SOCKET_IFNAME" not in env and os.path.exists("/sys/class/net/lo"):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    summary = tmp_path / "summary.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), "-m", "rewire.experiments.imagenet.dnw", "--data", str(folder),
        "--row", "dnw_x225", "--epochs", "1", "--batch-size", "4", "--workers", "0", "--crop-size", "32",
        "--resize-size", "36", "--checkpoints", str(tmp_path / "ck"), "--out", str(summary),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = (tmp_path / "ck").iterdir()
    record = json.loads((run_dir / "record.json").read_text())
    assert record["world_size"] == 2 and record["epochs"] == 1
    assert json.loads(summary.read_text())["row"] == "dnw_x225"


def test_a_global_batch_the_processes_cannot_split_is_refused_before_any_work(folder):
    from rewire.train.distributed import DistContext

    two = DistContext(0, 0, 2, "gloo", torch.device("cpu"))
    with pytest.raises(ValueError, match="cannot be split into 2 equal shards"):
        folders.make_loaders(scan_image_folder(folder), 5, seed=0, device=torch.device("cpu"), distributed=two)
