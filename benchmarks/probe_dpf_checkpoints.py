"""What DPF's final weights look like beside Incremental's: read from the `dpf_runs` stage's checkpoints.

After ``dvc repro dpf_runs`` (checkpoints in ``checkpoints/dpf_sweeps``), for every run of the methods asked
(default: DPF and Incremental) trained for ``--epochs`` epochs (the main grid's; the budget entries train
other lengths), it reads the final dense weights and masks of every pruned layer and writes, per run:

- ``filters_without_kept_weight`` / ``filters``: output filters whose mask keeps no weight at all. Such a
  filter feeds its batch norm a zero-variance channel, whose gradient is multiplied by gamma / sqrt(eps)
  (the SFP mechanism of ``rewire.methods.dpf``); none means that mechanism is not at work;
- ``kept_abs_mean`` / ``kept_abs_max``: |w| of the kept weights; ``pruned_abs_mean`` / ``pruned_abs_max``:
  |w| of the pruned ones (DPF keeps training them, Algorithm 1; Incremental's stay at zero);
- ``smallest_kept_abs``: the global magnitude threshold the last mask update used (DPF's mask is global);
- ``pruned_within_10pct_of_threshold_pct``: the share of pruned weights within 10 % below that threshold.

Writes ``benchmarks/results/dpf_checkpoints.json`` (numbers the DPF page quotes). No training.

    python benchmarks/probe_dpf_checkpoints.py [--checkpoints checkpoints/dpf_sweeps] [--epochs 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from rewire.io import write_json

ORIGINAL, MASK = ".parametrizations.weight.original", ".parametrizations.weight.0.mask"
NEAR_THRESHOLD = 0.10  # "within 10 % below the threshold" (our choice, for a share that is easy to read)


def describe(state: dict[str, torch.Tensor]) -> dict[str, float]:
    """The numbers of the module docstring for one checkpoint's model ``state``."""
    kept, pruned, dead, filters = [], [], 0, 0
    for key, weight in state.items():
        if not key.endswith(ORIGINAL):
            continue
        mask = state[key.replace(ORIGINAL, MASK)].bool()
        alive = mask.flatten(1).any(dim=1)
        dead += int((~alive).sum())
        filters += alive.numel()
        kept.append(weight[mask].abs().flatten())
        pruned.append(weight[~mask].abs().flatten())
    if not kept:
        raise ValueError("no parametrized (masked) layer in this checkpoint: is it a sparse run?")
    kept_all, pruned_all = torch.cat(kept), torch.cat(pruned)
    threshold = float(kept_all.min())
    near = pruned_all >= (1 - NEAR_THRESHOLD) * threshold
    return {
        "filters_without_kept_weight": dead,
        "filters": filters,
        "kept_abs_mean": float(kept_all.mean()),
        "kept_abs_max": float(kept_all.max()),
        "pruned_abs_mean": float(pruned_all.mean()) if pruned_all.numel() else 0.0,
        "pruned_abs_max": float(pruned_all.max()) if pruned_all.numel() else 0.0,
        "smallest_kept_abs": threshold,
        "pruned_within_10pct_of_threshold_pct": 100.0 * float(near.float().mean()) if pruned_all.numel() else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", default="checkpoints/dpf_sweeps")
    parser.add_argument("--methods", nargs="+", default=["dpf", "incremental"])
    parser.add_argument("--epochs", type=int, default=40, help="the runs' training length (the main grid's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dpf_checkpoints.json"))
    args = parser.parse_args()

    root = Path(args.checkpoints)
    if not root.is_dir():
        raise SystemExit(f"{root} does not exist: run `dvc repro dpf_runs` first (or pass --checkpoints)")
    runs: dict[str, dict] = {}
    for method in args.methods:
        for run in sorted(root.glob(f"{method}-seed*")):
            record = json.loads((run / "record.json").read_text(encoding="utf-8"))
            if record.get("hparams", {}).get("epochs") != args.epochs or not (run / "checkpoint.pt").exists():
                continue
            state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
            seed = run.name.split("-seed")[1].split("-")[0]
            runs[f"{method}-seed{seed}"] = {"method": method, "seed": int(seed), **describe(state)}
    if not runs:
        raise SystemExit(f"no {args.methods} runs of {args.epochs} epochs with a checkpoint under {root}")
    summary = {}
    for method in args.methods:
        mine = [r for r in runs.values() if r["method"] == method]
        if mine:
            summary[method] = {
                key: statistics.fmean(r[key] for r in mine) for key in mine[0] if key not in ("method", "seed")
            } | {"runs": len(mine)}
    write_json(args.out, {"epochs": args.epochs, "checkpoints": str(root), "runs": runs, "mean": summary})
    for method, values in summary.items():
        print(method, {k: round(v, 4) for k, v in values.items()})


if __name__ == "__main__":
    main()
