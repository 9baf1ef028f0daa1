"""benchmarks/bench_stage_speed.py: the JSON's structure, the ratios to the fp32 baseline, failures recorded."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from scripts import load_script

from rewire.train.trainer import TrainingHparams

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "cifar10"
bench = load_script("benchmarks/bench_stage_speed.py")

EAGER_AND_BATCH = ["fp32", "bf16", "bf16_channels_last", "batch_x2_fp32", "batch_x2_best"]


def _tiny_case(name: str = "tiny", stage: str = "quickstart") -> "bench.Case":
    """A 2-layer conv net on 6 fixed batches of signed random images: every code path of a step in milliseconds."""

    def build(batch_size: int) -> "bench.Prepared":
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 10))  # fmt: skip
        g = torch.Generator().manual_seed(1)
        batches = [(torch.randn(batch_size, 3, 8, 8, generator=g) - 0.5, torch.randint(0, 10, (batch_size,), generator=g))
                   for _ in range(6)]  # fmt: skip
        return bench.Prepared(model, TrainingHparams(epochs=1, lr=0.1), batches)

    return bench.Case(name, stage, "tiny conv", "dense", 4, "fp32", build)


def _check_case(entry: dict, variants: list[str], batch_size: int) -> None:
    assert set(entry["variants"]) == set(variants)
    baseline = entry["variants"]["fp32"]
    assert baseline["ratio_to_fp32"] == 1.0  # exactly: x / x
    assert not baseline["bf16_autocast"] and not baseline["channels_last"] and not baseline["compiled"]
    for name, result in entry["variants"].items():
        assert result["images_per_second"] > 0, name
        assert result["ratio_to_fp32"] == pytest.approx(result["images_per_second"] / baseline["images_per_second"])
        assert result["batch_size"] == batch_size * (2 if name.startswith("batch_x2") else 1), name
        assert result["loss_finite"], name
    assert entry["best_eager"] in bench.EAGER
    assert entry["variants"]["bf16_channels_last"]["channels_last"] and entry["variants"]["bf16"]["bf16_autocast"]
    assert not entry["variants"]["bf16"]["channels_last"]


def test_measure_case_records_every_variant_with_its_ratio_to_the_fp32_baseline():
    entry = bench.measure_case(_tiny_case(), EAGER_AND_BATCH, steps=2, warmup=1, device=torch.device("cpu"),
                               log=lambda _: None)  # fmt: skip
    _check_case(entry, EAGER_AND_BATCH, batch_size=4)
    best = entry["variants"]["batch_x2_best"]
    assert best["best_eager"] == entry["best_eager"]
    flags = bench.VARIANTS[entry["best_eager"]][:2]
    assert (best["bf16_autocast"], best["channels_last"]) == flags


def test_a_compile_error_is_recorded_and_the_other_variants_go_on(monkeypatch):
    def refuse(model, *args, **kwargs):
        raise RuntimeError("no C++ compiler for inductor here")

    monkeypatch.setattr(bench.torch, "compile", refuse)
    entry = bench.measure_case(_tiny_case(), ["fp32", "compile_fp32", "bf16"], steps=1, warmup=1,
                               device=torch.device("cpu"), log=lambda _: None)  # fmt: skip
    failed = entry["variants"]["compile_fp32"]
    assert failed["error"] == "RuntimeError: no C++ compiler for inductor here"
    assert "images_per_second" not in failed and failed["compiled"]
    assert entry["variants"]["bf16"]["images_per_second"] > 0


def test_a_failing_builder_names_its_stage_and_the_others_are_measured(tmp_path, monkeypatch, capsys):
    if not DATA.exists():
        pytest.skip("the prepared CIFAR-10 cache (data/cifar10) is not here: `dvc pull` or `make data`")

    def broken(where):
        raise KeyError("no such block")

    monkeypatch.setattr(bench, "BUILDERS", {**bench.BUILDERS, "quickstart": lambda where: [_tiny_case()],
                                            "benchmark": broken})  # fmt: skip
    out = tmp_path / "speed.json"
    bench.main(["--quick", "--stages", "benchmark", "quickstart", "--variants", "fp32", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["stages"]["benchmark"]["error"] == "KeyError: 'no such block'"
    assert "benchmark: the builder failed, stage skipped: KeyError" in capsys.readouterr().err
    assert result["stages"]["tiny"]["variants"]["fp32"]["ratio_to_fp32"] == 1.0


@pytest.mark.skipif(not DATA.exists(), reason="the prepared CIFAR-10 cache (data/cifar10) is not here")
def test_quick_run_of_the_quickstart_writes_the_documented_json(tmp_path):
    out = tmp_path / "stage_speed.json"
    bench.main(["--quick", "--stages", "quickstart", "--variants", *EAGER_AND_BATCH, "--out", str(out)])
    result = json.loads(out.read_text())
    for key in ("date", "device", "torch", "data_source", "steps", "warmup", "variants", "stages"):
        assert key in result, key
    assert (result["steps"], result["warmup"], result["quick"]) == (bench.QUICK_STEPS, bench.QUICK_WARMUP, True)
    assert len(result["load_average"]["before"]) == len(result["load_average"]["after"]) == 3
    assert set(result["stages"]) == {"quickstart"}
    entry = result["stages"]["quickstart"]
    assert (entry["model"], entry["batch_size"], entry["stage_precision"]) == ("small_convnet(width=16)", 128, "fp32")
    _check_case(entry, EAGER_AND_BATCH, batch_size=128)
    again = entry["fp32_again_at_end"]  # the baseline once more, against the first: did the machine's speed change?
    assert again["ratio_to_first"] == again["images_per_second"] / entry["variants"]["fp32"]["images_per_second"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--stages", "quickstrat"], "--stages: quickstrat unknown; choose from quickstart"),
        (["--variants", "fp16"], "--variants: fp16 unknown; choose from fp32"),
        (["--steps", "0"], "--steps 0 / --warmup 3: both must be >= 1"),
    ],
)
def test_bad_options_stop_before_any_work_with_the_value_and_the_choices(argv, message, capsys, tmp_path):
    out = tmp_path / "never.json"
    with pytest.raises(SystemExit):
        bench.main([*argv, "--out", str(out)])
    assert message in capsys.readouterr().err
    assert not out.exists()
