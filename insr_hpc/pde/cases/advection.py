"""1D linear advection u_t + a u_x = 0 on [−L/2, L/2] with u = 0 on both ends.

Exact solution u(x, t) = u0(x − a t) (while the pulse stays away from the walls).
Defaults are the INSR paper's setting: L = 4, a = 0.25, Gaussian pulse μ = −1.5,
σ = 0.1, dt = 0.05, 240 steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from insr_hpc.config.schema import require
from insr_hpc.ops import gradient
from insr_hpc.pde.case import CASES, Case, FieldSpec, StepContext, SubProblem
from insr_hpc.pde.integrators.base import Term

INITIAL_CONDITIONS = ("gaussian", "wavepacket")


def initial_profile(kind: str, x, mu: float, sigma: float, wavenumber: float, lib=np):
    """u0(x). ``gaussian``: exp(−(x−μ)²/2σ²); ``wavepacket``: that times cos(k (x−μ))."""
    g = lib.exp(-((x - mu) ** 2) / (2 * sigma**2))
    if kind == "gaussian":
        return g
    return g * lib.cos(wavenumber * (x - mu))


@CASES.register("advection")
class Advection(Case):
    @dataclass
    class Params:
        case: str = "advection"
        length: float = 4.0
        speed: float = 0.25
        initial: str = "gaussian"  # gaussian | wavepacket
        mu: float = -1.5
        sigma: float = 0.1
        wavenumber: float = 20.0  # wavepacket only
        boundary_weight: float = 1.0

        def validate(self) -> None:
            require(self.length > 0, "length", f"must be > 0, got {self.length}")
            require(self.sigma > 0, "sigma", f"must be > 0, got {self.sigma}")
            require(
                self.initial in INITIAL_CONDITIONS,
                "initial",
                f"unknown initial condition '{self.initial}' (known: {', '.join(INITIAL_CONDITIONS)})",
            )
            require(abs(self.mu) < self.length / 2, "mu", f"must lie inside (−L/2, L/2) = ±{self.length / 2}")
            require(self.boundary_weight >= 0, "boundary_weight", "must be >= 0")

    fields = {"u": FieldSpec(1, 1)}

    def __init__(self, params: "Advection.Params", dt: float):
        super().__init__(params, dt)
        self.half = params.length / 2
        self.term = Term(rhs=self.rhs)

    # physics -----------------------------------------------------------------
    def rhs(self, field, x: torch.Tensor) -> torch.Tensor:
        """F(u) = −a ∂u/∂x."""
        return -self.params.speed * gradient(field(x), x)

    def u0(self, x, lib=np):
        p = self.params
        return initial_profile(p.initial, x, p.mu, p.sigma, p.wavenumber, lib)

    def exact(self, x: np.ndarray, t: float) -> np.ndarray:
        return self.u0(x - self.params.speed * t)

    # sampling ----------------------------------------------------------------
    def sample_interior(self, n, gen, device):
        x = (torch.rand(n, 1, generator=gen) * 2 - 1) * self.half
        return x.to(device).requires_grad_(True)

    def sample_boundary(self, n, gen, device):
        del gen
        return torch.tensor([[-self.half], [self.half]], device=device)

    def _boundary_loss(self, field, device) -> torch.Tensor:
        xb = self.sample_boundary(2, None, device)
        return self.params.boundary_weight * (field(xb) ** 2).mean()

    # objectives --------------------------------------------------------------
    def initial_problems(self, current, n_interior, n_boundary, device):
        u = current["u"]

        def loss(gen):
            x = self.sample_interior(n_interior, gen, device)
            target = self.u0(x.detach(), torch)
            return ((u(x) - target) ** 2).mean() + self._boundary_loss(u, device)

        return [SubProblem("fit", "u", loss)]

    def step_problems(self, ctx: StepContext):
        u = ctx.current["u"]
        hist = [h["u"] for h in ctx.history]

        def loss(gen):
            x = self.sample_interior(ctx.n_interior, gen, ctx.device)
            obj = ctx.integrator.objective(self.term, u, hist, x, ctx.dt)
            return obj + self._boundary_loss(u, ctx.device)

        return [SubProblem("advance", "u", loss)]

    # output ------------------------------------------------------------------
    def output_coords(self, resolution):
        return {"x": np.linspace(-self.half, self.half, resolution)}

    def output_vars(self, resolution):
        attrs = {"long_name": "advected quantity u(x, t)", "units": "1"}
        return {"field": (("x",), (resolution,), attrs), "field_exact": (("x",), (resolution,), {**attrs, "long_name": "analytic u0(x − a t)"})}

    def evaluate(self, fields, resolution, device):
        x = torch.as_tensor(self.output_coords(resolution)["x"], dtype=torch.float32, device=device)[:, None]
        with torch.no_grad():
            u = fields["u"](x)[:, 0].cpu().numpy()
        return {"field": u}

    def reference(self, t, resolution):
        x = self.output_coords(resolution)["x"]
        return {"field_exact": self.exact(x, t).astype(np.float32)}

    def errors(self, outputs, reference):
        exact = reference["field_exact"].astype(np.float64)
        diff = outputs["field"] - exact
        return {
            "rel_l2": float(np.linalg.norm(diff) / max(np.linalg.norm(exact), 1e-12)),
            "max_err": float(np.abs(diff).max()),
        }

    def figure(self, outputs, t, resolution):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = self.output_coords(resolution)["x"]
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(x, self.exact(x, t), "k--", lw=1, label="analytic")
        ax.plot(x, outputs["field"], lw=1.2, label="INSR")
        ax.set(xlabel="x", ylabel="u", title=f"t = {t:.3g}")
        ax.legend(loc="upper left")
        fig.tight_layout()
        return fig
