"""The dynamic neural graphs of DNW Section 3.1 (Eq. 10-13): discrete-time (a fixed number of steps)
and continuous-time (an ODE over the whole graph, solved with torchdiffeq).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rewire.models.tiny_graphs.blocks import NeuralGraph
from rewire.models.tiny_graphs.config import FIXED_STEP_SOLVERS, GraphConfig


class _DynamicGraph(NeuralGraph):
    """Dynamic neural graphs (Section 2.3): every N x N entry allowed (cycles and self-loops too)."""

    def allowed_edges(self) -> torch.Tensor:
        return torch.ones(self.num_nodes, self.num_nodes, dtype=torch.bool, device=self.classifier.weight.device)

    def _initial_state(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Eq. 10: the stem output in the input nodes, zeros elsewhere; layout ``[B*H*W, N]``."""
        stem, spatial = self._stem_states(images)
        rest = stem.new_zeros(stem.shape[0], self.num_nodes - stem.shape[1])
        return torch.cat([stem, rest], dim=1), spatial

    def _step(self, state: torch.Tensor, adjacency: torch.Tensor, spatial) -> torch.Tensor:
        """One update of the state (channels last, ``[B*H*W, N]``).

        ``paper``: f(A Z) = dwconv(ReLU(IN(A Z))), aggregate over the edges, then every
        node's operation (Eq. 12). ``authors_code``: IN(A dwconv(ReLU(s))), every node's
        ReLU and convolution, then the aggregation, then the (affine) instance norm.
        """
        n = self.num_nodes
        if self.config.graph_variant == "paper":
            return self.nodes(state @ adjacency.t(), 0, n, spatial)
        emitted = self.nodes.depthwise(F.relu(state), 0, n, spatial)  # not in place: the state may be the solver's
        return self.nodes.normalize(emitted @ adjacency.t(), 0, n, spatial, relu=False)

    def _outputs(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, self.output_nodes.start : self.output_nodes.stop]


class DiscreteTimeGraph(_DynamicGraph):
    """Discrete-time neural graph (Eq. 11-12): Z(l+1) = f(A Z(l)) for l = 0..L-1, output h(Z_VE(L)).

    One adjacency and one set of node operations shared by all ``steps`` (L = 5).
    The effective adjacency is read once per forward (one edge choice for all steps).
    """

    kind = "discrete_time"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        state, spatial = self._initial_state(images)
        adjacency = self.graph.weight
        for _ in range(self.config.steps):
            state = self._step(state, adjacency, spatial)
        return self._readout(self._outputs(state), spatial)


class ContinuousTimeGraph(_DynamicGraph):
    """Continuous-time neural graph (Eq. 13): dZ/dt = f(A Z), Z(0) from Eq. 10, output h(Z_VE(1)).

    Integrated with ``torchdiffeq.odeint`` (``adjoint=True``: ``odeint_adjoint``),
    by default dopri5 with rtol = atol = 1e-3 (footnote 4); fixed-step solvers
    (``solver="rk4"`` or ``"euler"`` with ``step_size``) keep the CPU cost bounded.
    The state is never modified in place. ``last_nfe`` counts the function
    evaluations since the last forward pass began (adaptive solvers take more as
    training goes on; with ``adjoint`` the backward pass adds its own).
    """

    kind = "continuous_time"
    integration_time = 1.0  # footnote 4: "from t = 0 to 1"

    def __init__(self, config: GraphConfig | None = None) -> None:
        super().__init__(config)
        self.last_nfe = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        import torchdiffeq

        state, spatial = self._initial_state(images)
        if state.dtype in (torch.float16, torch.bfloat16):
            state = state.float()  # under autocast: integrate in float32, evaluate the dynamics in low precision
        adjacency = self.graph.weight  # chosen once; the dynamics close over the effective weight
        self.last_nfe = 0

        def dynamics(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            self.last_nfe += 1
            return self._step(z, adjacency, spatial).to(z.dtype)

        c = self.config
        times = torch.tensor([0.0, self.integration_time], dtype=state.dtype, device=state.device)
        options = {"step_size": c.step_size} if c.solver in FIXED_STEP_SOLVERS else None
        kwargs = dict(rtol=c.rtol, atol=c.atol, method=c.solver, options=options)
        if c.adjoint:
            params = tuple(p for p in self.nodes.parameters() if p.requires_grad)
            if adjacency.requires_grad:
                params = params + (adjacency,)
            final = torchdiffeq.odeint_adjoint(dynamics, state, times, adjoint_params=params, **kwargs)[-1]
        else:
            final = torchdiffeq.odeint(dynamics, state, times, **kwargs)[-1]
        return self._readout(self._outputs(final), spatial)
