"""Pure learning-rate schedule functions: endpoints and midpoints of their formulas."""

import math

import pytest

from rewire.train.schedules import cosine_factor, linear_warmup_factor, lr_factor, multistep_factor


def test_cosine_endpoints_and_midpoint():
    assert cosine_factor(0, 10) == 1.0
    assert cosine_factor(5, 10) == pytest.approx(0.5)
    assert cosine_factor(10, 10) == pytest.approx(0.0)
    assert cosine_factor(2.5, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine_factor(12, 10) == pytest.approx(0.0)  # clamped after the end


def test_multistep_counts_passed_milestones():
    assert [multistep_factor(t, (150, 225), 0.1) for t in (0, 149.9, 150, 224, 225, 300)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


def test_linear_warmup():
    assert linear_warmup_factor(0, 5, 0.25) == 0.25
    assert linear_warmup_factor(2.5, 5, 0.25) == pytest.approx(0.625)
    assert linear_warmup_factor(5, 5, 0.25) == 1.0
    assert linear_warmup_factor(3, 0, 0.25) == 1.0


def test_lr_factor_combines_warmup_and_decay_and_rejects_unknown():
    assert lr_factor(1, schedule="cosine", total=10, warmup=2, warmup_start_factor=0.0) == pytest.approx(
        0.5 * cosine_factor(1, 10)
    )
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, schedule="poly", total=10)
