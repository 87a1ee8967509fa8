"""2D hyperelastodynamics of a rectangular bar [0, L] × [−H/2, H/2] (INSR, Chen et al.
2023, sec. 5.4), for the ``variational`` integrator.

The field is the deformation map φ: X → x, written φ(X) = X + s(X)·w(X) with w the
network (2→2) and s = X/L when the left end is fixed (so φ = X there exactly, the
constraint holds by construction) or s = 1 otherwise. The case exposes the potential
density π(φ) = Ψ(∇φ) − ρg·φ + k/2·max(0, y_ground − φ_y)² (log-free neo-Hookean Ψ,
contact with the plane y = ground as a penalty) and the mass density ρ; the integrator
adds the inertia term. Units: consistent and dimensionless (lengths, ρ, E, g as given).

Scenarios: ``sag`` (left end fixed, gravity; with a large Δt every step is a static
solve), ``stretch`` (left end fixed, starts stretched by ``stretch`` along x, released
at rest), ``fall`` (free body under gravity onto the ground plane).

Stored per step: the deformed positions of 27 reference points (3 rows y = −H/2, 0,
H/2 × 9 columns X = kL/8), total energy, and the same from the FEM reference
(:mod:`insr_hpc.pde.baselines.elastic_fem`, same incremental potential and Δt).
"""

from __future__ import annotations


import numpy as np
import torch

from insr_hpc.ops import batch_mode, value_and_grad_at, with_jacobian
from insr_hpc.pde.baselines.elastic_fem import ElasticFEM, bar_mesh, lame
from insr_hpc.pde.case import CASES, Case, FieldSpec, StepContext, SubProblem
from insr_hpc.pde.cases.params import ElasticityParams
from insr_hpc.pde.terms import Energy, PotentialTerm, Residual, module_point_fn



def neo_hookean_density(F: torch.Tensor, mu: float, lam: float) -> torch.Tensor:
    """Ψ(F) = μ/2(|F|² − 2) − μ(J − 1) + λ/2(J − 1)² for F (…, 2, 2) → (…)."""
    J = F[..., 0, 0] * F[..., 1, 1] - F[..., 0, 1] * F[..., 1, 0]
    return 0.5 * mu * ((F**2).sum((-2, -1)) - 2) - mu * (J - 1) + 0.5 * lam * (J - 1) ** 2


@CASES.register("elasticity")
class Elasticity(Case):
    Params = ElasticityParams

    fields = {"phi": FieldSpec(2, 2)}
    term_kind = PotentialTerm
    history_needed = 2
    error_names = ("rel_l2", "max_err", "tip_error")

    def __init__(self, params: "Elasticity.Params", dt: float):
        super().__init__(params, dt)
        p = params
        self.mu, self.lam = lame(p.youngs_modulus, p.poisson_ratio)
        self.g = 0.0 if p.scenario == "stretch" else p.gravity
        self.term = PotentialTerm(
            density=self.potential_density, mass=self.mass, measure=p.length * p.height, local=self.local_density
        )
        cols, rows = np.linspace(0, p.length, 9), np.array([-p.height / 2, 0.0, p.height / 2])
        X, Y = np.meshgrid(cols, rows)
        self.ref_points = np.stack([X.ravel(), Y.ravel()], 1)  # (27, 2), rows bottom → top
        self.tip = 9 + 8  # centre row, X = L
        self._fem: ElasticFEM | None = None
        self._fem_step = -1
        self._prev_quad: np.ndarray | None = None

    # physics -----------------------------------------------------------------
    def deformation(self, net):
        """φ(X) = X + s(X)·w(X) for the network w; s = X/L with a fixed left end.
        Works on batches (N, 2) and, for a per-point ``net``, on one point (2,)."""
        L, fixed = self.params.length, self.params.fixed == "left"

        def phi(X: torch.Tensor) -> torch.Tensor:
            w = net(X)
            return X + (X[..., :1] / L) * w if fixed else X + w

        forward = getattr(net, "value_and_jacobian", None)
        if forward is None:
            return phi

        def value_and_jacobian(X: torch.Tensor):
            """φ and ∇φ = I + s ∇w + w ⊗ ∇s from the network's forward-mode Jacobian."""
            w, dw = forward(X)
            eye = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
            if not fixed:
                return X + w, eye + dw
            s = X[..., :1] / L
            grad_s = eye[0] / L  # ∇s = (1/L, 0)
            return X + s * w, eye + s[..., None] * dw + w[..., :, None] * grad_s

        return with_jacobian(phi, value_and_jacobian)

    def initial_map(self, X, lib=np):
        """φ⁰(X): the stretched bar for ``stretch``, the rest shape otherwise."""
        if self.params.scenario == "stretch":
            return lib.stack([self.params.stretch * X[:, 0], X[:, 1]], 1)
        return X * 1.0

    def potential_density(self, phi, X: torch.Tensor) -> torch.Tensor:
        """π(φ) at reference points X (…, 2) for a point map ``phi``: (…)."""
        x, F = value_and_grad_at(phi, X)
        return self.local_density(x, F, X)

    def local_density(self, x: torch.Tensor, F: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """π from φ(X) = x (…, 2) and ∇φ(X) = F (…, 2, 2): (…)."""
        out = neo_hookean_density(F, self.mu, self.lam) + self.params.density * self.g * x[..., 1]
        if self.params.scenario == "fall" and self.params.contact_stiffness > 0:
            pen = torch.relu(self.params.ground - x[..., 1])
            out = out + 0.5 * self.params.contact_stiffness * pen**2
        return out

    def mass(self, X: torch.Tensor) -> torch.Tensor:
        return torch.full(X.shape[:-1], self.params.density, dtype=X.dtype, device=X.device)

    # sampling ----------------------------------------------------------------
    def sample_interior(self, n, gen, device):
        """Stratified: one uniform point in each cell of an ≈ square-celled grid (low
        variance for the energy integral), (≈n, 2), requires grad."""
        L, H = self.params.length, self.params.height
        ny = max(1, round((n * H / L) ** 0.5))
        nx = max(1, n // ny)
        j, i = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
        u = torch.rand(ny, nx, 2, generator=gen)
        X = (i + u[..., 0]) / nx * L
        Y = (j + u[..., 1]) / ny * H - H / 2
        return torch.stack([X.reshape(-1), Y.reshape(-1)], 1).to(device)

    # objectives --------------------------------------------------------------
    def initial_problems(self, current, n_interior, n_boundary, device):
        def fit(net, X):
            return self.deformation(net)(X) - self.initial_map(X.reshape(-1, 2), torch).reshape(X.shape)

        return [SubProblem("fit", "phi", [Residual("fit", lambda g: self.sample_interior(n_interior, g, device), fit)])]

    def step_problems(self, ctx: StepContext):
        hist = [self.deformation(h["phi"]) for h in ctx.history]
        integ = ctx.integrator

        def density(net, X):
            return integ.energy_density(self.term, self.deformation(net), hist, X, ctx.dt)

        sample = lambda g: self.sample_interior(ctx.n_interior, g, ctx.device)  # noqa: E731
        parts = integ.energy_parts(self.term, hist, ctx.dt) if hasattr(integ, "energy_parts") else None
        split = {}
        if parts is not None:  # (φ, ∇φ) and their energy: the Gauss–Newton curvature of the step
            split = {"inner": lambda net, X: parts[0](self.deformation(net), X), "outer": parts[1]}
        return [SubProblem("advance", "phi", [Energy("incremental_potential", sample, density, **split)])]

    # output ------------------------------------------------------------------
    def output_coords(self, resolution):
        return {"point": np.arange(len(self.ref_points), dtype=np.float64)}

    def output_vars(self, resolution):
        pts = ", ".join(f"({x:g}, {y:g})" for x, y in self.ref_points)
        pos = {"long_name": "deformed positions of the reference points", "units": "1", "reference_positions": pts}
        en = {"long_name": "total energy: kinetic + elastic + gravity + contact", "units": "1"}
        return {
            "points": (("point", "component"), (len(self.ref_points), 2), pos),
            "points_ref": (("point", "component"), (len(self.ref_points), 2), {**pos, "long_name": "FEM reference positions"}),
            "energy": ((), (), en),
            "energy_ref": ((), (), {**en, "long_name": "total energy of the FEM reference"}),
        }

    def _quadrature(self, resolution):
        L, H = self.params.length, self.params.height
        nx = max(8, resolution)
        ny = max(2, round(nx * H / L))
        xs, ys = (np.arange(nx) + 0.5) / nx * L, (np.arange(ny) + 0.5) / ny * H - H / 2
        X, Y = np.meshgrid(xs, ys)
        return np.stack([X.ravel(), Y.ravel()], 1), L * H / (nx * ny)

    def evaluate(self, fields, resolution, device):
        phi = self.deformation(fields["phi"])
        with torch.no_grad():
            pts = phi(torch.as_tensor(self.ref_points, dtype=torch.float32, device=device)).cpu().numpy()
        Xq, w = self._quadrature(resolution)
        X = torch.as_tensor(Xq, dtype=torch.float32, device=device)
        phi_point = self.deformation(module_point_fn(fields["phi"]))
        with torch.no_grad():
            with batch_mode():
                potential = float(self.potential_density(phi_point, X).sum()) * w
            xq = phi(X).cpu().numpy().astype(np.float64)
        if self._prev_quad is not None:
            kinetic = 0.5 * self.params.density * w * float((((xq - self._prev_quad) / self.dt) ** 2).sum())
        else:  # step 0 starts at rest; right after a resume the velocity is unknown
            kinetic = 0.0 if self._fem_step <= 0 else np.nan
        self._prev_quad = xq
        return {"points": pts.astype(np.float32), "energy": np.float32(potential + kinetic)}

    def _build_fem(self) -> ElasticFEM:
        p = self.params
        nodes, tris = bar_mesh(p.length, p.height, p.fem_nx, p.fem_ny)
        fixed = np.where(nodes[:, 0] <= 1e-12)[0] if p.fixed == "left" else None
        fem = ElasticFEM(
            nodes, tris, p.density, self.mu, self.lam, (0.0, -self.g), fixed,
            ground=p.ground if p.scenario == "fall" else None, contact_stiffness=p.contact_stiffness,
        )
        fem.set_state(self.initial_map(nodes))
        idx = [int(np.argmin(((nodes - q) ** 2).sum(1))) for q in self.ref_points]
        self._fem_points = np.array(idx)
        return fem

    def reference(self, t, resolution):
        step = int(round(t / self.dt))
        if self._fem is None or self._fem_step > step:
            self._fem, self._fem_step = self._build_fem(), 0
        while self._fem_step < step:
            self._fem.step(self.dt)
            self._fem_step += 1
        return {
            "points_ref": self._fem.positions[self._fem_points].astype(np.float32),
            "energy_ref": np.float32(self._fem.total_energy(self.dt)),
        }

    def errors(self, outputs, reference):
        got, ref = outputs["points"].astype(np.float64), reference["points_ref"].astype(np.float64)
        scale = max(np.linalg.norm(ref - self.ref_points), 0.01 * self.params.length * np.sqrt(len(ref)))
        dist = np.linalg.norm(got - ref, axis=1)
        return {"rel_l2": float(np.linalg.norm(got - ref) / scale), "max_err": float(dist.max()), "tip_error": float(dist[self.tip])}

    def figure(self, outputs, t, resolution):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(*self.ref_points.T, ".", color="0.7", label="rest")
        if self._fem is not None:
            ax.plot(*self._fem.positions[self._fem_points].T, "kx", label="FEM")
        ax.plot(*outputs["points"].T, "o", mfc="none", label="INSR")
        ax.set(aspect="equal", title=f"t = {t:.3g}", xlabel="x", ylabel="y")
        ax.legend(loc="best", fontsize=7)
        fig.tight_layout()
        return fig
