"""Each method's training cost relative to dense, measured in one process as a paired benchmark (issue 20, point 6).

Stage wall times on a shared machine compare runs made at different moments under different loads; here every
method trains in the same process, in rounds: in each round every method runs ``steps`` training steps on the
same batches (the real :class:`rewire.train.Trainer` loop with the method's callbacks, so per-step mask updates,
straight-through gradients, dropout draws and the per-epoch hooks (SM's prune-and-regrow, Incremental's update)
are all in the time), the order of the methods rotating from round to round. A method's cost in a round is its
time over dense's in the same round; its cost ratio is the mean of those paired ratios with a Student-t 95 %
interval (:func:`rewire.reporting.claims.interval`). One untimed round first warms caches and allocators.

A timed "epoch" here is ``steps`` steps; a real epoch has more, so per-epoch hooks weigh a little more here than
in training (stated beside the table). The models start from their initialisation (accuracy does not change
the cost of a step), the learning-rate schedule does not enter, and nothing is written.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import pandas as pd

from rewire.reporting.claims import MIN_SEEDS, interval

__all__ = ["WARMUP_ROUNDS", "step_costs", "interleaved", "cost_ratios"]

WARMUP_ROUNDS = 1  # untimed rounds before the timed ones (our choice: first calls allocate and pick kernels)
_NEVER = 10**9  # epochs of the timing trainers: no evaluation is ever due, no ramp check can fail


def interleaved(
    workers: dict[str, Callable[[], None]], rounds: int, *, warmup: int = WARMUP_ROUNDS, clock=time.perf_counter
) -> dict[str, list[float]]:
    """Seconds of each worker's call, per timed round; round r starts at worker r mod n (rotating order)."""
    names = list(workers)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            started = clock()
            workers[name]()
            elapsed = clock() - started
            if index >= warmup:
                seconds[name].append(elapsed)
    return seconds


def cost_ratios(seconds: dict[str, Sequence[float]], reference: str = "dense") -> pd.DataFrame:
    """Per method: the mean of its per-round time over ``reference``'s, its 95 % interval (NaN under
    :data:`~rewire.reporting.claims.MIN_SEEDS` rounds), the median ratio and the mean seconds per round."""
    if reference not in seconds:
        raise ValueError(f"the cost ratios need the reference {reference!r} among the timed methods {list(seconds)}")
    base = list(seconds[reference])
    rows = []
    for method, values in seconds.items():
        values = list(values)
        if len(values) != len(base):
            raise ValueError(f"{method} has {len(values)} timed rounds, {reference} {len(base)}; they are paired")
        ratios = [v / b for v, b in zip(values, base)]
        mean, low, high = (
            interval(ratios) if len(ratios) >= MIN_SEEDS else (sum(ratios) / len(ratios), float("nan"), float("nan"))
        )
        rows.append(
            {
                "method": method,
                "cost_ratio": mean,
                "cost_low": low,
                "cost_high": high,
                "cost_median": float(pd.Series(ratios).median()),
                "seconds_per_round": sum(values) / len(values),
                "rounds": len(values),
            }
        )
    return pd.DataFrame(rows)


def step_costs(ctx, methods: Sequence[str], sparsity: float, steps: int, rounds: int) -> dict[str, list[float]]:
    """Seconds of ``steps`` training steps of every method at ``sparsity``, per timed round (:func:`interleaved`).

    ``ctx`` is the runs' :class:`~rewire.experiments.benchmark.runs.BenchmarkContext`; every method gets a fresh
    model of its first seed with the method attached (:func:`rewire.experiments.benchmark.runs.attach`) and a
    trainer over the same ``steps`` batches of the training images (fewer when the subset is smaller)."""
    from rewire import data as rdata
    from rewire.experiments.benchmark.runs import attach, recipe
    from rewire.train.runtime import Seeds
    from rewire.train.trainer import Trainer

    seed = ctx.recipe.seeds[0]
    seeds = Seeds.from_run_seed(seed)
    hparams = dataclasses.replace(recipe(ctx), epochs=_NEVER, eval_every=_NEVER)
    count = min(steps * ctx.batch_size, len(ctx.data.train_labels))
    mean, std = rdata.normalisation_for(ctx.data.name)
    workers = {}
    for method in methods:
        model = ctx.fresh_model(seed)
        callbacks = attach(ctx, method, model, sparsity, seed)
        loader = rdata.BatchLoader(
            ctx.data.train_images[:count],
            ctx.data.train_labels[:count],
            ctx.batch_size,
            shuffle=True,
            augment=True,
            mean=mean,
            std=std,
            device=ctx.device,
            order_seed=seeds.data_order,
            augmentation_seed=seeds.augmentation,
            drop_last=True,
        )
        trainer = Trainer(model, hparams, loader, loader, callbacks=callbacks, progress=False)
        for callback in trainer.callbacks:
            callback.on_fit_start(trainer)
        workers[method] = trainer._train_one_epoch  # the Trainer has no public one-epoch call (see the report)
    return interleaved(workers, rounds)
