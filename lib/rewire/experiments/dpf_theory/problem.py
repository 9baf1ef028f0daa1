"""A strongly convex toy problem for DPF's Theorem 4.1 (Lin et al., *Dynamic Model Pruning with Feedback*, ICLR 2020).

Everything here is float64, seeded and runs in seconds on a CPU.

The problem
-----------
ℓ2-regularised logistic regression on synthetic data (:func:`make_problem`)::

    f(w) = (1/n) Σ_i log(1 + exp(-y_i <x_i, w>)) + (μ/2) ||w||²,      μ = reg,

which is μ-strongly convex (the assumption of Theorem 4.1) and L-smooth with the
bound used throughout (:attr:`LogisticProblem.L`)::

    L = λ_max(Xᵀ X / n) / 4 + μ,

because the Hessian of the mean logistic loss is (1/n) Xᵀ D X with D = diag(σ(z)(1-σ(z))) ≤ 1/4.
The labels come from a planted w_true that is *mostly* sparse (a few large
coordinates plus a dense tail of small ones) and are drawn from the logistic model,
so the minimiser w* is dense: no k-sparse model reaches f* (the situation the
theorem's neighbourhood term describes). w* is computed by damped Newton to a full
gradient norm below 1e-12.

The methods
-----------
* :func:`run_dpf` -- (DPF) of Section 3, ``w_{t+1} = w_t - γ_t g(m_t ⊙ w_t)``, with m_t the top-k of
  |w_t| (refreshed every ``update_every`` steps), the stochastic gradient evaluated at the
  pruned model w̃_t = m_t ⊙ w_t and applied to the dense w_t;
* :func:`run_sgd_then_prune` -- plain SGD with the same learning rates and the same minibatches,
  followed by one-shot magnitude pruning of the final iterate (the remark after Theorem 4.1).

Both use γ_t = 4 / (μ (t + 2 + shift)) -- Theorem 4.1's rate when ``shift = 0`` (the default).
The theorem's first step, γ_0 = 2/μ, is far above 1/L, but it does not make SGD diverge here:
the logistic gradient is bounded and μγ_t ≤ 2, so the iterates overshoot for a few steps and
then contract. A positive ``shift`` (γ_0 = 4/(μ(2+shift)); 4L/μ - 2 gives γ_0 = 1/L) is offered
to damp that transient; the bound of Theorem 4.1 (:meth:`Trajectory.theorem_bound`) is only
evaluated at ``shift = 0``. On the default problem shifts of 10, 4L/μ - 2 and 4(4L/μ - 2) did
not change which method ends lower.

Where DPF's neighbourhood term comes from here: the regulariser is part of f, so its gradient
μ w̃_t is zero on pruned coordinates, and a pruned coordinate j moves by -γ_t ∂_j f(w̃_t) at
every step. With Σ γ_t = ∞ such drifts add up without limit; they stop only when the coordinate
re-enters the mask or ∂_j f(w̃_t) vanishes, and ∇f(w̃_t) cannot vanish on and off the mask at
once (the k-sparse w̃_t would be the dense minimiser w*). ||w_t|| (hence δ_t ||w_t||²) is
therefore not driven towards ||w*||; ``run_dpf(..., regulariser="dense")`` (weight decay on the dense weights, outside
the theorem) is provided to isolate this effect.

Recorded per iterate t = 0..T: f(w̃_t) - f*, f(w_t) - f*, δ_t (Eq. 1), δ_t ||w_t||², and the
Theorem-4.1 average Σ_{s≤t} p_s (f(w̃_s) - f*) with p_s = 2(s+1)/((t+1)(t+2)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from rewire.sparse.masks import topk_mask

__all__ = [
    "LogisticProblem",
    "make_problem",
    "keep_count",
    "magnitude_mask",
    "pruning_quality",
    "step_size",
    "theorem_weights",
    "running_theorem_average",
    "sample_batches",
    "Trajectory",
    "run_dpf",
    "SGDRun",
    "run_sgd",
    "run_sgd_then_prune",
    "sparse_references",
]

DTYPE = torch.float64


# ----------------------------------------------------------------------------- problem


@dataclass
class LogisticProblem:
    """f(w) = mean logistic loss + (μ/2)||w||² on fixed data; μ = ``mu`` is the strong-convexity constant.

    ``X`` is (n, d), ``y`` in {-1, +1}. ``w_star``/``f_star`` are the exact minimiser and
    minimum (damped Newton, float64); ``L`` is the smoothness bound λ_max(XᵀX/n)/4 + μ.
    """

    X: torch.Tensor
    y: torch.Tensor
    mu: float
    w_true: torch.Tensor
    L: float = float("nan")
    w_star: torch.Tensor | None = None
    f_star: float = float("nan")
    newton_iterations: int = 0
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        """f(w) (a 0-dim tensor) on the full data set."""
        margins = self.y * (self.X @ w)
        return F.softplus(-margins).mean() + 0.5 * self.mu * (w @ w)

    def losses(self, W: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """f at every row of ``W`` (m, d), vectorised in chunks of rows."""
        out = []
        for start in range(0, W.shape[0], chunk):
            block = W[start : start + chunk]
            margins = self.y[:, None] * (self.X @ block.T)  # (n, m)
            out.append(F.softplus(-margins).mean(0) + 0.5 * self.mu * (block * block).sum(1))
        return torch.cat(out) if out else W.new_zeros(0)

    def grad(self, w: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """Stochastic gradient g(w) = ∇ of (1/|B|) Σ_{i∈B} log(1+exp(-y_i<x_i,w>)) + (μ/2)||w||².

        ``batch`` holds sample indices (drawn uniformly with replacement by :func:`sample_batches`,
        so E g(w) = ∇f(w)); ``None`` gives the full gradient ∇f(w).
        """
        X, y = (self.X, self.y) if batch is None else (self.X.index_select(0, batch), self.y.index_select(0, batch))
        coefficients = -y * torch.sigmoid(-y * (X @ w))  # d/dz log(1+exp(-y z)) = -y σ(-y z)
        return X.T @ coefficients / X.shape[0] + self.mu * w

    def hessian(self, w: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        """∇²f(w) = Xᵀ diag(σ(z)(1-σ(z))) X / n + μ I (restricted to ``columns`` if given)."""
        X = self.X if columns is None else self.X[:, columns]
        s = torch.sigmoid(self.X @ w)
        curvature = s * (1 - s)
        return (X.T * curvature) @ X / self.n + self.mu * torch.eye(X.shape[1], dtype=X.dtype)

    def minimise(
        self, support: torch.Tensor | None = None, tol: float = 1e-12, max_iter: int = 100
    ) -> tuple[torch.Tensor, int]:
        """Minimiser of f over vectors supported on ``support`` (a bool mask; ``None`` = all of R^d).

        Damped Newton from 0 with Armijo backtracking, stopping when the (restricted) gradient
        norm is below ``tol``. Returns (w, iterations).
        """
        columns = torch.arange(self.d) if support is None else support.nonzero().squeeze(1)
        w = torch.zeros(self.d, dtype=DTYPE)
        for iteration in range(1, max_iter + 1):
            g = self.grad(w)[columns]
            if torch.linalg.vector_norm(g) < tol:
                return w, iteration - 1
            direction = torch.linalg.solve(self.hessian(w, columns), g)
            value, slope, step = self.loss(w), float(g @ direction), 1.0
            while True:
                trial = w.clone()
                trial[columns] -= step * direction
                if self.loss(trial) <= value - 1e-4 * step * slope or step < 1e-10:
                    break
                step *= 0.5
            w = trial
        g = self.grad(w)[columns]
        if torch.linalg.vector_norm(g) >= max(tol, 1e-10):
            raise RuntimeError(f"Newton did not converge in {max_iter} iterations (|grad| = {float(g.norm()):.3g})")
        return w, max_iter


def make_problem(
    n: int = 500,
    d: int = 50,
    sparse_truth: float = 0.1,
    reg: float = 0.05,
    seed: int = 0,
    *,
    signal: float = 3.0,
    tail: float = 0.3,
) -> LogisticProblem:
    """Synthetic ℓ2-regularised logistic regression with a mostly sparse planted w_true.

    * X ~ N(0, I_d) per row (n rows);
    * w_true: ``round(sparse_truth·d)`` (at least 1) coordinates drawn N(0, 1) ("the support")
      plus a dense tail N(0, 1) on all other coordinates, scaled so that the tail carries a
      fraction ``tail`` of ||w_true|| and ||w_true|| = ``signal``;
    * y_i = +1 with probability σ(<x_i, w_true>), else -1 (logistic label noise).

    ``reg`` is μ, the strong-convexity constant of f. The exact minimiser ``w_star`` (dense)
    and ``f_star`` are computed here by damped Newton (|∇f(w*)| < 1e-12).
    """
    if not (n >= 1 and d >= 1 and 0 <= sparse_truth <= 1 and reg > 0 and 0 <= tail <= 1):
        raise ValueError("need n, d >= 1, sparse_truth and tail in [0, 1], reg > 0")
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=generator, dtype=DTYPE)
    support = torch.randperm(d, generator=generator)[: max(1, round(sparse_truth * d))]
    large = torch.zeros(d, dtype=DTYPE)
    large[support] = torch.randn(len(support), generator=generator, dtype=DTYPE)
    small = torch.randn(d, generator=generator, dtype=DTYPE)
    small[support] = 0.0
    large = large / large.norm().clamp_min(1e-300)
    small = small / small.norm().clamp_min(1e-300) if d > len(support) else small
    w_true = signal * (np.sqrt(1 - tail**2) * large + tail * small)
    probability = torch.sigmoid(X @ w_true)
    y = torch.where(torch.rand(n, generator=generator, dtype=DTYPE) < probability, 1.0, -1.0).to(DTYPE)
    problem = LogisticProblem(X=X, y=y, mu=float(reg), w_true=w_true)
    problem.L = float(torch.linalg.eigvalsh(X.T @ X / n).max()) / 4 + problem.mu
    problem.w_star, problem.newton_iterations = problem.minimise()
    problem.f_star = float(problem.loss(problem.w_star))
    problem.info = {
        "n": n,
        "d": d,
        "sparse_truth": sparse_truth,
        "reg": reg,
        "seed": seed,
        "signal": signal,
        "tail": tail,
        "L": problem.L,
        "mu": problem.mu,
        "condition_number": problem.L / problem.mu,
        "f_star": problem.f_star,
        "w_star_norm": float(problem.w_star.norm()),
        "grad_norm_at_w_star": float(problem.grad(problem.w_star).norm()),
    }
    return problem


# ----------------------------------------------------------------------------- pieces of Theorem 4.1


def keep_count(d: int, sparsity: float) -> int:
    """k = round((1 - sparsity)·d), at least 1: the number of weights a mask keeps."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return max(1, min(d, round((1 - sparsity) * d)))


def magnitude_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """m(w): the k largest |w_i| (exactly k entries, ties by position; ``rewire.masks.topk_mask``)."""
    return topk_mask(w.abs(), k)


def pruning_quality(w: torch.Tensor, w_pruned: torch.Tensor) -> float:
    """δ = ||w - w̃||² / ||w||² (Eq. 1), in [0, 1] for a mask; 0 when w = 0 (nothing to lose)."""
    norm2 = float(w @ w)
    return 0.0 if norm2 == 0.0 else float((w - w_pruned) @ (w - w_pruned)) / norm2


def step_size(t: int, mu: float, shift: float = 0.0) -> float:
    """γ_t = 4 / (μ (t + 2 + shift)); ``shift = 0`` is Theorem 4.1's rate."""
    return 4.0 / (mu * (t + 2 + shift))


def theorem_weights(T: int) -> torch.Tensor:
    """p_t = 2(t+1) / ((T+1)(T+2)) for t = 0..T (Theorem 4.1); they sum to 1."""
    t = torch.arange(T + 1, dtype=DTYPE)
    return 2 * (t + 1) / ((T + 1) * (T + 2))


def running_theorem_average(values: torch.Tensor) -> torch.Tensor:
    """Entry t: Σ_{s≤t} p_s^{(t)} values_s with p^{(t)} the Theorem-4.1 weights for horizon t."""
    t = torch.arange(len(values), dtype=DTYPE)
    return torch.cumsum((t + 1) * values, 0) / ((t + 1) * (t + 2) / 2)


def sample_batches(n: int, T: int, batch: int | None, seed: int) -> torch.Tensor | list[None]:
    """(T, batch) sample indices, uniform with replacement: the minibatch of every step for ``seed``.

    The same seed gives the same minibatches to DPF and SGD, whatever the iterates.
    ``batch=None`` means full-batch gradients (g = ∇f, deterministic): a list of T ``None``.
    """
    if batch is None:
        return [None] * T
    if batch < 1:
        raise ValueError(f"batch must be >= 1 or None (full batch), got {batch}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(n, (T, batch), generator=generator)


# ----------------------------------------------------------------------------- runs


@dataclass
class Trajectory:
    """Iterates and per-iterate quantities of one run (t = 0..T; ``grad_sq`` and ``gamma`` for t = 0..T-1).

    ``gap_pruned[t]`` = f(m_t ⊙ w_t) - f*, ``gap_dense[t]`` = f(w_t) - f*, ``delta[t]`` = δ_t (Eq. 1),
    ``neighbourhood[t]`` = δ_t ||w_t||², ``theorem_average[t]`` the Theorem-4.1 p-weighted average of
    ``gap_pruned`` over 0..t. For DPF m_t is the mask in use at step t; for SGD it is the top-k of the
    iterate, computed only to evaluate (pruning never feeds back).
    """

    method: str
    sparsity: float
    k: int
    shift: float
    iterates: torch.Tensor
    masks: torch.Tensor
    gamma: torch.Tensor
    grad_sq: torch.Tensor
    gap_pruned: torch.Tensor
    gap_dense: torch.Tensor
    delta: torch.Tensor
    neighbourhood: torch.Tensor
    theorem_average: torch.Tensor
    mask_changes: torch.Tensor

    @property
    def T(self) -> int:
        return len(self.gamma)

    @property
    def final_pruned_gap(self) -> float:
        """f(m_T ⊙ w_T) - f*: the last pruned iterate (for SGD: one-shot pruning of the final iterate)."""
        return float(self.gap_pruned[-1])

    @property
    def averaged_pruned_gap(self) -> float:
        """Σ_t p_t (f(w̃_t) - f*) with Theorem 4.1's p_t: the expectation over the random choice of ũ."""
        return float(self.theorem_average[-1])

    def theorem_bound(self, problem: LogisticProblem, G2: float | None = None) -> dict[str, float]:
        """The explicit inequality the proof of Theorem 4.1 ends with (before the O(·))::

            Σ_t p_t (f(w̃_t) - f*) ≤ 4(T+1) G² / (μ Λ_T) + (3L / Λ_T) Σ_t (t+1) δ_t ||w_t||²,

        with Λ_T = (T+1)(T+2)/2.

        G² bounds E||g(w̃_t)||²; by default a proxy from the run: the largest observed ||g_t||²
        (t < T) and ||∇f(w̃_T)||² (the sum of the proof runs to t = T). The theorem holds in
        expectation; with full-batch gradients (g = ∇f) every step of the proof holds pathwise, so
        the inequality is then exact. Only for the algorithm of Theorem 4.1 (method ``dpf``) at its
        rate (``shift = 0``).
        """
        if self.method != "dpf" or self.shift != 0:
            raise ValueError("Theorem 4.1 is about DPF (regulariser='pruned') with γ_t = 4/(μ(t+2)), i.e. shift = 0")
        T = self.T
        if G2 is None:
            last = problem.grad(self.iterates[-1] * self.masks[-1])
            G2 = max(float(self.grad_sq.max()) if T else 0.0, float(last @ last))
        G2 = float(G2)
        Lambda = (T + 1) * (T + 2) / 2
        t = torch.arange(T + 1, dtype=DTYPE)
        sgd_term = 4 * (T + 1) * G2 / (problem.mu * Lambda)
        pruning_term = 3 * problem.L / Lambda * float(((t + 1) * self.neighbourhood).sum())
        return {
            "G2_proxy": G2,
            "sgd_term": sgd_term,
            "pruning_term": pruning_term,
            "bound": sgd_term + pruning_term,
            "observed": self.averaged_pruned_gap,
        }

    def one_shot_bound(self, problem: LogisticProblem) -> float:
        """Eq. (4) at t = T: 2(f(w_T) - f*) + L δ_T ||w_T||², a deterministic bound on f(w̃_T) - f*."""
        return 2 * float(self.gap_dense[-1]) + problem.L * float(self.neighbourhood[-1])

    def records(self, every: int = 1, points: int | None = None) -> dict[str, np.ndarray]:
        """Column arrays (for a DataFrame) at t = 0, every, 2·every, ..., and always T.

        With ``points``, instead about that many t spread evenly on a log scale and a linear scale
        together (early steps stay visible on a log axis), always including 0 and T.
        """
        if points is None:
            index = torch.arange(0, self.T + 1, every)
        else:
            log_part = torch.logspace(0, np.log10(max(self.T, 1)), points // 2, dtype=DTYPE)
            linear_part = torch.linspace(0, self.T, points - points // 2, dtype=DTYPE)
            index = torch.cat([torch.zeros(1, dtype=DTYPE), log_part, linear_part]).round().long().unique()
        if int(index[-1]) != self.T:
            index = torch.cat([index, torch.tensor([self.T])])
        return {
            "t": index.numpy(),
            "gap_pruned": self.gap_pruned[index].numpy(),
            "gap_dense": self.gap_dense[index].numpy(),
            "delta": self.delta[index].numpy(),
            "neighbourhood": self.neighbourhood[index].numpy(),
            "theorem_average": self.theorem_average[index].numpy(),
            "w_norm2": (self.iterates[index] ** 2).sum(1).numpy(),
        }


def _finish(
    problem: LogisticProblem,
    method: str,
    sparsity: float,
    k: int,
    iterates: torch.Tensor,
    masks: torch.Tensor,
    gamma: torch.Tensor,
    grad_sq: torch.Tensor,
    shift: float,
    gap_dense: torch.Tensor | None = None,
) -> Trajectory:
    pruned = iterates * masks
    gap_pruned = problem.losses(pruned) - problem.f_star
    if gap_dense is None:
        gap_dense = problem.losses(iterates) - problem.f_star
    w_norm2 = (iterates**2).sum(1)
    lost = ((iterates - pruned) ** 2).sum(1)
    delta = torch.where(w_norm2 > 0, lost / torch.where(w_norm2 > 0, w_norm2, 1.0), 0.0)
    changes = torch.cat([torch.zeros(1, dtype=DTYPE), (masks[1:] != masks[:-1]).sum(1).to(DTYPE) / 2])
    return Trajectory(
        method=method,
        sparsity=sparsity,
        k=k,
        shift=shift,
        iterates=iterates,
        masks=masks,
        gamma=gamma,
        grad_sq=grad_sq,
        gap_pruned=gap_pruned,
        gap_dense=gap_dense,
        delta=delta,
        neighbourhood=lost,
        theorem_average=running_theorem_average(gap_pruned),
        mask_changes=changes,
    )


def _start(problem: LogisticProblem, w0: torch.Tensor | None) -> torch.Tensor:
    return torch.zeros(problem.d, dtype=DTYPE) if w0 is None else w0.to(DTYPE).clone()


def run_dpf(
    problem: LogisticProblem,
    sparsity: float,
    T: int,
    batch: int | None,
    seed: int,
    update_every: int = 1,
    *,
    shift: float = 0.0,
    w0: torch.Tensor | None = None,
    regulariser: str = "pruned",
) -> Trajectory:
    """(DPF), Section 3: ``w_{t+1} = w_t - γ_t g(m_t ⊙ w_t)`` with Theorem 4.1's γ_t = 4/(μ(t+2+shift)).

    m_t = top-k of |w_t|, k = :func:`keep_count` (d, sparsity), recomputed at every t with
    t % update_every == 0 and held in between; g is the minibatch gradient of step t
    (:func:`sample_batches` (n, T, batch, seed); ``batch=None``: the full gradient) evaluated at
    the pruned model w̃_t = m_t ⊙ w_t and applied to the dense w_t (the error-feedback form
    w_t - γ_t g(w_t + e_t), e_t = w̃_t - w_t). w_0 = ``w0`` (default 0). Returns the
    :class:`Trajectory` of t = 0..T.

    ``regulariser="pruned"`` (default) is the algorithm of Theorem 4.1: g is the stochastic gradient
    *of f*, regulariser included, at w̃_t, so the (μ/2)||w||² term never acts on pruned coordinates.
    ``regulariser="dense"`` is a variant outside the theorem: the logistic part at w̃_t plus μ w_t,
    i.e. what ``torch.optim.SGD(weight_decay=μ)`` on the dense weights does when the loss is computed
    with the pruned weights. The paper's experiments train with weight decay (Appendix A.2) but do
    not say whether it acts on w or on w̃.
    """
    if update_every < 1:
        raise ValueError("update_every must be >= 1")
    if regulariser not in ("pruned", "dense"):
        raise ValueError(f"regulariser must be 'pruned' or 'dense', got {regulariser!r}")
    k = keep_count(problem.d, sparsity)
    batches = sample_batches(problem.n, T, batch, seed)
    w = _start(problem, w0)
    iterates = torch.empty(T + 1, problem.d, dtype=DTYPE)
    masks = torch.empty(T + 1, problem.d, dtype=torch.bool)
    gamma = torch.empty(T, dtype=DTYPE)
    grad_sq = torch.empty(T, dtype=DTYPE)
    mask = None
    for t in range(T + 1):
        if t % update_every == 0:
            mask = magnitude_mask(w, k)
        iterates[t], masks[t] = w, mask
        if t == T:
            break
        pruned = torch.where(mask, w, 0.0)
        g = problem.grad(pruned, batches[t])
        if regulariser == "dense":
            g = g + problem.mu * (w - pruned)
        gamma[t] = step_size(t, problem.mu, shift)
        grad_sq[t] = g @ g
        w = w - gamma[t].item() * g
    method = "dpf" if regulariser == "pruned" else "dpf_dense_decay"
    return _finish(problem, method, sparsity, k, iterates, masks, gamma, grad_sq, shift)


@dataclass
class SGDRun:
    """Plain SGD iterates w_0..w_T with their learning rates and squared stochastic-gradient norms."""

    iterates: torch.Tensor
    gamma: torch.Tensor
    grad_sq: torch.Tensor
    shift: float
    _gap_dense: torch.Tensor | None = field(default=None, repr=False)

    def gap_dense(self, problem: LogisticProblem) -> torch.Tensor:
        """f(w_t) - f* for t = 0..T (computed once, shared by every sparsity it is pruned at)."""
        if self._gap_dense is None:
            self._gap_dense = problem.losses(self.iterates) - problem.f_star
        return self._gap_dense


def run_sgd(
    problem: LogisticProblem,
    T: int,
    batch: int | None,
    seed: int,
    *,
    shift: float = 0.0,
    w0: torch.Tensor | None = None,
) -> SGDRun:
    """Plain SGD ``w_{t+1} = w_t - γ_t g(w_t)``, γ_t = 4/(μ(t+2+shift)), minibatches of :func:`sample_batches`."""
    batches = sample_batches(problem.n, T, batch, seed)
    w = _start(problem, w0)
    iterates = torch.empty(T + 1, problem.d, dtype=DTYPE)
    gamma = torch.empty(T, dtype=DTYPE)
    grad_sq = torch.empty(T, dtype=DTYPE)
    for t in range(T + 1):
        iterates[t] = w
        if t == T:
            break
        g = problem.grad(w, batches[t])
        gamma[t] = step_size(t, problem.mu, shift)
        grad_sq[t] = g @ g
        w = w - gamma[t].item() * g
    return SGDRun(iterates=iterates, gamma=gamma, grad_sq=grad_sq, shift=shift)


def run_sgd_then_prune(
    problem: LogisticProblem,
    sparsity: float,
    T: int,
    batch: int | None,
    seed: int,
    *,
    shift: float = 0.0,
    w0: torch.Tensor | None = None,
    sgd: SGDRun | None = None,
) -> Trajectory:
    """Plain SGD (same γ_t and minibatches as :func:`run_dpf` for ``seed``), then one-shot magnitude
    pruning of the final iterate: ``final_pruned_gap`` = f(m(w_T) ⊙ w_T) - f* (remark after Theorem 4.1).

    Every iterate is pruned (top-k of |w_t|) for evaluation only, giving the pruned-SGD curve;
    ``one_shot_bound`` is Eq. (4) at T: 2(f(w_T) - f*) + L δ_T ||w_T||². Pass ``sgd`` (from
    :func:`run_sgd` with the same T, batch, seed, shift, w0) to prune one SGD run at several sparsities.
    """
    if sgd is None:
        sgd = run_sgd(problem, T, batch, seed, shift=shift, w0=w0)
    elif len(sgd.gamma) != T or sgd.shift != shift:
        raise ValueError("the given SGD run does not have the requested T and shift")
    k = keep_count(problem.d, sparsity)
    masks = torch.stack([magnitude_mask(v, k) for v in sgd.iterates])
    return _finish(
        problem,
        "sgd",
        sparsity,
        k,
        sgd.iterates,
        masks,
        sgd.gamma,
        sgd.grad_sq,
        sgd.shift,
        gap_dense=sgd.gap_dense(problem),
    )


def sparse_references(problem: LogisticProblem, sparsity: float) -> dict[str, float]:
    """Scale references for k-sparse models (not the best k-sparse model, which is combinatorial):

    * ``pruned_optimum_gap``: f(m(w*) ⊙ w*) - f*, magnitude pruning of the exact minimiser;
    * ``refit_optimum_gap``: min f over vectors supported on m(w*), minus f* (prune w*, then
      retrain on the mask to optimality: an upper bound on the best k-sparse gap);
    * ``optimum_delta``: δ of pruning w* (Eq. 1), and ``optimum_neighbourhood`` = δ ||w*||².
    """
    k = keep_count(problem.d, sparsity)
    mask = magnitude_mask(problem.w_star, k)
    pruned = torch.where(mask, problem.w_star, 0.0)
    refit, _ = problem.minimise(support=mask, tol=1e-10)
    delta = pruning_quality(problem.w_star, pruned)
    return {
        "k": k,
        "pruned_optimum_gap": float(problem.loss(pruned)) - problem.f_star,
        "refit_optimum_gap": float(problem.loss(refit)) - problem.f_star,
        "optimum_delta": delta,
        "optimum_neighbourhood": delta * float(problem.w_star @ problem.w_star),
    }
