"""benchmarks/robust_five_seeds.py: the cpu block on 5 seeds, its single-seed rows left on seed 0."""

from pathlib import Path

from scripts import load_script

from rewire.experiments import scales as params_module
from rewire.experiments.robust_binary import Config, plan

ROOT = Path(__file__).resolve().parents[1]
bench = load_script("benchmarks/robust_five_seeds.py")


def test_the_claims_rows_run_on_five_seeds_and_the_single_seed_rows_stay_on_seed_0():
    _, values = params_module.stage_values("robust_binary", str(ROOT / "params.yaml"), "cpu")
    five = Config.from_values(bench.five_seed_values(values, [0, 1, 2, 3, 4]))
    seeds = {}
    for spec in plan(five):
        seeds.setdefault(spec.row, []).append(spec.seed)
    for row in ("ours_p01", "ours_p1", "ours_nolbn", "ours_pgd", "binary_connect_small"):
        assert seeds[row] == [0, 1, 2, 3, 4], row
    for row in ("dense_at", "finetune", "vanilla_p01", "vanilla_p1"):
        assert seeds[row] == [0], row
    assert values["seeds"] == [0, 1, 2]  # the stage's block is not changed
    # seeds 0-2 are the stage's runs: the same names and settings, so they are found again by their hash
    three = {(s.row, s.seed): s for s in plan(Config.from_values(values))}
    for spec in plan(five):
        if (spec.row, spec.seed) in three:
            assert spec == three[(spec.row, spec.seed)]
