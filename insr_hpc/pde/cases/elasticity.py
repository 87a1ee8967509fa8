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

Bodies from meshes (``problem.mesh``: a builtin or a triangle / tetrahedral mesh file;
:mod:`insr_hpc.pde.mesh`): the dimension follows the mesh, samples are uniform in its
volume, the fixed side (``fixed: -x`` …) is clamped by construction as the bar's left
end, and the pieces of the INSR paper's scenarios are terms of the potential: the
material (``neo_hookean``, ``arap``, ``arap_volume``), gravity, a time-limited external
force, plane and sphere colliders (penalties), and a pulled vertex set (a penalty term of
its own). Stored per step: the deformed mesh vertices (``vertices``, step × vertex ×
component) and the FEM reference's (:mod:`insr_hpc.pde.baselines.mesh_fem`, the same
incremental potential on the mesh refined ``fem_refine`` times).

Stored per step (the bar): the deformed positions of 27 reference points (3 rows y = −H/2, 0,
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
from insr_hpc.pde.terms import (
    Energy,
    PotentialTerm,
    Residual,
    material_density,
    module_point_fn,
    plane_penalty,
    sphere_penalty,
)

AXES = "xyz"



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
        self._fem = None
        self._fem_step = -1
        self._prev_quad: np.ndarray | None = None
        if p.mesh:
            self._init_mesh()
        else:
            self._init_bar()
        self.key = "points" if self.mesh is None else "vertices"  # the stored positions (``key + "_ref"``: FEM's)

    def _init_bar(self):
        p = self.params
        self.mesh = None
        self.dim = 2
        self.lo, self.extent = np.array([0.0, -p.height / 2]), np.array([p.length, p.height])
        self.measure = p.length * p.height
        cols, rows = np.linspace(0, p.length, 9), np.array([-p.height / 2, 0.0, p.height / 2])
        X, Y = np.meshgrid(cols, rows)
        self.ref_points = np.stack([X.ravel(), Y.ravel()], 1)  # (27, 2), rows bottom → top
        self.tip = 9 + 8  # centre row, X = L
        self._pulled = np.zeros(0, dtype=np.int64)

    def _init_mesh(self):
        from insr_hpc.pde.mesh import load_mesh

        p = self.params
        self.mesh = load_mesh(p.mesh, p.mesh_resolution)
        self.dim = d = self.mesh.dim
        self.fields = {"phi": FieldSpec(d, d)}
        lo, hi = self.mesh.bbox
        self.lo, self.extent = np.asarray(lo, float), np.asarray(hi, float) - np.asarray(lo, float)
        self.measure = float(self.mesh.measure)
        self.ref_points = np.asarray(self.mesh.points, float)
        X = self.ref_points
        side = self._fixed_side()
        if side is not None:  # the vertex farthest from the clamped side
            axis = AXES.index(side[1])
            self.tip = int(np.argmax(X[:, axis] if side[0] == "-" else -X[:, axis]))
        else:  # the lowest vertex: the first to touch a collider
            self.tip = int(np.argmin(X[:, -1]))
        self._pulled = self._pulled_vertices(self.mesh)

    # the body's pieces -------------------------------------------------------
    def _fixed_side(self) -> str | None:
        f = self.params.fixed
        return None if f == "none" else "-x" if f == "left" else f

    def _pulled_vertices(self, mesh) -> np.ndarray:
        p = self.params
        if not p.pull:
            return np.zeros(0, dtype=np.int64)
        return mesh.select(side=p.pull_side or None, box=p.pull_box or None)

    def pull_active(self, t: float) -> bool:
        p = self.params
        return (len(self._pulled) > 0 and p.constraint_stiffness > 0
                and (p.pull_until < 0 or t <= p.pull_until + 1e-12))

    def force_at(self, t: float) -> np.ndarray | None:
        p = self.params
        return np.asarray(p.force, float) if p.force and t <= p.force_until + 1e-12 else None

    def ground_plane(self) -> float | None:
        return self.params.ground if self.params.scenario == "fall" else None

    # physics -----------------------------------------------------------------
    def deformation(self, net):
        """φ(X) = X + s(X)·w(X) for the network w; s is the distance to the clamped side
        over the body's extent (s = X/L for the bar's left end), so φ = X there exactly;
        s = 1 without a clamped side. Works on batches (N, d) and, for a per-point
        ``net``, on one point (d,)."""
        side = self._fixed_side()
        if side is None:
            axis, sign, lo = 0, 0.0, 0.0
        else:
            axis = AXES.index(side[1])
            sign = 1.0 if side[0] == "-" else -1.0
            lo = self.lo[axis] if sign > 0 else self.lo[axis] + self.extent[axis]
        ext = float(self.extent[axis])

        def phi(X: torch.Tensor) -> torch.Tensor:
            w = net(X)
            if side is None:
                return X + w
            return X + (sign * (X[..., axis : axis + 1] - lo) / ext) * w

        forward = getattr(net, "value_and_jacobian", None)
        if forward is None:
            return phi

        def value_and_jacobian(X: torch.Tensor):
            """φ and ∇φ = I + s ∇w + w ⊗ ∇s from the network's forward-mode Jacobian."""
            w, dw = forward(X)
            eye = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
            if side is None:
                return X + w, eye + dw
            s = sign * (X[..., axis : axis + 1] - lo) / ext
            grad_s = eye[axis] * (sign / ext)
            return X + s * w, eye + s[..., None] * dw + w[..., :, None] * grad_s

        return with_jacobian(phi, value_and_jacobian)

    def initial_map(self, X, lib=np):
        """φ⁰(X): stretched by ``stretch`` along x away from the clamped side (bar: x = 0)
        for ``stretch``, the rest shape otherwise."""
        if self.params.scenario == "stretch":
            x0 = self.lo[0] if self._fixed_side() != "+x" else self.lo[0] + self.extent[0]
            cols = [x0 + self.params.stretch * (X[:, 0] - x0)] + [X[:, k] for k in range(1, X.shape[1])]
            return lib.stack(cols, 1)
        return X * 1.0

    def potential_term(self, t: float) -> PotentialTerm:
        """The potential at time t (the external force is time-limited)."""
        force = self.force_at(t)

        def local(x, F, X):
            return self.local_density(x, F, X, force)

        def density(phi, X):
            x, F = value_and_grad_at(phi, X)
            return local(x, F, X)

        return PotentialTerm(density=density, mass=self.mass, measure=self.measure, local=local)

    def local_density(self, x: torch.Tensor, F: torch.Tensor, X: torch.Tensor, force=None) -> torch.Tensor:
        """π from φ(X) = x (…, d) and ∇φ(X) = F (…, d, d): Ψ(F) − ρ g·x − ρ f·x + contact
        penalties k/2·pen² (plane: pen = max(0, ground − x_down); sphere: max(0, r − |x − c|))."""
        p = self.params
        out = material_density(p.material, F, self.mu, self.lam) + p.density * self.g * x[..., -1]
        if force is not None:
            out = out - p.density * (x * torch.as_tensor(force, dtype=x.dtype, device=x.device)).sum(-1)
        ground = self.ground_plane()
        if ground is not None and p.contact_stiffness > 0:
            out = out + plane_penalty(x, ground, p.contact_stiffness)
        if p.sphere_radius > 0 and p.contact_stiffness > 0:
            out = out + sphere_penalty(x, p.sphere_centre, p.sphere_radius, p.contact_stiffness)
        return out

    def mass(self, X: torch.Tensor) -> torch.Tensor:
        return torch.full(X.shape[:-1], self.params.density, dtype=X.dtype, device=X.device)

    # sampling ----------------------------------------------------------------
    def sample_interior(self, n, gen, device):
        """The bar: stratified, one uniform point in each cell of an ≈ square-celled grid
        (low variance for the energy integral), (≈n, 2). A mesh: uniform in its volume,
        stratified over its simplices (:func:`insr_hpc.pde.mesh.sample_volume`)."""
        if self.mesh is not None:
            from insr_hpc.pde.mesh import sample_volume

            return sample_volume(self.mesh, n, gen, device=device, dtype=torch.float32, stratified=True)
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
        d = self.dim

        def fit(net, X):
            return self.deformation(net)(X) - self.initial_map(X.reshape(-1, d), torch).reshape(X.shape)

        return [SubProblem("fit", "phi", [Residual("fit", lambda g: self.sample_interior(n_interior, g, device), fit)])]

    def step_problems(self, ctx: StepContext):
        hist = [self.deformation(h["phi"]) for h in ctx.history]
        sample = lambda g: self.sample_interior(ctx.n_interior, g, ctx.device)  # noqa: E731
        terms = ctx.integrator.step_terms(self.potential_term(ctx.t), self.deformation, hist, sample, ctx.dt)
        if self.pull_active(ctx.t):
            terms.append(self._pull_term(ctx.device))
        return [SubProblem("advance", "phi", terms)]

    def _pull_term(self, device) -> Energy:
        """k/2 · mean over the pulled vertices of |φ(Xᵢ) − (Xᵢ + u)|² (the FEM's penalty set)."""
        k = self.params.constraint_stiffness
        X = torch.as_tensor(self.ref_points[self._pulled], dtype=torch.float32, device=device)
        u = torch.as_tensor(self.params.pull, dtype=torch.float32, device=device)

        def outer(y, Xs):
            return 0.5 * k * ((y - Xs - u) ** 2).sum(-1)

        def inner(net, Xs):
            return self.deformation(net)(Xs)

        return Energy("pull", lambda g: X, lambda net, Xs: outer(inner(net, Xs), Xs), inner=inner, outer=outer)

    # output ------------------------------------------------------------------
    def output_coords(self, resolution):
        if self.mesh is not None:
            return {"vertex": np.arange(len(self.ref_points), dtype=np.float64)}
        return {"point": np.arange(len(self.ref_points), dtype=np.float64)}

    def static_vars(self, resolution):
        if self.mesh is None:
            return {}
        faces = np.asarray(self.mesh.boundary_faces, dtype=np.int64)
        return {
            "mesh_points": (("vertex", "component"), "float64",
                            {"long_name": "reference (undeformed) positions of the mesh vertices", "units": "1"},
                            self.ref_points),
            "mesh_faces": (("face", "corner"), "int64",
                           {"long_name": "boundary faces of the mesh (vertex indices, outward)", "units": "1"}, faces),
        }

    def extra_attrs(self) -> dict:
        if self.mesh is None:
            return {}
        p = self.params
        return {"mesh": p.mesh, "dim": self.dim, "ground": self.ground_plane(),
                "sphere": [*p.sphere_centre, p.sphere_radius] if p.sphere_radius > 0 else [],
                "tip_vertex": self.tip}

    def output_vars(self, resolution):
        en = {"long_name": "total energy: kinetic + elastic + gravity + external + contact (+ pull)", "units": "1"}
        energies = {
            "energy": ((), (), en),
            "energy_ref": ((), (), {**en, "long_name": "total energy of the FEM reference"}),
        }
        n, d = len(self.ref_points), self.dim
        if self.mesh is not None:
            pos = {"long_name": "deformed positions of the mesh vertices", "units": "1"}
            return {
                "vertices": (("vertex", "component"), (n, d), pos),
                "vertices_ref": (("vertex", "component"), (n, d), {**pos, "long_name": "FEM reference positions of the mesh vertices"}),
                **energies,
            }
        pts = ", ".join(f"({x:g}, {y:g})" for x, y in self.ref_points)
        pos = {"long_name": "deformed positions of the reference points", "units": "1", "reference_positions": pts}
        return {
            "points": (("point", "component"), (n, 2), pos),
            "points_ref": (("point", "component"), (n, 2), {**pos, "long_name": "FEM reference positions"}),
            **energies,
        }

    def _quadrature(self, resolution):
        """Points and weights of the energy quadrature: the bar's cell centres; a mesh's
        simplex centroids weighted by their volumes."""
        if self.mesh is not None:
            cells = np.asarray(self.mesh.cells)
            return self.ref_points[cells].mean(1), np.asarray(self.mesh.volumes, float)
        L, H = self.params.length, self.params.height
        nx = max(8, resolution)
        ny = max(2, round(nx * H / L))
        xs, ys = (np.arange(nx) + 0.5) / nx * L, (np.arange(ny) + 0.5) / ny * H - H / 2
        X, Y = np.meshgrid(xs, ys)
        return np.stack([X.ravel(), Y.ravel()], 1), np.full(nx * ny, L * H / (nx * ny))

    def evaluate(self, fields, resolution, device):
        phi = self.deformation(fields["phi"])
        with torch.no_grad():
            pts = phi(torch.as_tensor(np.array(self.ref_points), dtype=torch.float32, device=device)).cpu().numpy()
        Xq, w = self._quadrature(resolution)
        X = torch.as_tensor(Xq, dtype=torch.float32, device=device)
        phi_point = self.deformation(module_point_fn(fields["phi"]))
        t = self.time_now
        with torch.no_grad():
            with batch_mode():  # the stored energy leaves out the external force's work (as the FEM's)
                density = self.potential_term(np.inf).density(phi_point, X)
                potential = float((density.double().cpu().numpy() * w).sum())
            moving = pts.astype(np.float64) if self.mesh is not None else phi(X).cpu().numpy().astype(np.float64)
        if self.pull_active(t):
            target = self.ref_points[self._pulled] + np.asarray(self.params.pull, float)
            potential += 0.5 * self.params.constraint_stiffness * float(((moving[self._pulled] - target) ** 2).sum(1).mean())
        # lumped masses of the moving points: the mesh's vertices, or the bar's quadrature cells
        mass = self.params.density * (np.asarray(self.mesh.lumped_volumes(), float) if self.mesh is not None else w)
        if self._prev_quad is not None:
            kinetic = 0.5 * float((mass[:, None] * ((moving - self._prev_quad) / self.dt) ** 2).sum())
        else:  # step 0 starts at rest; right after a resume the velocity is unknown
            kinetic = 0.0 if self._fem_step <= 0 else np.nan
        self._prev_quad = moving
        return {self.key: pts.astype(np.float32), "energy": np.float32(potential + kinetic)}

    def _build_fem(self, on=None):
        """The FEM reference of this run: the bar's structured mesh, or the body's mesh
        refined ``fem_refine`` times; ``on``: another mesh of the same body instead (the
        benchmark's equal-memory and fine meshes)."""
        p = self.params
        if self.mesh is None:
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
        from insr_hpc.pde.baselines.mesh_fem import Collider, MeshFEM, PenaltySet

        fine = on if on is not None else self.mesh.refined(p.fem_refine) if p.fem_refine else self.mesh
        d = self.dim
        side = self._fixed_side()
        fixed = fine.select(side=side) if side is not None else None
        gravity = np.zeros(d)
        gravity[-1] = -self.g
        colliders = []
        ground = self.ground_plane()
        if ground is not None:
            normal = np.zeros(d)
            normal[-1] = 1.0
            point = np.zeros(d)
            point[-1] = ground
            colliders.append(Collider("plane", point, normal, None, p.contact_stiffness))
        if p.sphere_radius > 0:
            colliders.append(Collider("sphere", np.asarray(p.sphere_centre, float), None, p.sphere_radius, p.contact_stiffness))
        penalties = []
        if len(self._pulled) and p.constraint_stiffness > 0:
            until = np.inf if p.pull_until < 0 else p.pull_until
            penalties.append(PenaltySet(self._pulled_vertices(fine), np.asarray(p.pull, float), p.constraint_stiffness, until))
        fem = MeshFEM(
            fine.points, fine.cells, density=p.density, material=p.material, mu=self.mu, lam=self.lam,
            gravity=gravity, fixed=fixed, colliders=colliders, penalties=penalties,
            force=np.asarray(p.force, float) if p.force else None, force_until=p.force_until,
        )
        fem.set_state(self.initial_map(np.asarray(fine.points, float)))
        self._fem_points = np.arange(len(self.ref_points))  # refinement keeps the vertices first
        return fem

    def reference(self, t, resolution):
        step = int(round(t / self.dt))
        if self._fem is None or self._fem_step > step:
            self._fem, self._fem_step = self._build_fem(), 0
        while self._fem_step < step:
            info = self._fem.step(self.dt)
            if info is not None and not getattr(info, "converged", True):
                raise RuntimeError(f"the FEM reference did not converge at step {self._fem_step + 1} "
                                   f"(|grad| {info.grad_norm:.3g} after {info.iterations} Newton iterations)")
            self._fem_step += 1
        return {
            self.key + "_ref": self._fem.positions[self._fem_points].astype(np.float32),
            "energy_ref": np.float32(self._fem.total_energy(self.dt)),
        }

    def errors(self, outputs, reference):
        got, ref = outputs[self.key].astype(np.float64), reference[self.key + "_ref"].astype(np.float64)
        size = float(np.linalg.norm(self.extent)) if self.mesh is not None else self.params.length
        scale = max(np.linalg.norm(ref - self.ref_points), 0.01 * size * np.sqrt(len(ref)))
        dist = np.linalg.norm(got - ref, axis=1)
        return {"rel_l2": float(np.linalg.norm(got - ref) / scale), "max_err": float(dist.max()), "tip_error": float(dist[self.tip])}

    def figure(self, outputs, t, resolution):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if self.mesh is not None:
            from insr_hpc.pde.mesh_render import body_figure

            ref = self._fem.positions[self._fem_points] if self._fem is not None else None
            return body_figure(np.asarray(self.mesh.boundary_faces), [outputs["vertices"]], [t],
                               references=[ref] if ref is not None else None, attrs=self.extra_attrs())
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(*self.ref_points.T, ".", color="0.7", label="rest")
        if self._fem is not None:
            ax.plot(*self._fem.positions[self._fem_points].T, "kx", label="FEM")
        ax.plot(*outputs["points"].T, "o", mfc="none", label="INSR")
        ax.set(aspect="equal", title=f"t = {t:.3g}", xlabel="x", ylabel="y")
        ax.legend(loc="best", fontsize=7)
        fig.tight_layout()
        return fig
