"""Appendix A of Liu et al., *Robust Binary Models by Pruning Randomly-initialized Networks* (rewire.experiments.robust_binary.analysis).

Golden values are the paper's numbers (Appendix A.2 ratios, Appendix A.4 kernel counts) or
hand computations written out below; Theorems A.1/A.2 are checked by brute force over every
integer allocation of small asymmetric layer sizes.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from rewire.experiments.robust_binary import analysis as ra

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [(4, 7, 12), (5, 9, 11, 6), (12, 4, 8), (10, 10, 5), (4, 12, 6, 9), (3, 11)]


# ------------------------------------------------------------------------ A.1 objectives


def test_objectives_by_hand():
    # C(4,1) C(8,2) C(12,3) = 4 * 28 * 220
    assert ra.search_space_bound((4, 8, 12), (1, 2, 3)) == 24640
    assert ra.search_space_bound((5, 9), (0, 9)) == 1
    assert ra.path_count_bound((4, 8, 12), (1, 2, 3)) == 6
    assert ra.path_count_bound((4, 8, 12), (0, 5, 3)) == 0


def test_allocations_enumerates_every_composition():
    # m1 + m2 + m3 = 6, m1 <= 4: C(8, 2) = 28 compositions minus (5,.,.) x2 and (6,0,0)
    allocs = list(ra.allocations((4, 8, 12), 6))
    assert len(allocs) == 25 == len(set(allocs))
    assert all(sum(a) == 6 and a[0] <= 4 for a in allocs)
    assert list(ra.allocations((2, 1), 3)) == [(2, 1)]
    assert list(ra.allocations((2, 1), 0)) == [(0, 0)]


def test_brute_force_golden():
    res = ra.brute_force_best((4, 8, 12), 6, "search_space")
    assert res == ra.BruteForceResult(24640, ((1, 2, 3),), 25)
    res = ra.brute_force_best((4, 8, 12), 15, "path_count")
    assert res.best_value == 120 and res.maximisers == ((4, 5, 6), (4, 6, 5))
    # a callable objective: minimise the largest layer's kept count
    res = ra.brute_force_best((4, 8, 12), 6, lambda n, m: -max(m))
    assert res.maximisers == ((2, 2, 2),)


# ------------------------------------------------------------------------ Theorem A.1


@pytest.mark.parametrize("sizes", CASES)
def test_theorem_a1_every_maximiser_satisfies_eq5(sizes):
    for budget in range(sum(sizes) + 1):
        res = ra.brute_force_best(sizes, budget, "search_space")
        assert all(ra.satisfies_eq5(sizes, m) for m in res.maximisers), (sizes, budget)
        # the exact discrete form: a common rate rho with rho(n_i+1) - 1 <= m_i <= rho(n_i+1)
        for m in res.maximisers:
            low = max(Fraction(mi, ni + 1) for mi, ni in zip(m, sizes))
            high = min(Fraction(mi + 1, ni + 1) for mi, ni in zip(m, sizes))
            assert low <= high, (sizes, budget, m)
        assert ra.search_space_optimum(sizes, budget) in res.maximisers


def test_eq5_checker_by_hand():
    # |1/4 - 5/8| = 3/8 = 1/4 + 1/8: not strictly below
    assert not ra.satisfies_eq5((4, 8), (1, 5))
    assert ra.satisfies_eq5((4, 8), (1, 4))  # |1/4 - 1/2| = 1/4 < 3/8


@pytest.mark.parametrize("sizes", CASES)
def test_fixed_rate_is_a_neighbour_of_the_optimum(sizes):
    for budget in range(sum(sizes) + 1):
        res = ra.brute_force_best(sizes, budget, "search_space")
        fr = ra.fixed_rate_allocation(sizes, budget)
        assert sum(fr) == budget and ra.satisfies_eq5(sizes, fr)
        # at most one weight per layer from some maximiser
        assert min(max(abs(a - b) for a, b in zip(fr, m)) for m in res.maximisers) <= 1
        assert ra.search_space_bound(sizes, fr) >= 0.7 * res.best_value


@pytest.mark.parametrize(("sizes", "budget", "rate_alloc"), [((4, 8, 12), 6, (1, 2, 3)), ((4, 8, 12), 12, (2, 4, 6))])
def test_exact_fixed_rate_is_a_maximiser(sizes, budget, rate_alloc):
    assert ra.fixed_rate_allocation(sizes, budget) == rate_alloc
    assert rate_alloc in ra.brute_force_best(sizes, budget, "search_space").maximisers


def test_rounded_fixed_rate_can_miss_the_optimum():
    # shares 15 * (12, 4, 8) / 24 = (7.5, 2.5, 5): the tie goes to layer 0, the optimum puts it in layer 1
    assert ra.fixed_rate_allocation((12, 4, 8), 15) == (8, 2, 5)
    res = ra.brute_force_best((12, 4, 8), 15, "search_space")
    assert res.maximisers == ((7, 3, 5),)
    # C(12,8) C(4,2) C(8,5) = 495*6*56 vs C(12,7) C(4,3) C(8,5) = 792*4*56
    assert ra.search_space_bound((12, 4, 8), (8, 2, 5)) == 166320 and res.best_value == 177408


# ------------------------------------------------------------------------ Theorem A.2


@pytest.mark.parametrize("sizes", CASES)
def test_theorem_a2_maximisers_are_exactly_the_property(sizes):
    for budget in range(len(sizes), sum(sizes) + 1):
        res = ra.brute_force_best(sizes, budget, "path_count")
        prop = {a for a in ra.allocations(sizes, budget) if ra.satisfies_theorem_a2(sizes, a)}
        assert prop == set(res.maximisers), (sizes, budget)
        assert ra.fixed_count_allocation(sizes, budget) in res.maximisers


def test_fixed_count_by_hand():
    # 4 <= 15 // 3: layer 0 kept whole; 11 left over layers 1, 2 -> 6 and 5
    assert ra.fixed_count_allocation((4, 8, 12), 15) == (4, 6, 5)
    assert ra.fixed_count_allocation((12, 4, 8), 6) == (2, 2, 2)
    assert ra.fixed_count_allocation((3, 11), 14) == (3, 11)
    assert ra.fixed_count_allocation((3, 11), 0) == (0, 0)
    assert ra.satisfies_theorem_a2((5, 5), (3, 3)) and ra.satisfies_theorem_a2((2, 9), (2, 4))
    assert not ra.satisfies_theorem_a2((5, 5), (4, 2)) and not ra.satisfies_theorem_a2((5, 5), (5, 1))


def test_path_count_degenerate_below_one_per_layer():
    res = ra.brute_force_best((4, 8, 12), 2, "path_count")
    assert res.best_value == 0 and len(res.maximisers) == res.n_allocations


# ------------------------------------------------------------------------ A.2 Table 6


def test_table6_terms_by_hand():
    # r = 0.5, c = 3, s = 4, r_in = 2, r_out = 5: conv = 0.5*9*16*2*5 = 720, s^2 r_out = 80, c^2 r_in r_out = 90
    t = ra.table6_flops(0.5, 3, 4, 2, 5)
    assert t == {
        "fp_forward_train": 1440 + 880,
        "binary_forward_train": 720 + 880,
        "fp_forward_eval": 1440 + 320,
        "binary_forward_eval": 720 + 320,
        "fp_backward": 2880 + 320 + 90,
        "binary_backward": 2160 + 320,
    }


def test_table6_paper_example_ratios():
    q = ra.binary_flop_ratios(r=0.99, c=3, s=16, r_in=128, r_out=128)
    assert round(q.forward_train, 4) == 0.6616
    assert round(q.forward_eval, 4) == 0.5740
    assert round(q.backward, 4) == 0.7065
    # "save around 34% and 29% ... in the forward and backward passes during training; for inference 43%"
    assert (round(100 * (1 - q.forward_train)), round(100 * (1 - q.backward)), round(100 * (1 - q.forward_eval))) == (
        34,
        29,
        43,
    )


def test_table6_matches_the_closed_form_ratios():
    for r, c, s, r_in, r_out in [(0.99, 3, 16, 128, 128), (0.9, 5, 7, 64, 33), (0.0, 3, 8, 16, 16)]:
        q, a = ra.binary_flop_ratios(r, c, s, r_in, r_out), (1 - r) * c**2 * r_in
        assert q.forward_train == pytest.approx((a + 11) / (2 * a + 11), rel=1e-12)
        assert q.forward_eval == pytest.approx((a + 4) / (2 * a + 4), rel=1e-12)
        assert q.backward == pytest.approx(
            (3 * a * s**2 + 4 * s**2) / (4 * a * s**2 + 4 * s**2 + c**2 * r_in), rel=1e-12
        )
    # dense forward (training): (c^2 r_in + 11) / (2 c^2 r_in + 11) = 1163 / 2315
    assert ra.binary_flop_ratios(r=0.0).forward_train == pytest.approx(1163 / 2315, rel=1e-12)


def test_text_reading_of_the_backward_overhead_does_not_give_0_7065():
    # a dense score-gradient overhead 2 c^2 s^2 r_in r_out (the A.2 text) makes the saving < 1%
    assert round(ra.text_backward_ratio(), 4) == 0.9931


# ------------------------------------------------------------------------ A.3 last BN


def test_alpha_from_kaiming_constant_to_binary():
    assert ra.kaiming_constant_to_binary_scale(512) == 16.0
    assert ra.kaiming_constant_to_binary_scale(8) == 2.0


def test_last_batch_norm_is_torch_training_mode_bn():
    g = torch.Generator().manual_seed(5)
    o = torch.randn(64, 10, generator=g, dtype=torch.float64) * 3 + torch.arange(10, dtype=torch.float64)
    gamma, beta = (
        torch.rand(10, generator=g, dtype=torch.float64) + 0.5,
        torch.randn(10, generator=g, dtype=torch.float64),
    )
    bn = torch.nn.BatchNorm1d(10, affine=False, dtype=torch.float64).train()
    torch.testing.assert_close(ra.last_batch_norm(o), bn(o), rtol=1e-12, atol=1e-12)
    ref = torch.nn.functional.batch_norm(o, None, None, gamma, beta, training=True, eps=1e-5)
    torch.testing.assert_close(ra.last_batch_norm(o, 1e-5, gamma, beta), ref, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def lbn():
    return ra.lbn_gradient_experiment(alpha=16.0, seed=0)


def test_lbn_keeps_the_penultimate_gradient(lbn):
    assert lbn.n_correct + lbn.n_incorrect == 256 and lbn.n_correct > 50 and lbn.n_incorrect > 50
    assert lbn.lbn_max_rel_change_u < 1e-4 and lbn.lbn_max_rel_change_w1 < 1e-4  # BN eps = 1e-5 only
    assert abs(lbn.lbn_norm_ratio_u - 1) < 1e-4
    assert lbn.lbn_running_max_rel_change_u < 1e-12  # Eq. (8) with b' = alpha b, v' = alpha v


def test_lbn_invariance_is_exact_without_eps():
    for alpha, affine in [(16.0, False), (10.0, True)]:
        res = ra.lbn_gradient_experiment(alpha=alpha, eps=0.0, affine=affine, seed=1)
        assert res.lbn_max_rel_change_u < 1e-12 and res.lbn_max_rel_change_w1 < 1e-12
        assert res.lbn_running_max_rel_change_u < 1e-12


def test_without_lbn_correct_inputs_vanish_and_incorrect_saturate(lbn):
    assert lbn.plain_norm_ratio_correct_median < 0.1
    assert lbn.frac_near_zero_correct_alpha1 == 0.0 and lbn.frac_near_zero_correct_alpha > 0.4
    # incorrect inputs: softmax -> one-hot of the argmax, the gradient grows ~alpha-fold
    assert lbn.saturation_gap_incorrect_median_alpha1 > 0.3 and lbn.saturation_gap_incorrect_median_alpha < 1e-3
    assert 0.8 * 16 < lbn.plain_norm_ratio_incorrect_median < 2 * 16
    assert lbn.plain_norm_ratio_incorrect_min > 1
    # "converge to 0 exponentially with alpha"
    assert (
        ra.lbn_gradient_experiment(alpha=32.0).plain_norm_ratio_correct_median
        < 0.1 * lbn.plain_norm_ratio_correct_median
    )


# ------------------------------------------------------------------------ A.4 random kernels


def test_paper_numbers_come_from_eq10():
    assert round(ra.expected_kernels_with_kept(3, model="paper_eq10"), 2) == 8.19
    assert round(ra.expected_kernels_with_kept(4, model="paper_eq10"), 2) == 0.18
    # the paper's binomial before the Stirling step, and the exact laws of a random mask
    assert round(ra.expected_kernels_with_kept(3, model="paper_binomial"), 2) == 7.27
    assert round(ra.expected_kernels_with_kept(3, model="hypergeometric"), 2) == 5.18
    assert round(ra.expected_kernels_with_kept(4, model="hypergeometric"), 3) == 0.078


def test_hypergeometric_and_bernoulli_agree():
    # exact-count (hypergeometric) vs i.i.d. (Bernoulli) masks: within 0.2% for k <= 5 ...
    for k in range(6):
        h = ra.expected_kernels_with_kept(k, model="hypergeometric")
        b = ra.expected_kernels_with_kept(k, model="bernoulli")
        assert h == pytest.approx(b, rel=2e-3)
    # ... and equal to the two decimals of the paper's quoted counts (k = 3, 4)
    for k in (3, 4):
        h = ra.expected_kernels_with_kept(k, model="hypergeometric")
        assert round(h, 2) == round(ra.expected_kernels_with_kept(k, model="bernoulli"), 2)
    for model in ("hypergeometric", "bernoulli"):
        assert sum(ra.expected_kernels_with_kept(k, model=model) for k in range(10)) == pytest.approx(65536, rel=1e-9)


def test_hypergeometric_by_hand():
    # n = 18 (two 3x3 kernels), M = 9 kept: 2 * C(9,4) C(9,5) / C(18,9) = 2 * 126^2 / 48620
    assert ra.expected_kernels_with_kept(4, n=18, r=0.5) == pytest.approx(31752 / 48620, rel=1e-12)


def test_kept_per_kernel_histogram_by_hand():
    mask = torch.zeros(2, 3, 2, 2, dtype=torch.bool)
    mask[0, 0] = True  # 4 kept
    mask[0, 1, 0, 0] = True  # 1 kept
    mask[1, 2, 1] = True  # 2 kept
    assert ra.kept_per_kernel_histogram(mask).tolist() == [3, 1, 1, 0, 1]
    assert ra.kept_per_kernel_histogram(mask.float()).tolist() == [3, 1, 1, 0, 1]


def test_sampled_random_masks_follow_the_exact_law_not_eq10():
    sample = ra.sample_random_kernel_counts(seeds=range(120))
    assert (sample.histograms.sum(1) == 65536).all()
    assert ((sample.histograms * torch.arange(10)).sum(1) == 5898).all()
    for k in (1, 2, 3):
        expected = ra.expected_kernels_with_kept(k, model="hypergeometric")
        assert abs(sample.mean[k] - expected) < 4 * sample.standard_error[k], k
    e4 = ra.expected_kernels_with_kept(4, model="hypergeometric")
    assert abs(sample.mean[4] - e4) < 4 * math.sqrt(e4 / 120)
    for k in (2, 3):  # Eq. (10) and the paper's binomial are rejected by the samples
        for model in ("paper_eq10", "paper_binomial"):
            assert abs(sample.mean[k] - ra.expected_kernels_with_kept(k, model=model)) > 5 * sample.standard_error[k]


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ra.fixed_rate_allocation((4, -2), 1), "positive"),
        (lambda: ra.fixed_count_allocation((4, 0), 1), "positive"),
        (lambda: ra.brute_force_best((4, 8), 13, "search_space"), "larger than the total"),
        (lambda: ra.brute_force_best((4, 8), -1, "path_count"), "non-negative"),
        (lambda: ra.brute_force_best((4, 8), 3, "paths"), "unknown objective"),
        (lambda: ra.search_space_bound((4, 8), (5, 1)), r"outside \[0, 4\]"),
        (lambda: ra.path_count_bound((4, 8), (1,)), "1 entries"),
        (lambda: ra.fixed_rate_allocation((), 0), "at least one layer"),
        (lambda: ra.fixed_rate_allocation((4, 8), 2.5), "integer"),
        (lambda: ra.expected_kernels_with_kept(3, r=1.0), r"\(0, 1\)"),
        (lambda: ra.expected_kernels_with_kept(3, r=0.0), r"\(0, 1\)"),
        (lambda: ra.sample_random_kernel_counts(r=-0.1), r"\(0, 1\)"),
        (lambda: ra.expected_kernels_with_kept(3, n=100), "multiple"),
        (lambda: ra.expected_kernels_with_kept(0, model="paper_eq10"), "k >= 1"),
        (lambda: ra.binary_flop_ratios(r=1.0), r"\[0, 1\)"),
        (lambda: ra.table6_flops(0.5, 3, -4, 2, 5), "s must be positive"),
        (lambda: ra.kept_per_kernel_histogram(torch.ones(4, 9)), "conv mask"),
        (lambda: ra.kept_per_kernel_histogram(torch.full((1, 1, 3, 3), 2.0)), "0 or 1"),
        (lambda: ra.lbn_gradient_experiment(alpha=-1.0), "alpha"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
