"""The strongly convex toy problem of DPF's Theorem 4.1 (rewire.dpf_theory).

Exact properties on tiny float64 problems: the gradient, the minimiser, the mask,
δ_t (Eq. 1), the weights p_t, the DPF update (Section 3) and its reduction to SGD
at sparsity 0; Eq. (4) of the appendix for every SGD iterate; and the explicit
inequality that ends the proof of Theorem 4.1, which holds pathwise for
full-batch gradients (and, with the run's largest ||g_t||² for G², on the
realised stochastic runs by a wide margin).
"""

from __future__ import annotations

import pytest
import torch

from rewire.experiments import dpf_theory as dt
from rewire.sparse.masks import topk_mask

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem():
    return dt.make_problem(n=200, d=20, sparse_truth=0.1, reg=0.05, seed=0)


def test_problem_shapes_and_labels(problem):
    assert problem.X.shape == (200, 20) and problem.X.dtype == torch.float64
    assert set(problem.y.unique().tolist()) <= {-1.0, 1.0}
    assert problem.mu == 0.05
    # the planted vector is mostly, not exactly, sparse; the optimum is dense
    assert int((problem.w_true != 0).sum()) == 20
    assert int((problem.w_star.abs() > 1e-6).sum()) == 20


def test_make_problem_is_seeded():
    a, b = dt.make_problem(50, 8, 0.25, 0.1, seed=3), dt.make_problem(50, 8, 0.25, 0.1, seed=3)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y) and torch.equal(a.w_star, b.w_star)
    assert not torch.equal(a.X, dt.make_problem(50, 8, 0.25, 0.1, seed=4).X)


def test_gradient_matches_autograd(problem):
    torch.manual_seed(0)
    w = torch.randn(problem.d, dtype=torch.float64)
    batch = torch.tensor([3, 7, 7, 150, 0])
    for b in (None, batch):
        v = w.clone().requires_grad_(True)
        X, y = (problem.X, problem.y) if b is None else (problem.X[b], problem.y[b])
        objective = torch.log1p(torch.exp(-y * (X @ v))).mean() + 0.5 * problem.mu * (v @ v)
        (expected,) = torch.autograd.grad(objective, v)
        torch.testing.assert_close(problem.grad(w, b), expected, rtol=1e-12, atol=1e-14)
    v = w.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(problem.loss(v), v)
    torch.testing.assert_close(problem.grad(w), expected, rtol=1e-12, atol=1e-14)


def test_losses_vectorised_matches_loss(problem):
    W = torch.randn(7, problem.d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(problem.losses(W, chunk=3), torch.stack([problem.loss(w) for w in W]))


def test_minimiser_has_zero_gradient(problem):
    assert float(problem.grad(problem.w_star).norm()) < 1e-8
    assert problem.f_star == pytest.approx(float(problem.loss(problem.w_star)))
    # and it is the minimum: any perturbation is worse by at least (μ/2)||Δ||² (strong convexity)
    delta = 0.01 * torch.randn(problem.d, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    excess = float(problem.loss(problem.w_star + delta)) - problem.f_star
    assert excess >= 0.5 * problem.mu * float(delta @ delta) - 1e-12


def test_smoothness_bound_dominates_hessian(problem):
    for seed in range(3):
        w = 3 * torch.randn(problem.d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        eigenvalues = torch.linalg.eigvalsh(problem.hessian(w))
        assert float(eigenvalues.max()) <= problem.L + 1e-12
        assert float(eigenvalues.min()) >= problem.mu - 1e-12


@pytest.mark.parametrize("sparsity, k", [(0.0, 20), (0.5, 10), (0.9, 2), (0.99, 1)])
def test_mask_has_exactly_k_entries(problem, sparsity, k):
    assert dt.keep_count(problem.d, sparsity) == k
    run = dt.run_dpf(problem, sparsity, T=30, batch=4, seed=0)
    assert run.k == k
    assert (run.masks.sum(1) == k).all()
    for w, m in zip(run.iterates, run.masks):  # the mask is the top-k of |w_t| (rewire.masks.topk_mask)
        assert torch.equal(m, topk_mask(w.abs(), k))


def test_delta_matches_definition_and_lies_in_unit_interval(problem):
    run = dt.run_dpf(problem, 0.7, T=40, batch=4, seed=1)
    for t in (0, 1, 17, 40):
        w, m = run.iterates[t], run.masks[t]
        pruned = m * w
        norm2 = float(w @ w)
        expected = 0.0 if norm2 == 0 else float(((w - pruned) ** 2).sum()) / norm2
        assert float(run.delta[t]) == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert dt.pruning_quality(w, pruned) == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert float(run.neighbourhood[t]) == pytest.approx(expected * norm2, rel=1e-12, abs=1e-15)
    assert float(run.delta.min()) >= 0.0 and float(run.delta.max()) <= 1.0
    assert float(run.delta[0]) == 0.0  # w_0 = 0: nothing is lost


def test_theorem_weights_sum_to_one_and_average():
    for T in (0, 1, 5, 1000):
        p = dt.theorem_weights(T)
        assert len(p) == T + 1
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
        assert torch.equal(p, 2 * (torch.arange(T + 1, dtype=torch.float64) + 1) / ((T + 1) * (T + 2)))
    values = torch.rand(12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    running = dt.running_theorem_average(values)
    for t in (0, 5, 11):
        assert float(running[t]) == pytest.approx(float((dt.theorem_weights(t) * values[: t + 1]).sum()), rel=1e-12)


def test_step_size_is_theorem_rate():
    assert dt.step_size(0, 0.5) == 4 / (0.5 * 2)
    assert dt.step_size(10, 0.1) == pytest.approx(4 / (0.1 * 12))
    assert dt.step_size(10, 0.1, shift=8) == pytest.approx(4 / (0.1 * 20))


def test_dpf_at_sparsity_zero_is_sgd_bit_for_bit(problem):
    dpf = dt.run_dpf(problem, 0.0, T=60, batch=5, seed=7)
    sgd = dt.run_sgd_then_prune(problem, 0.0, T=60, batch=5, seed=7)
    assert torch.equal(dpf.iterates, sgd.iterates)
    assert torch.equal(dpf.gap_pruned, sgd.gap_pruned) and torch.equal(dpf.gap_dense, sgd.gap_dense)
    assert float(dpf.delta.abs().max()) == 0.0
    # a different seed gives different minibatches
    assert not torch.equal(dt.run_dpf(problem, 0.0, T=60, batch=5, seed=8).iterates, dpf.iterates)


def test_dpf_steps_are_hand_written_steps(problem):
    T, batch, seed, sparsity = 6, 4, 2, 0.6
    w0 = torch.linspace(-1, 1, problem.d, dtype=torch.float64)
    run = dt.run_dpf(problem, sparsity, T=T, batch=batch, seed=seed, w0=w0)
    batches = dt.sample_batches(problem.n, T, batch, seed)
    k = dt.keep_count(problem.d, sparsity)
    w = w0.clone()
    for t in range(T):
        m = topk_mask(w.abs(), k)
        g = problem.grad(m * w, batches[t])  # g(m_t ⊙ w_t): the gradient at the pruned model ...
        w = w - 4.0 / (problem.mu * (t + 2)) * g  # ... applied to the dense model (Section 3, DPF)
        torch.testing.assert_close(run.iterates[t + 1], w, rtol=1e-13, atol=1e-15)
    assert float(run.gamma[0]) == 2.0 / problem.mu


def test_mask_held_between_updates(problem):
    run = dt.run_dpf(problem, 0.8, T=20, batch=4, seed=0, update_every=4)
    for t in range(21):
        assert torch.equal(run.masks[t], topk_mask(run.iterates[t - t % 4].abs(), run.k))


def test_dense_decay_variant_differs_only_off_mask(problem):
    T, batch, seed = 5, 4, 0
    a = dt.run_dpf(problem, 0.5, T=T, batch=batch, seed=seed, regulariser="dense")
    batches = dt.sample_batches(problem.n, T, batch, seed)
    w = a.iterates[2]
    m = a.masks[2]
    g = problem.grad(m * w, batches[2]) + problem.mu * torch.where(m, 0.0, w)  # weight decay on pruned entries
    torch.testing.assert_close(a.iterates[3], w - dt.step_size(2, problem.mu) * g, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError):
        a.theorem_bound(problem)


def test_sgd_then_prune_one_shot(problem):
    sgd = dt.run_sgd(problem, T=80, batch=6, seed=4)
    run = dt.run_sgd_then_prune(problem, 0.75, T=80, batch=6, seed=4, sgd=sgd)
    fresh = dt.run_sgd_then_prune(problem, 0.75, T=80, batch=6, seed=4)
    assert torch.equal(run.iterates, fresh.iterates) and torch.equal(run.gap_dense, fresh.gap_dense)
    w_T = sgd.iterates[-1]
    pruned = topk_mask(w_T.abs(), run.k) * w_T
    assert run.final_pruned_gap == pytest.approx(float(problem.loss(pruned)) - problem.f_star, rel=1e-12)
    # Eq. (4) (appendix) is deterministic given an L-smooth f: it holds for every iterate
    bound = 2 * run.gap_dense + problem.L * run.neighbourhood
    assert (run.gap_pruned <= bound + 1e-12).all()
    assert run.one_shot_bound(problem) == pytest.approx(float(bound[-1]))


def test_references(problem):
    ref = dt.sparse_references(problem, 0.75)
    assert ref["k"] == 5
    assert 0 < ref["refit_optimum_gap"] <= ref["pruned_optimum_gap"] + 1e-12
    assert 0 < ref["optimum_delta"] < 1


def test_theorem_bound_holds_pathwise_for_full_batch(problem):
    """With g = ∇f every inequality of the proof of Theorem 4.1 holds for the realised path."""
    for sparsity in (0.0, 0.5, 0.9):
        run = dt.run_dpf(problem, sparsity, T=200, batch=None, seed=0)
        assert torch.equal(run.iterates, dt.run_dpf(problem, sparsity, T=200, batch=None, seed=1).iterates)
        bound = run.theorem_bound(problem)
        assert bound["observed"] == pytest.approx(float((dt.theorem_weights(200) * run.gap_pruned).sum()), rel=1e-12)
        assert bound["observed"] <= bound["bound"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem_bound_on_stochastic_runs(problem, seed):
    """A statistical check (the theorem is in expectation): the realised weighted average lies below the
    explicit bound with the run's largest ||g_t||² as G², here by more than a factor 10."""
    for sparsity in (0.5, 0.9):
        bound = dt.run_dpf(problem, sparsity, T=300, batch=8, seed=seed).theorem_bound(problem)
        assert 10 * bound["observed"] <= bound["bound"]


def test_records_and_argument_checks(problem):
    run = dt.run_dpf(problem, 0.5, T=10, batch=2, seed=0)
    records = run.records(every=4)
    assert records["t"].tolist() == [0, 4, 8, 10]
    assert set(records) >= {"gap_pruned", "gap_dense", "delta", "neighbourhood", "theorem_average"}
    with pytest.raises(ValueError):
        dt.keep_count(10, 1.0)
    with pytest.raises(ValueError):
        dt.run_dpf(problem, 0.5, T=3, batch=2, seed=0, update_every=0)
    with pytest.raises(ValueError):
        dt.run_dpf(problem, 0.5, T=3, batch=2, seed=0, regulariser="weird")


# ------------------------------------------------------------- the experiment contract


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sparsities": [0.5, 1.2]}, r"'sparsities': 1\.2 is not in \(0, 1\)"),
        ({"steps": 0}, r"'steps': 0 is not >= 1"),
        ({"reg": 0}, r"'reg': 0 is not > 0"),
        ({"seeds": []}, r"'seeds': name at least one seed"),
        ({"stepz": 10}, r"'stepz' is not a field of Config \(did you mean 'steps'\?\)"),
    ],
)
def test_bad_values_stop_with_the_field_path(change, message):
    from rewire.experiments.schema import ConfigError
    from rewire.pipeline import params as params_module

    _, smoke = params_module.stage_values("dpf_theory", "params.yaml", "smoke")
    with pytest.raises(ConfigError, match=message):
        dt.Config.from_values({**smoke, **change}, where="params.yaml 'smoke.dpf_theory'")


def test_notebook_parameters_are_config_fields_with_the_smoke_blocks_values():
    from rewire.experiments.schema import config_fields
    from rewire.pipeline import params as params_module

    declared = params_module.notebook_parameters("notebooks/03b_dpf_theory.ipynb")
    fields = config_fields(dt.Config)
    assert set(declared) <= set(fields) | set(dt.Config.IGNORED) and set(fields) <= set(declared)
    _, smoke = params_module.stage_values("dpf_theory", "params.yaml", "smoke")
    assert set(smoke) == set(fields)
    assert all(declared[name]["default"] == smoke[name] for name in fields)


def test_plan_sizes_per_scale():
    from rewire.pipeline import params as params_module

    sizes = {}
    for scale in ("smoke", "cpu", "paper"):
        _, values = params_module.stage_values("dpf_theory", "params.yaml", scale)
        config = dt.Config.from_values(values, where=scale)
        sizes[scale] = len(dt.plan(config))
        assert len(dt.plan(config)) == len(config.sparsities) * len(config.seeds)
    assert sizes == {"smoke": 2, "cpu": 12, "paper": 18}


def test_run_and_report_write_every_declared_output(tmp_path):
    """The stage's outputs (dvc.yaml) at a tiny size: the notebook's calls, without the notebook."""
    import yaml

    from rewire.reporting import results

    config = dt.Config(n_samples=60, dim=10, sparsities=(0.5, 0.8), steps=40, seeds=(0, 1), curve_points=20)
    outcome = dt.run(config)
    assert len(outcome.runs) == 2 * 2 * 3  # sparsities x seeds x (dpf, sgd, dpf_dense_decay)
    label = results.run_label(
        scale="smoke", seeds=config.seeds, data_source=outcome.data_source, device=torch.device("cpu")
    )
    metrics = dt.report(config, outcome, tmp_path, label)
    assert metrics == {"claims_held": 1, "claims_not_decided": 0, "claims_reversed": 0}  # the bound holds
    details = __import__("json").loads((tmp_path / "details.json").read_text())
    assert details["theorem_bound_holds_all_runs"] is True and {"dpf_over_oneshot_0.5", "dpf_over_oneshot_0.8"} <= set(
        details
    )
    stage = yaml.safe_load(open("dvc.yaml", encoding="utf-8"))["stages"]["dpf_theory"]
    declared = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"] + stage["metrics"]]
    for path in declared:
        name = path.removeprefix("results/dpf_theory/")
        if not name.endswith(".ipynb"):
            assert (tmp_path / name).exists(), name
