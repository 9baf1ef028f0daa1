"""The convergence gate (rewire.reporting.convergence): hand-made histories with hand-computed changes."""

import math

import pytest

from rewire.reporting.convergence import (
    DEFAULT_CHANCE_MARGIN_PTS,
    ConvergenceTest,
    at_chance,
    chance_margin,
    held_out_examples,
)


def history(losses, accuracies, key="val_top1"):
    """Per-epoch records as the trainer writes them: ``train_loss`` every epoch, ``key`` where evaluated."""
    records = []
    for epoch, (loss, accuracy) in enumerate(zip(losses, accuracies), start=1):
        record = {"epoch": epoch, "train_loss": loss}
        if accuracy is not None:
            record[key] = accuracy
        records.append(record)
    return records


FLAT_ACCURACY = [30.0, 40.0, 45.0, 48.0, 49.0, 49.5, 50.0, 50.0, 50.2, 50.1]


def test_a_loss_still_falling_ten_percent_in_the_last_fifth_is_not_converged():
    # 10 epochs: the last fifth is epochs 9-10, judged from epoch 8's loss 1.0 to epoch 10's 0.9: -10 %
    losses = [2.0, 1.6, 1.4, 1.3, 1.2, 1.1, 1.05, 1.0, 0.95, 0.9]
    result = ConvergenceTest().judge(history(losses, FLAT_ACCURACY))
    assert not result.converged
    assert result.window_epochs == 2
    assert (result.loss_before_window, result.loss_final) == (1.0, 0.9)
    assert result.loss_rel_change == pytest.approx(0.1)
    assert "training loss changed 10.0 % over the last 2 epoch(s)" in result.reason


def test_a_flat_loss_with_accuracy_at_its_best_is_converged():
    # epoch 8 -> 10: 0.500 -> 0.495, a 1 % change (< 2 %); final val 50.1 is 0.1 below the best 50.2
    losses = [2.0, 1.2, 0.9, 0.7, 0.6, 0.55, 0.52, 0.5, 0.497, 0.495]
    result = ConvergenceTest().judge(history(losses, FLAT_ACCURACY))
    assert result.converged, result.reason
    assert result.loss_rel_change == pytest.approx(0.01)
    assert result.accuracy_key == "val_top1"
    assert (result.accuracy_final, result.accuracy_best) == (50.1, 50.2)
    assert result.at_chance is None  # not asked
    assert result.usable


def test_a_rising_loss_is_not_converged_either():
    losses = [2.0, 1.2, 0.9, 0.7, 0.6, 0.55, 0.52, 0.5, 0.53, 0.56]  # +12 % over the last fifth
    result = ConvergenceTest().judge(history(losses, FLAT_ACCURACY))
    assert not result.converged and result.loss_rel_change == pytest.approx(0.12)


def test_validation_accuracy_three_points_below_its_best_at_a_one_point_margin_is_not_converged():
    losses = [2.0, 1.2, 0.9, 0.7, 0.6, 0.55, 0.52, 0.5, 0.5, 0.5]  # flat: only the accuracy fails
    accuracies = [30.0, 40.0, 45.0, 48.0, 53.0, 52.0, 51.0, 50.0, 50.0, 50.0]  # best 53 at epoch 5, final 50
    result = ConvergenceTest(val_margin_pts=1.0).judge(history(losses, accuracies))
    assert not result.converged
    assert (result.accuracy_final, result.accuracy_best) == (50.0, 53.0)
    assert "3.00 points below its best 53.00 (margin 1.00)" in result.reason
    assert "training loss" not in result.reason  # the loss passed
    # the same history passes with a 3-point margin (the gap equals the margin: within it)
    assert ConvergenceTest(val_margin_pts=3.0).judge(history(losses, accuracies)).converged


def test_the_accuracy_read_is_validation_first_then_test_and_skips_unevaluated_epochs():
    losses = [2.0, 1.0, 0.8, 0.8, 0.8]
    records = history(losses, [None, 40.0, None, 45.0, 44.5], key="test_top1")  # eval_every 2 and the last
    result = ConvergenceTest().judge(records)
    assert result.accuracy_key == "test_top1" and result.converged
    assert (result.accuracy_final, result.accuracy_best) == (44.5, 45.0)
    for record, val in zip(records, [10.0, 20.0, 30.0, 40.0, 35.0]):
        record["val_top1"] = val  # a validation split: read instead of the test set, and 5 points below its best
    result = ConvergenceTest().judge(records)
    assert result.accuracy_key == "val_top1" and not result.converged
    nan_epochs = history(losses, [math.nan, 40.0, math.nan, 45.0, 44.5], key="test_top1")  # a CSV's empty cells
    assert ConvergenceTest().judge(nan_epochs).accuracy_best == 45.0


def test_too_few_epochs_and_missing_numbers_are_not_converged():
    short = ConvergenceTest().judge(history([1.0, 1.0], [50.0, 50.0]))
    assert not short.converged and short.reason.startswith("too few epochs (2 recorded, the test needs 3)")
    assert ConvergenceTest().judge(history([1.0, 1.0, 1.0], [50.0, 50.0, 50.0])).converged  # 3 is enough
    no_accuracy = ConvergenceTest().judge([{"train_loss": 1.0}] * 4)
    assert not no_accuracy.converged and "no accuracy recorded" in no_accuracy.reason
    diverged = ConvergenceTest().judge(history([1.0, 2.0, math.nan, math.nan], [50.0] * 4))
    assert not diverged.converged and "not finite at epoch 3" in diverged.reason


def test_the_window_is_the_ceiling_of_the_fraction_and_leaves_an_epoch_before_it():
    test = ConvergenceTest()
    assert [test.window_epochs(n) for n in (3, 5, 6, 10, 11, 15, 160)] == [1, 1, 2, 2, 3, 3, 32]
    assert ConvergenceTest(loss_window=1.0).window_epochs(4) == 3  # the whole run: from epoch 1's loss


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("loss_window", 0.0, "loss_window=0.0 is impossible: it must be > 0 and <= 1"),
        ("loss_window", 1.5, "loss_window=1.5 is impossible"),
        ("loss_window", -0.2, "loss_window=-0.2 is impossible"),
        ("loss_rel_change", -0.01, "loss_rel_change=-0.01 is impossible: it must be > 0"),
        ("loss_rel_change", 0.0, "loss_rel_change=0.0 is impossible"),
        ("loss_rel_change", math.nan, "loss_rel_change=nan is impossible"),
        ("val_margin_pts", -1.0, "val_margin_pts=-1.0 is impossible: it must be >= 0"),
        ("min_epochs", 1, "min_epochs=1 is impossible"),
        ("val_margin_sds", -2.0, "val_margin_sds=-2.0 is impossible: it must be >= 0"),
    ],
)
def test_an_impossible_threshold_stops_with_the_field_the_value_and_an_example(field, value, words):
    with pytest.raises(ValueError, match="e.g.") as error:
        ConvergenceTest(**{field: value})
    assert words in str(error.value)


def test_at_chance_reads_chance_plus_the_margin():
    assert at_chance(10.09, 10, DEFAULT_CHANCE_MARGIN_PTS)  # DPF's SFP at the cpu scale (issue 20)
    assert at_chance(11.0, 10, 1.0)  # the edge is inside
    assert not at_chance(11.01, 10, 1.0)
    assert not at_chance(10.09, 100, 1.0)  # on 100 classes chance is 1 %
    assert at_chance(1.5, 100, 1.0)
    with pytest.raises(ValueError, match="num_classes=1"):
        at_chance(50.0, 1, 1.0)
    with pytest.raises(ValueError, match="margin=-1"):
        at_chance(50.0, 10, -1.0)
    with pytest.raises(ValueError, match=r"accuracy=150.0: a top-1 in percent must lie in \[0, 100\]"):
        at_chance(150.0, 10, 1.0)  # a fraction passed as percent, or a percent of something else


def test_the_chance_margin_is_three_binomial_standard_deviations():
    # 10 classes, 10,000 images: 100 * 3 * sqrt(0.1 * 0.9 / 10000) = 0.9 points; 100 images: 9 points
    assert chance_margin(10, 10_000) == pytest.approx(0.9)
    assert chance_margin(10, 100) == pytest.approx(9.0)
    assert chance_margin(100, 10_000, sds=2.0) == pytest.approx(200 * math.sqrt(0.01 * 0.99 / 10_000))
    with pytest.raises(ValueError, match="test_examples=0"):
        chance_margin(10, 0)


def test_the_final_test_accuracy_is_checked_against_chance_when_classes_are_given():
    # SFP's case: the loss has flattened (a network at chance converges too) and the final test top-1 is 10.09 %
    records = history([2.31, 2.303, 2.3026, 2.3026, 2.3026], [10.0, 10.2, 10.1, 10.09, 10.09], key="test_top1")
    result = ConvergenceTest().judge(records, num_classes=10, chance_margin_pts=chance_margin(10, 10_000))
    assert result.converged and result.at_chance and result.chance_accuracy == 10.0
    assert not result.usable
    learned = history([2.0, 1.0, 0.8, 0.8, 0.8], [30.0, 50.0, 60.0, 61.0, 61.0], key="test_top1")
    assert ConvergenceTest().judge(learned, num_classes=10).at_chance is False


def test_the_accuracy_margin_widens_to_two_binomial_sds_on_a_small_held_out_set():
    # best 53 %, final 50 % (a 3-point gap), flat loss. On 600 images one sd of 53 % is
    # 100 sqrt(0.53 * 0.47 / 600) = 2.0376 points: the margin is 4.075 and the run converged (sampling noise);
    # on 5,000 images one sd is 0.7058: the margin is 1.412 and the 3-point drop is real
    losses = [2.0, 1.2, 0.9, 0.7, 0.6, 0.55, 0.52, 0.5, 0.5, 0.5]
    accuracies = [30.0, 40.0, 45.0, 48.0, 53.0, 52.0, 51.0, 50.0, 50.0, 50.0]
    small = ConvergenceTest().judge(history(losses, accuracies), accuracy_examples=600)
    assert small.converged, small.reason
    assert small.accuracy_margin == pytest.approx(2 * 100 * math.sqrt(0.53 * 0.47 / 600))
    assert small.accuracy_margin == pytest.approx(4.0751, abs=1e-4)
    assert small.accuracy_examples == 600
    large = ConvergenceTest().judge(history(losses, accuracies), accuracy_examples=5000)
    assert not large.converged
    assert large.accuracy_margin == pytest.approx(1.4117, abs=1e-4)
    assert "(margin 1.41 on 5,000 images)" in large.reason
    # the fixed 1 point is a floor: 2 sds on 100,000 images (0.32) do not narrow it
    assert ConvergenceTest().accuracy_margin(53.0, 100_000) == 1.0
    # without the count the margin is the fixed one, and 0 sds turn the widening off
    assert ConvergenceTest().judge(history(losses, accuracies)).accuracy_margin == 1.0
    assert ConvergenceTest(val_margin_sds=0.0).accuracy_margin(53.0, 600) == 1.0


def test_held_out_examples_reads_the_split_the_accuracy_was_measured_on():
    data = {"train_examples": 5400, "validation_examples": 600, "test_examples": 2000}
    assert held_out_examples(data, "val_top1") == 600
    assert held_out_examples(data, "test_top1") == 2000
    assert held_out_examples(data) == 600  # judge's default: validation first
    assert held_out_examples({"validation_examples": 0, "test_examples": 10000}) == 10000  # no validation split
    assert held_out_examples({}) is None and held_out_examples(None) is None
    with pytest.raises(ValueError, match="e.g. 5000"):
        ConvergenceTest().accuracy_margin(50.0, 0)
