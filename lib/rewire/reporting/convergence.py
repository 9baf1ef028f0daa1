"""Did a run converge, and does it sit at chance? The gate a claim's verdict passes before it is read.

A paired interval (:mod:`rewire.reporting.claims`) says whether one side beats the other *at the end of
the budget*; when a side is still learning, or never learned, the interval measures the budget, not the
method (issue 20, point 1). Two checks per run, both pure functions of the run's per-epoch records
(``history.json``'s ``epochs``, :class:`rewire.train.Trainer`; ``RunResult.records`` of the run engine):

**Converged** (:class:`ConvergenceTest`), both of

1. *the training loss has flattened*: over the last ``loss_window`` of the epochs (a fifth by default:
   ``ceil(loss_window * epochs)`` epochs, at least one) the per-epoch training loss changed by less than
   ``loss_rel_change`` of its value before the window: ``|L_end - L_before| / |L_before| < loss_rel_change``.
   A rise counts like a fall (a loss that climbs at the end is not settled either);
2. *the held-out accuracy is at its best*: the last evaluated accuracy is within a margin of the best
   evaluated one: ``val_margin_pts`` percentage points, or ``val_margin_sds`` binomial standard deviations of
   the best accuracy on the ``accuracy_examples`` held-out images where that is larger
   (:meth:`ConvergenceTest.accuracy_margin`). On 600 validation images one standard deviation of a 55 %
   accuracy is 2 points: a fixed 1-point margin there fails converged runs on sampling noise alone (the cpu
   benchmark, issue 20), while on 5,000 images or more the 1 point decides. It reads ``val_top1`` (the validation split) when the
   records have it, else ``test_top1``, and the verdict names which: reading the test set here selects
   nothing (the claim still reads the final epoch), it only decides whether to decide.

A run with fewer than ``min_epochs`` recorded epochs is "not converged: too few epochs"; one without any
accuracy is "not converged: no accuracy recorded". Limitation, stated: with a schedule that decays the
learning rate to zero (cosine) the loss flattens at the end however short the training, so criterion 1 is
necessary, not sufficient; criterion 2 and the at-chance check catch part of the rest.

**At chance** (:func:`at_chance`): a final top-1 no more than ``margin`` points above 100 / classes
(DPF's SFP run at 10.09 % on CIFAR-10 is, issue 20). :func:`chance_margin` sizes the margin from the
number of test images: three binomial standard deviations of an accuracy at chance (0.9 points on
10,000 images, 10 classes; 9 points on the smoke scale's 100).

The thresholds are this repository's choice (stated in every claims table through
:meth:`ConvergenceTest.describe`): a 2 % change over the last fifth, and 1 point, the smallest
difference the claims resolve (:data:`rewire.reporting.claims.DEFAULT_MARGIN`), widened to two binomial
standard deviations where the held-out set is too small to resolve a point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ConvergenceTest",
    "Convergence",
    "at_chance",
    "chance_margin",
    "DEFAULT_CHANCE_MARGIN_PTS",
    "CHANCE_SDS",
    "MIN_EPOCHS",
    "VAL_MARGIN_SDS",
    "held_out_examples",
]

MIN_EPOCHS = 3  # fewer recorded epochs leave no "before the window" and no trend to judge (our choice)
DEFAULT_CHANCE_MARGIN_PTS = 1.0  # ~3 binomial sds at chance on 10,000 test images and 10 classes (0.9 pt)
CHANCE_SDS = 3.0  # chance_margin: standard deviations of an accuracy at chance (our choice)
VAL_MARGIN_SDS = (
    2.0  # ConvergenceTest: binomial sds of the best held-out accuracy, a floor under the margin (our choice)
)
EXAMPLES_KEYS = {"val_top1": "validation_examples", "test_top1": "test_examples"}  # a record's config.data
ACCURACY_KEYS = ("val_top1", "test_top1")  # read in this order: the validation split first


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` for a missing / NaN entry (an epoch not evaluated)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Convergence:
    """One run's convergence verdict, its reason in words and the numbers it measured.

    ``at_chance`` is ``None`` when the chance check was not asked for (no ``num_classes``).
    """

    converged: bool
    reason: str
    test: str
    epochs: int
    window_epochs: int | None = None
    loss_before_window: float | None = None
    loss_final: float | None = None
    loss_rel_change: float | None = None
    accuracy_key: str | None = None
    accuracy_final: float | None = None
    accuracy_best: float | None = None
    accuracy_margin: float | None = None
    accuracy_examples: int | None = None
    at_chance: bool | None = None
    chance_accuracy: float | None = None

    @property
    def usable(self) -> bool:
        """Converged and not at chance: a run a verdict may rest on."""
        return self.converged and not self.at_chance

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_fraction(name: str, value: float, *, above: float, at_most: float | None, example: str) -> None:
    number = _number(value)
    too_high = at_most is not None and number is not None and number > at_most
    if number is None or number <= above or too_high:
        valid = f"> {above:g}" + (f" and <= {at_most:g}" if at_most is not None else "")
        raise ValueError(f"ConvergenceTest {name}={value!r} is impossible: it must be {valid}, e.g. {name}={example}")


@dataclass(frozen=True)
class ConvergenceTest:
    """The stated test (module docstring): loss flat over the last ``loss_window`` of training and the final
    held-out accuracy within ``val_margin_pts`` of its best; impossible thresholds stop at construction."""

    loss_window: float = 0.2  # the last fifth of training (issue 20)
    loss_rel_change: float = 0.02  # changed by less than 2 % of its value (our choice)
    val_margin_pts: float = 1.0  # within 1 point of the best: claims.DEFAULT_MARGIN (our choice)
    min_epochs: int = MIN_EPOCHS
    val_margin_sds: float = VAL_MARGIN_SDS  # or 2 binomial sds of the best accuracy, where larger (our choice)

    def __post_init__(self) -> None:
        _check_fraction("loss_window", self.loss_window, above=0.0, at_most=1.0, example="0.2 (the last fifth)")
        _check_fraction("loss_rel_change", self.loss_rel_change, above=0.0, at_most=None, example="0.02 (2 %)")
        margin = _number(self.val_margin_pts)
        if margin is None or margin < 0:
            raise ValueError(
                f"ConvergenceTest val_margin_pts={self.val_margin_pts!r} is impossible: it must be >= 0 "
                f"percentage points, e.g. val_margin_pts=1.0"
            )
        sds = _number(self.val_margin_sds)
        if sds is None or sds < 0:
            raise ValueError(
                f"ConvergenceTest val_margin_sds={self.val_margin_sds!r} is impossible: it must be >= 0 binomial "
                f"standard deviations, e.g. val_margin_sds={VAL_MARGIN_SDS} (0: the fixed margin alone)"
            )
        if isinstance(self.min_epochs, bool) or not isinstance(self.min_epochs, int) or self.min_epochs < 2:
            raise ValueError(
                f"ConvergenceTest min_epochs={self.min_epochs!r} is impossible: a trend needs an int >= 2 epochs, "
                f"e.g. min_epochs={MIN_EPOCHS}"
            )

    def describe(self) -> str:
        """The test in words, for a table's caption."""
        return (
            f"converged: training loss changed by < {100 * self.loss_rel_change:g} % over the last "
            f"{100 * self.loss_window:g} % of the epochs, and the final held-out top-1 (validation, else test) "
            f"within {self.val_margin_pts:g} point(s) of its best (or {self.val_margin_sds:g} binomial standard "
            f"deviations of the best on the held-out images, where larger); at least {self.min_epochs} epochs"
        )

    def accuracy_margin(self, best: float, examples: int | None) -> float:
        """Points the final held-out accuracy may sit below its ``best`` (%): ``val_margin_pts``, or
        ``val_margin_sds`` binomial standard deviations ``100 sqrt(a (1 - a) / n)`` of an accuracy ``a`` =
        ``best`` / 100 on ``examples`` = n images where larger; the fixed margin alone when n is unknown."""
        if examples is None:
            return float(self.val_margin_pts)
        if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
            raise ValueError(f"examples={examples!r}: give the number of held-out images (>= 1), e.g. 5000")
        a = min(max(best / 100.0, 0.0), 1.0)
        return max(float(self.val_margin_pts), self.val_margin_sds * 100.0 * math.sqrt(a * (1.0 - a) / examples))

    def window_epochs(self, epochs: int) -> int:
        """Epochs in the loss window: ``ceil(loss_window * epochs)``, at least 1 and leaving one epoch before it."""
        window = math.ceil(round(self.loss_window * epochs, 9))
        return min(max(window, 1), epochs - 1)

    def judge(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        accuracy_key: str | None = None,
        num_classes: int | None = None,
        chance_margin_pts: float = DEFAULT_CHANCE_MARGIN_PTS,
        final_key: str = "test_top1",
        accuracy_examples: int | None = None,
    ) -> Convergence:
        """The verdict for one run's per-epoch ``records`` (each with ``train_loss``; accuracies where evaluated).

        ``accuracy_key``: the held-out accuracy to read (default: ``val_top1`` if any record has it, else
        ``test_top1``). With ``num_classes`` the last ``final_key`` value is also checked against chance.
        ``accuracy_examples``: the number of images that accuracy was measured on (:meth:`accuracy_margin`;
        :func:`held_out_examples` reads it from a run record); without it the margin is ``val_margin_pts``.
        """
        test = self.describe()
        records = list(records)
        chance = {}
        if num_classes is not None:
            finals = [v for v in (_number(r.get(final_key)) for r in records) if v is not None]
            if finals:
                chance = {
                    "at_chance": at_chance(finals[-1], num_classes, chance_margin_pts),
                    "chance_accuracy": 100.0 / num_classes,
                }
        losses = [_number(r.get("train_loss")) for r in records]
        if len(records) < self.min_epochs:
            reason = f"too few epochs ({len(records)} recorded, the test needs {self.min_epochs})"
            return Convergence(False, reason, test, len(records), **chance)
        if any(loss is None for loss in losses):
            epoch = losses.index(None) + 1
            reason = f"training loss missing or not finite at epoch {epoch}"
            return Convergence(False, reason, test, len(records), **chance)
        window = self.window_epochs(len(records))
        before, final = losses[-1 - window], losses[-1]
        change = abs(final - before) / abs(before) if before != 0 else (0.0 if final == 0 else math.inf)
        loss = {
            "window_epochs": window,
            "loss_before_window": before,
            "loss_final": final,
            "loss_rel_change": change,
        }
        key = accuracy_key or next(
            (k for k in ACCURACY_KEYS if any(_number(r.get(k)) is not None for r in records)), None
        )
        accuracies = [v for v in (_number(r.get(key)) for r in records) if v is not None] if key else []
        if not accuracies:
            reason = f"no accuracy recorded ({accuracy_key or ' or '.join(ACCURACY_KEYS)})"
            return Convergence(False, reason, test, len(records), **loss, accuracy_key=key, **chance)
        best = max(accuracies)
        margin = self.accuracy_margin(best, accuracy_examples)
        accuracy = {
            "accuracy_key": key,
            "accuracy_final": accuracies[-1],
            "accuracy_best": best,
            "accuracy_margin": margin,
            "accuracy_examples": accuracy_examples,
        }
        problems = []
        if change >= self.loss_rel_change:
            problems.append(
                f"training loss changed {100 * change:.1f} % over the last {window} epoch(s) "
                f"({before:.3f} -> {final:.3f}; limit {100 * self.loss_rel_change:g} %)"
            )
        gap = accuracy["accuracy_best"] - accuracy["accuracy_final"]
        if gap > margin:
            on = f" on {accuracy_examples:,} images" if accuracy_examples else ""
            problems.append(
                f"final {key} {accuracy['accuracy_final']:.2f} is {gap:.2f} points below its best "
                f"{accuracy['accuracy_best']:.2f} (margin {margin:.2f}{on})"
            )
        if problems:
            return Convergence(False, "; ".join(problems), test, len(records), **loss, **accuracy, **chance)
        reason = (
            f"training loss changed {100 * change:.1f} % over the last {window} epoch(s); "
            f"final {key} {gap:.2f} points below its best"
        )
        return Convergence(True, reason, test, len(records), **loss, **accuracy, **chance)


def held_out_examples(data: Mapping[str, Any] | None, accuracy_key: str | None = None) -> int | None:
    """The images behind ``accuracy_key``'s accuracy from a run record's ``config.data`` (``validation_examples``
    for ``val_top1``, ``test_examples`` for ``test_top1``; without a key the validation split if it has images,
    else the test set, as :meth:`ConvergenceTest.judge` picks), or ``None`` where the record does not say."""
    if not data:
        return None
    keys = [EXAMPLES_KEYS[accuracy_key]] if accuracy_key in EXAMPLES_KEYS else list(EXAMPLES_KEYS.values())
    for name in keys:
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def at_chance(accuracy: float, num_classes: int, margin: float = DEFAULT_CHANCE_MARGIN_PTS) -> bool:
    """Whether a top-1 ``accuracy`` (%) is no more than ``margin`` points above chance, 100 / ``num_classes``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: chance needs an int >= 2 classes, e.g. num_classes=10")
    if _number(margin) is None or margin < 0:
        raise ValueError(f"margin={margin!r}: it must be >= 0 percentage points, e.g. margin=1.0")
    value = _number(accuracy)
    if value is None or not 0.0 <= value <= 100.0:
        raise ValueError(f"accuracy={accuracy!r}: a top-1 in percent must lie in [0, 100], e.g. accuracy=10.09")
    return value <= 100.0 / num_classes + margin


def chance_margin(num_classes: int, test_examples: int, sds: float = CHANCE_SDS) -> float:
    """``sds`` binomial standard deviations (in points) of the accuracy of a classifier at chance on
    ``test_examples`` images: ``100 * sds * sqrt(p (1 - p) / n)`` with ``p = 1 / num_classes``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: chance needs an int >= 2 classes, e.g. num_classes=10")
    if isinstance(test_examples, bool) or not isinstance(test_examples, int) or test_examples < 1:
        raise ValueError(f"test_examples={test_examples!r}: give the number of test images (>= 1), e.g. 10000")
    if _number(sds) is None or sds < 0:
        raise ValueError(f"sds={sds!r}: it must be >= 0 standard deviations, e.g. sds=3.0")
    p = 1.0 / num_classes
    return 100.0 * sds * math.sqrt(p * (1.0 - p) / test_examples)
