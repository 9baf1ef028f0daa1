"""The settings of one tiny neural graph (DNW Section 3.1, Table 1) and the ODE solvers it accepts;
the package docstring describes the graphs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# torchdiffeq solvers that step on a fixed grid and need ``step_size`` (others are adaptive)
FIXED_STEP_SOLVERS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
# where the paper's text and the authors' code differ (see the package docstring)
GRAPH_VARIANTS = ("paper", "authors_code")


@dataclass(frozen=True)
class GraphConfig:
    """Sizes and solver options of the tiny neural graphs; the defaults are the paper's (Section 3.1).

    Fields used by one kind of graph only are ignored by the others
    (``block_sizes``: static; ``steps``: discrete time; solver fields: continuous time).
    ``k`` is not used by the dense models; it is the edge budget the methods apply.
    """

    # the authors' configuration: `dim: 800` nodes
    num_nodes: int = 800
    # the stem's output channels, one per input node (reference `downsample_dim: 32`)
    input_nodes: int = 32
    # the last nodes, read out by the classifier (reference `feature_dim: 100`)
    output_nodes: int = 100
    # static graph: Section 3.1 "The static graph uses 5 blocks"; sizes hard-coded in the reference
    block_sizes: tuple[int, ...] = (32, 192, 192, 192, 192)
    # real edges: reference `prune_rate: 0.95`, so k = 800^2 - floor(0.95 * 800^2) = 32,000
    k: int = 32_000
    # discrete time: Section 3.1 "the discrete time graph uses 5 time steps"
    steps: int = 5
    # stem width: reference downsample(), Conv3x3 3 -> 16
    stem_channels: int = 16
    in_channels: int = 3
    num_classes: int = 10
    # continuous time: footnote 4, "a 5th order Runge-Kutta method [...] from t = 0 to 1 with tolerance 0.001"
    solver: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    # fixed-step solvers (rk4, euler, ...): the step size in units of the integration time 1
    step_size: float | None = None
    # integrate the backward pass with the adjoint method (Section 2.3) instead of backprop through the solver
    adjoint: bool = False
    # "paper": the reading of the paper's text (Eq. 1, 11-13); "authors_code": the computation of the
    # authors' code, which produced Table 1 (package docstring, "Variants")
    graph_variant: str = "paper"

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "num_nodes",
            "input_nodes",
            "output_nodes",
            "k",
            "steps",
            "stem_channels",
            "in_channels",
            "num_classes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive int, got {value!r}")
        if not problems and self.input_nodes + self.output_nodes > self.num_nodes:
            problems.append(
                f"input_nodes + output_nodes ({self.input_nodes} + {self.output_nodes}) exceed num_nodes ({self.num_nodes})"
            )
        if (
            any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.block_sizes)
            or len(self.block_sizes) < 2
        ):
            problems.append(f"block_sizes must hold at least two positive ints, got {self.block_sizes!r}")
        if self.solver not in FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS:
            problems.append(
                f"solver must be one of {', '.join(ADAPTIVE_SOLVERS + FIXED_STEP_SOLVERS)}, got {self.solver!r}"
            )
        elif self.solver in FIXED_STEP_SOLVERS and (self.step_size is None or not 0 < self.step_size <= 1):
            problems.append(f"the fixed-step solver {self.solver!r} needs step_size in (0, 1], got {self.step_size!r}")
        if self.graph_variant not in GRAPH_VARIANTS:
            problems.append(f"graph_variant must be one of {', '.join(GRAPH_VARIANTS)}, got {self.graph_variant!r}")
        if not (self.rtol > 0 and self.atol > 0):
            problems.append(f"rtol and atol must be positive, got {self.rtol!r}, {self.atol!r}")
        if problems:
            raise ValueError("invalid GraphConfig: " + "; ".join(problems))

    def replace(self, **changes: Any) -> GraphConfig:
        return dataclasses.replace(self, **changes)
