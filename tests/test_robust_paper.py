"""The appendix numbers of Liu et al. (NeurIPS 2022) as transcribed in rewire.experiments.robust_binary.paper."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from rewire.experiments.robust_binary import paper as rp


def test_row_counts():
    assert len(rp.TABLE7) == 2
    assert len(rp.TABLE8) == 7 * 2 * 2
    assert len(rp.TABLE9) == 30 * 2
    assert len(rp.TABLE10) == 13 * 3
    assert len(rp.TABLE11) == 12 * 3


def test_rows_are_frozen():
    for row in (rp.TABLE7[0], rp.TABLE8[0], rp.TABLE9[0], rp.TABLE10[0], rp.TABLE6_EXAMPLE, rp.APPENDIX_A4):
        with pytest.raises(dataclasses.FrozenInstanceError):
            row.p = 0.5  # type: ignore[misc]


def test_table7_values():
    small01, small10 = rp.table7(0.1), rp.table7(1.0)
    assert small01.variant == "Small RN34-p0.1"
    assert (small01.conv1_channels, small01.stage_channels, small01.num_params) == (23, (23, 25, 27, 29), 201078)
    assert (small10.conv1_channels, small10.stage_channels, small10.num_params) == (6, (6, 13, 26, 51), 216360)
    assert small01.stage_blocks == (3, 4, 6, 3) and small01.num_classes == 10


def _rn34_params(c1: int, widths: tuple[int, ...], blocks: tuple[int, ...], ncls: int) -> tuple[int, int]:
    """(conv + fc weights with 1x1 shortcuts and no bias, number of BN channels) of a basic-block RN34."""
    weights, bn, cin = 3 * 9 * c1, c1, c1
    for w, n in zip(widths, blocks):
        for _ in range(n):
            weights += 9 * cin * w + 9 * w * w
            bn += 2 * w
            if cin != w:
                weights += cin * w
                bn += w
            cin = w
    return weights + cin * ncls, bn


def test_table7_param_counts_match_widths():
    # The full RN34 (64..512) gives the D.1 count exactly; the small variants add 2 per BN channel.
    assert _rn34_params(64, (64, 128, 256, 512), (3, 4, 6, 3), 10)[0] == rp.TEXT_NUMBERS["rn34_trainable_params"]
    for row in rp.TABLE7:
        weights, bn = _rn34_params(row.conv1_channels, row.stage_channels, row.stage_blocks, row.num_classes)
        assert weights + 2 * bn == row.num_params


def test_table8_values():
    assert rp.table8(0.0, "signed_kc", False).clean_top1 == 93.25
    assert rp.table8(0.0, "binary", True).clean_top1 == 94.05
    assert rp.table8(0.1, "binary", True).clean_top1 == 93.99
    assert rp.table8(0.2, "signed_kc", True).clean_top1 == 94.35
    assert rp.table8(0.2, "binary", False).clean_top1 == 89.27
    assert rp.table8(0.9, "binary", True).clean_top1 == 90.12
    assert rp.table8(1.0, "binary", False).clean_top1 == 87.58
    assert rp.table8(1, "signed_kc", True).clean_top1 == 89.12
    assert {r.p for r in rp.TABLE8} == set(rp.TABLE8_P_VALUES)


def test_table8_best_cell_is_signed_kc_lbn_p02():
    best = max(rp.TABLE8, key=lambda r: r.clean_top1)
    assert (best.p, best.init, best.lbn, best.clean_top1) == (0.2, "signed_kc", True, 94.35)


def _one(rows):
    assert len(rows) == 1, rows
    return rows[0]


def test_table9_values():
    at = _one(rp.table9_rows("CIFAR10", "AT", "RN34"))
    assert (at.fp_robust_top1, at.binary_robust_top1, at.pruning_strategy, at.p) == (43.26, 40.34, "Not Pruned", None)
    ours = _one(rp.table9_rows("CIFAR10", "Ours", "RN34-LBN", p=0.1))
    assert (ours.fp_robust_top1, ours.binary_robust_top1) == (None, 45.06)
    assert _one(rp.table9_rows("CIFAR100", "Ours (fast)", p=1.0)).binary_robust_top1 == 24.97
    assert _one(rp.table9_rows("CIFAR100", "ATMC", "RN34", p=1.0)).binary_robust_top1 == 2.53
    assert _one(rp.table9_rows("CIFAR100", "HYDRA", "RN34-LBN", p=0.1)).fp_robust_top1 == 13.63
    rst = _one(rp.table9_rows("CIFAR100", "RST", "RN34-LBN"))
    assert (rst.fp_robust_top1, rst.binary_robust_top1, rst.p) == (23.14, None, 1.0)
    small = _one(rp.table9_rows("CIFAR10", "TRADES", "Small RN34-p1.0"))
    assert (small.fp_robust_top1, small.binary_robust_top1) == (38.53, 24.83)
    assert len(rp.table9_rows(method="ATMC")) == 6 * 2
    assert len(rp.table9_rows(dataset="CIFAR10")) == 30


def test_table10_values():
    atmc = rp.table10_rows("CIFAR10", "ATMC")
    assert _one([r for r in atmc if r.pruning_strategy == "Global"]).fp_clean_top1 == 81.85
    ours_fast = _one(rp.table10_rows("CIFAR100", "Ours (fast)"))
    assert (ours_fast.fp_clean_top1, ours_fast.binary_clean_top1) == (None, 63.73)
    assert _one(rp.table10_rows("ImageNet100", "Ours (fast)")).binary_clean_top1 is None
    assert _one(rp.table10_rows("ImageNet100", "Ours")).binary_clean_top1 == 58.94
    assert _one(rp.table10_rows("ImageNet100", "HYDRA")).fp_clean_top1 == 67.76
    assert _one(rp.table10_rows("CIFAR100", "AT", "Small RN34")).binary_clean_top1 == 28.81
    bcs = _one(rp.table10_rows("ImageNet100", "BCS"))
    assert (bcs.fp_clean_top1, bcs.binary_clean_top1) == (None, None)
    assert all(r.table == 10 for r in rp.TABLE10)


def test_table11_values():
    assert _one(rp.table11_rows("CIFAR10", "Ours")).binary_clean_top1 == 93.99
    assert _one(rp.table11_rows("ImageNet100", "Ours")).binary_clean_top1 == 72.80
    assert _one(rp.table11_rows("CIFAR100", "AT", "RN34-LBN")).binary_clean_top1 == 73.49
    assert _one(rp.table11_rows("ImageNet100", "ATMC", p=0.1)).fp_clean_top1 == 70.12
    assert _one(rp.table11_rows("CIFAR10", "RST", "RN34")).fp_clean_top1 == 88.43
    with pytest.raises(ValueError, match="Ours"):
        rp.table11_rows(method="Ours (fast)")  # printed in Tables 9 and 10 only
    assert rp.table11_rows("CIFAR10", "Ours", p=1.0) == ()  # known keys, absent combination
    assert all(r.table == 11 for r in rp.TABLE11)


def test_table11_ours_matches_table8():
    # Same setting (vanilla, binary init, LBN, p = 0.1, CIFAR10) printed in two tables.
    assert _one(rp.table11_rows("CIFAR10", "Ours")).binary_clean_top1 == rp.table8(0.1, "binary", True).clean_top1


def test_quoted_is_exactly_the_external_baselines():
    assert rp.QUOTED_METHODS == {"HYDRA", "FlyingBird", "FlyingBird+", "BCS", "RST", "ATMC"}
    for rows in (rp.TABLE9, rp.TABLE10, rp.TABLE11):
        assert {r.method for r in rows if r.quoted} == rp.QUOTED_METHODS
        assert {r.method for r in rows if not r.quoted} <= {"AT", "TRADES", "Ours", "Ours (fast)"}


def test_lookups_raise_value_error():
    with pytest.raises(ValueError, match="Table 7"):
        rp.table7(0.5)
    with pytest.raises(ValueError, match="init"):
        rp.table8(0.1, "kaiming", True)
    with pytest.raises(ValueError, match="p=0.3"):
        rp.table8(0.3, "binary", True)
    with pytest.raises(ValueError, match="lbn"):
        rp.table8(0.1, "binary", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dataset 'ImageNet100'"):
        rp.table9_rows(dataset="ImageNet100")
    with pytest.raises(ValueError, match="method"):
        rp.table9_rows(method="SNIP")
    with pytest.raises(ValueError, match="architecture"):
        rp.table10_rows(architecture="RN18")
    with pytest.raises(ValueError, match="p = 0.5"):
        rp.table11_rows(p=0.5)


def test_table6_worked_example():
    ex = rp.TABLE6_EXAMPLE
    ratios = rp.table6_ratios(ex.pruning_rate_r, ex.kernel_size_c, ex.in_channels, ex.feature_map_size_s)
    assert [round(x, 4) for x in ratios] == [ex.forward_train_ratio, ex.forward_eval_ratio, ex.backward_ratio]
    assert (ex.forward_train_ratio, ex.forward_eval_ratio, ex.backward_ratio) == (0.6616, 0.5740, 0.7065)
    assert [round(100 * (1 - x)) for x in ratios] == [34, 43, 29]


def test_appendix_a4():
    a4 = rp.APPENDIX_A4
    assert a4.num_weights == 589824 and a4.pruning_rate_r == 0.99
    assert round(rp.a4_expected_kernels(3, a4.num_weights, a4.pruning_rate_r), 2) == a4.kernels_with_3_kept == 8.19
    assert round(rp.a4_expected_kernels(4, a4.num_weights, a4.pruning_rate_r), 2) == a4.kernels_with_4_kept == 0.18
    with pytest.raises(ValueError):
        rp.a4_expected_kernels(0, a4.num_weights, a4.pruning_rate_r)


def test_text_numbers_and_figure4():
    assert rp.FIGURE4.panels_a_to_d_pruning_rate == 0.99 and rp.FIGURE4.panels_e_to_h_pruning_rate == 0.5
    assert (rp.FIGURE4.best_p_at_r099, rp.FIGURE4.best_p_at_r05) == (0.1, 1.0)
    assert int((1 - 0.99) * 3 * 64 * 9) == rp.TEXT_NUMBERS["a11_kept_params_conv3to64_k3_r099"] == 17
    assert rp.EPSILON_LINF["CIFAR10"] == Fraction(8, 255)
    assert rp.TABLE9_PRUNING_RATE == rp.TABLE11_PRUNING_RATE == 0.99 and rp.TABLE10_PRUNING_RATE is None


def test_captions():
    assert set(rp.CAPTIONS) == {6, 7, 8, 9, 10, 11}
    for number, caption in rp.CAPTIONS.items():
        assert caption.startswith(f"Table {number}:")
    assert "epsilon = 0" in rp.TABLE11_CAPTION and "CIFAR10" in rp.TABLE8_CAPTION


def test_the_numbers_are_data_read_from_paper_yaml(tmp_path):
    """paper.yaml holds the numbers; the module only reads them (editing a number is editing data, not code)."""
    text = rp.PAPER_FILE.read_text(encoding="utf-8")
    assert "0.0: [93.25, 93.99, 93.64, 94.05]" in text
    edited = tmp_path / "paper.yaml"
    edited.write_text(text.replace("0.0: [93.25,", "0.0: [99.99,"), encoding="utf-8")
    assert rp.load_numbers(edited)["table8"]["rows"][0.0][0] == 99.99
    assert rp.load_numbers()["table8"]["rows"][0.0][0] == 93.25 == rp.table8(0.0, "signed_kc", False).clean_top1


def test_neither_the_quoted_numbers_nor_the_report_enter_a_runs_code_hash():
    from rewire.experiments.engine import module_closure

    closure = set(module_closure(["rewire.experiments.robust_binary.runs"]))
    package = "rewire.experiments.robust_binary"
    assert {f"{package}.{m}" for m in ("runs", "callbacks", "config", "plan", "masks")} <= closure
    assert not {f"{package}.{m}" for m in ("paper", "report", "evaluation", "analysis")} & closure
