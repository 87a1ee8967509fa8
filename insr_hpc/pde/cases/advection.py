"""1D linear advection u_t + a u_x = 0 on [−L/2, L/2] with u = 0 on both ends.

Exact solution u(x, t) = u0(x − a t) (while the pulse stays away from the walls).
Defaults are the INSR paper's setting: L = 4, a = 0.25, Gaussian pulse μ = −1.5,
σ = 0.1, dt = 0.05, 240 steps. The step objective is the paper's: the integrator's
rate-form residual over interior samples plus ``boundary_weight`` × the mean square of
u at ``sampling.boundary`` points within 1e-4 of the ends; step 0 fits u0 alone.
"""

from __future__ import annotations


import numpy as np
import torch

from insr_hpc.ops import grad_at
from insr_hpc.pde.case import CASES, Case, FieldSpec, StepContext, SubProblem
from insr_hpc.pde.cases.params import AdvectionParams
from insr_hpc.pde.terms import Residual, Term

SPECTRAL_MODES = 4096  # grid of the semi-discrete reference (σ = 0.1 needs ~400: exact to rounding)
BOUNDARY_BAND = 1e-4  # boundary samples lie this close to the ends (as in the INSR code)


def initial_profile(kind: str, x, mu: float, sigma: float, wavenumber: float, lib=np):
    """u0(x). ``gaussian``: exp(−(x−μ)²/2σ²); ``wavepacket``: that times cos(k (x−μ))."""
    g = lib.exp(-((x - mu) ** 2) / (2 * sigma**2))
    if kind == "gaussian":
        return g
    return g * lib.cos(wavenumber * (x - mu))


@CASES.register("advection")
class Advection(Case):
    Params = AdvectionParams

    fields = {"u": FieldSpec(1, 1)}
    pack_values = ("speed", "mu", "sigma", "wavenumber")

    def __init__(self, params: "Advection.Params", dt: float):
        super().__init__(params, dt)
        self.half = params.length / 2
        self.term = Term(rhs=self.rhs)
        self._spectrum = None  # semi_discrete: (wavenumbers, weighted coefficients of u0, factor)
        self._phase: dict[bytes, np.ndarray] = {}

    def with_values(self, values):
        out = super().with_values(values)
        out.term = Term(rhs=out.rhs)  # bound to the copy's params
        return out

    # physics -----------------------------------------------------------------
    def rhs(self, field, x: torch.Tensor) -> torch.Tensor:
        """F(u) = −a ∂u/∂x at one point x (1,)."""
        return -self.params.speed * grad_at(field, x)[..., 0]

    def u0(self, x, lib=np):
        p = self.params
        return initial_profile(p.initial, x, p.mu, p.sigma, p.wavenumber, lib)

    def exact(self, x: np.ndarray, t: float) -> np.ndarray:
        return self.u0(x - self.params.speed * t)

    def semi_discrete(self, x: np.ndarray, step: int) -> np.ndarray:
        """The time integrator's own solution after ``step`` steps, exact in space.

        Each Fourier mode e^{ikx} of u0 is multiplied per step by the integrator's
        amplification factor for u_t = −a u_x (midpoint/Crank–Nicolson:
        (1 − z/2)/(1 + z/2), z = i a k Δt; implicit Euler 1/(1 + z); explicit Euler
        1 − z). Periodic in space on [−L/2, L/2): equal to the walled problem while the
        pulse stays far from the walls. INSR − this isolates the solver's error from
        the time scheme's; this − analytic is the time scheme's error."""
        if self._spectrum is None:  # u0's Fourier series (real-FFT weights folded in) and the factor
            p, m = self.params, SPECTRAL_MODES
            grid = -self.half + np.arange(m) * (p.length / m)
            weights = np.full(m // 2 + 1, 2.0)
            weights[0] = 1.0
            if m % 2 == 0:
                weights[-1] = 1.0
            k = 2 * np.pi * np.fft.rfftfreq(m, d=p.length / m)
            factor = self.integrator.amplification(1j * p.speed * k * self.dt)
            self._spectrum = (k, np.fft.rfft(self.u0(grid)) / m * weights, factor)
        k, coeffs, factor = self._spectrum
        key = x.tobytes()
        if key not in self._phase:  # the output grid is the same every step
            self._phase[key] = np.exp(1j * np.outer(x + self.half, k))  # (len(x), modes)
        return (self._phase[key] @ (coeffs * factor**step)).real

    # sampling ----------------------------------------------------------------
    def sample_interior(self, n, gen, device):
        """n uniform points in (−L/2, L/2), (n, 1)."""
        return ((torch.rand(n, 1, generator=gen) * 2 - 1) * self.half).to(device)

    def sample_boundary(self, n, gen, device):
        """n points within ``BOUNDARY_BAND`` of the two ends (half at each), (n, 1)."""
        side = torch.where(torch.arange(n) % 2 == 0, -1.0, 1.0)[:, None]
        depth = torch.rand(n, 1, generator=gen) * BOUNDARY_BAND
        return (side * (self.half - depth)).to(device)

    # objectives --------------------------------------------------------------
    def initial_problems(self, current, n_interior, n_boundary, device):
        # The fit is a plain regression of u0 (no boundary term: u0 vanishes there).
        def fit(field, x):
            return field(x) - self.u0(x, torch)

        return [SubProblem("fit", "u", [Residual("fit", lambda g: self.sample_interior(n_interior, g, device), fit)])]

    def step_problems(self, ctx: StepContext):
        hist = [h["u"] for h in ctx.history]
        integ = ctx.integrator

        sample = lambda g: self.sample_interior(ctx.n_interior, g, ctx.device)  # noqa: E731
        terms = integ.step_terms(self.term, lambda field: field, hist, sample, ctx.dt)
        if ctx.n_boundary and self.params.boundary_weight:
            terms.append(
                Residual(
                    "boundary",
                    lambda g: self.sample_boundary(ctx.n_boundary, g, ctx.device),
                    lambda field, x: field(x),
                    self.params.boundary_weight,
                )
            )
        return [SubProblem("advance", "u", terms)]

    # output ------------------------------------------------------------------
    def output_coords(self, resolution):
        return {"x": np.linspace(-self.half, self.half, resolution)}

    error_names = ("rel_l2", "max_err", "solver_rel_l2", "scheme_rel_l2")

    def output_vars(self, resolution):
        attrs = {"long_name": "advected quantity u(x, t)", "units": "1"}
        return {
            "field": (("x",), (resolution,), attrs),
            "field_exact": (("x",), (resolution,), {**attrs, "long_name": "analytic u0(x − a t)"}),
            "field_scheme": (
                ("x",),
                (resolution,),
                {**attrs, "long_name": "the integrator's semi-discrete solution, exact in space (spectral)"},
            ),
        }

    def evaluate(self, fields, resolution, device):
        x = torch.as_tensor(self.output_coords(resolution)["x"], dtype=torch.float32, device=device)[:, None]
        with torch.no_grad():
            u = fields["u"](x)[:, 0].cpu().numpy()
        return {"field": u}

    def reference(self, t, resolution):
        x = self.output_coords(resolution)["x"]
        step = int(round(t / self.dt))
        return {"field_exact": self.exact(x, t).astype(np.float32), "field_scheme": self.semi_discrete(x, step).astype(np.float32)}

    def errors(self, outputs, reference):
        """rel_l2 / max_err vs the analytic solution; solver_rel_l2: INSR vs the
        integrator's semi-discrete solution (the optimiser's error); scheme_rel_l2: that
        solution vs analytic (the time scheme's error). All relative to ‖analytic‖."""
        exact = reference["field_exact"].astype(np.float64)
        scheme = reference["field_scheme"].astype(np.float64)
        got = outputs["field"].astype(np.float64)
        norm = max(np.linalg.norm(exact), 1e-12)
        return {
            "rel_l2": float(np.linalg.norm(got - exact) / norm),
            "max_err": float(np.abs(got - exact).max()),
            "solver_rel_l2": float(np.linalg.norm(got - scheme) / norm),
            "scheme_rel_l2": float(np.linalg.norm(scheme - exact) / norm),
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
