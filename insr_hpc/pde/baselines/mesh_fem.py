"""P1 finite elements on triangle (2D) and tetrahedron (3D) meshes of arbitrary bodies: the
classical reference that minimises EXACTLY the incremental potential of the neural
elastodynamics solver, so a comparison measures the representation, not the model.

Per implicit-Euler step n → n+1 with step Δt, over the nodal positions x (d = 2 or 3):

    E(x) = Σᵢ mᵢ/(2Δt²)|xᵢ − x̃ᵢ|²,  x̃ = 2xⁿ − xⁿ⁻¹          (inertia; absent when dt=None)
         + Σₜ Vₜ Ψ(Fₜ)                                        (elastic; F constant per simplex)
         − Σᵢ mᵢ g·xᵢ − Σᵢ mᵢ f(tₙ₊₁)·xᵢ                      (gravity; force while tₙ₊₁ ≤ force_until)
         + Σᵢ (mᵢ/ρ) Σ_c k_c/2 pen_c(xᵢ)²                     (penalty contact, nodal quadrature)
         + Σ_S k_S/2 mean_{i∈S} |xᵢ − (Xᵢ + u_S)|²            (positional penalties while tₙ₊₁ ≤ until)

with lumped masses mᵢ = ρ·(each simplex's volume split equally among its d+1 nodes) and the
Dirichlet nodes (x = X) eliminated. Ψ is one of ``MATERIALS`` (:func:`material_density`):
log-free "stable" neo-Hookean, ARAP, ARAP + volume.

Solver: Newton on the free degrees of freedom with the sparse tangent, backtracking (Armijo)
line search on E, converged when ‖∇E‖ ≤ tol·max(‖∇E(start)‖, ‖external load‖), or when the
Newton correction is below ``STEP_FLOOR`` (1e-11) of the body's extent (the gradient's round-off
floor: e.g. 1.4e-12 against a 1e-12 target on the 2 673-node beam). Each iteration first tries
the exact Hessian and keeps it when the factorisation (or CG) certifies it positive definite;
otherwise it uses the per-element SPD projection in F-space through the closed-form eigen-
system of isotropic energies (scaling modes from a d×d matrix, "flip" and "twist" modes per
pair of signed singular values; Smith et al. 2019, "Analytic eigensystems for isotropic
distortion energies"), negative eigenvalues clamped to 0. Projection alone converged only
linearly for ARAP in bending (50 iterations unconverged on the 2 673-node beam; twist modes of
compressed elements are negative); exact-first takes 4. Contact with a sphere keeps only the
SPD normal part of its Hessian (the dropped tangential part is of relative size
penetration/radius). A step that does not converge within ``max_newton`` says so.

Note on "neo_hookean" (the log-free form the neural side uses): at F = I it linearises to
linear elasticity with Lamé (μ, λ − μ), not (μ, λ) (checked against scikit-fem in the tests);
for ν < 1/8 its 3D bulk modulus λ − μ/3 is negative. "arap_volume" linearises to (μ, λ).

Assembly: hand-written, vectorised numpy rather than scikit-fem. Measured on this machine
(one thread, ``time.process_time``, 3D beam, vector P1 tets): scikit-fem's ``asm`` of the
*constant* linear-elasticity form takes 0.46 s at 6 480 nodes / 31 944 tets and 5.4 s at
35 721 nodes / 192 000 tets (``Basis`` setup 0.04 s / 0.42 s); the numpy path here builds the
full nonlinear, SVD-based, projected tangent in 0.14 s at 4 961 nodes / 24 000 tets and 1.15 s
at 35 721 / 192 000 (about 4–5× faster than scikit-fem doing less), and a per-element
projected tangent could only reach scikit-fem's forms as per-quadrature-point fields.
scikit-fem is used in the tests as an independent check of the tangent at F = I.

Linear solves: ``linear_solver="direct"`` factorises with SuperLU after a geometric nested-
dissection ordering of the nodes (recursive coordinate bisection with vertex separators).
On the 35 721-node beam (105 840 DOFs) SuperLU's own COLAMD ordering took 100 s per
factorisation, this ordering 29 s; at 6 480 nodes 2.3 s and 1.2 s. ``"cg"`` is a block-
Jacobi preconditioned conjugate gradient (inexact Newton, forcing min(0.1, ‖∇E‖/‖∇E₀‖)), fast
for dynamic steps where the mass term conditions the system, slow for static solves of large
meshes. ``"auto"`` (default) is direct up to ``DIRECT_MAX_DOFS`` free DOFs and CG above.

Arrays: points (n, d) reference positions X; cells (m, d+1) node indices; positions (n, d).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

MATERIALS = ("neo_hookean", "arap", "arap_volume")
DIRECT_MAX_DOFS = 30_000
STEP_FLOOR = 1e-11  # a Newton correction below this fraction of the body's extent: converged
_CHUNK = 16_384  # elements per block when building tangents (bounds memory)


# ----------------------------------------------------------------------------- materials


def _cofactor(F: np.ndarray) -> np.ndarray:
    """∂ det F / ∂F (m, d, d)."""
    if F.shape[-1] == 2:
        return np.stack([np.stack([F[:, 1, 1], -F[:, 1, 0]], -1), np.stack([-F[:, 0, 1], F[:, 0, 0]], -1)], 1)
    c0, c1, c2 = F[:, :, 0], F[:, :, 1], F[:, :, 2]
    return np.stack([np.cross(c1, c2), np.cross(c2, c0), np.cross(c0, c1)], -1)


def _det(F: np.ndarray) -> np.ndarray:
    if F.shape[-1] == 2:
        return F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
    return np.einsum("ma,ma->m", F[:, :, 0], np.cross(F[:, :, 1], F[:, :, 2]))


def rotation_svd(F: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed SVD F = U diag(σ) Vᵀ with U, V rotations (det +1): when det F < 0 the smallest
    σ is negative. Returns U (m,d,d), σ (m,d) (descending magnitude), V (m,d,d)."""
    U, s, Vt = np.linalg.svd(F)
    V = np.transpose(Vt, (0, 2, 1)).copy()
    U = U.copy()
    s = s.copy()
    neg = np.linalg.det(U) < 0
    U[neg, :, -1] *= -1
    s[neg, -1] *= -1
    neg = np.linalg.det(V) < 0
    V[neg, :, -1] *= -1
    s[neg, -1] *= -1
    return U, s, V


def material_density(name: str, F: np.ndarray, mu: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Energy density Ψ (m,) and first Piola stress P = ∂Ψ/∂F (m, d, d) for F (m, d, d).

    neo_hookean: μ/2(|F|² − d) − μ(J − 1) + λ/2(J − 1)²; arap: μ Σₖ(σₖ − 1)² = μ|F − R|²;
    arap_volume: arap + λ/2(J − 1)².
    """
    if name not in MATERIALS:
        raise ValueError(f"unknown material {name!r}; one of {MATERIALS}")
    d = F.shape[-1]
    J = _det(F)
    cof = _cofactor(F)
    if name == "neo_hookean":
        psi = 0.5 * mu * ((F**2).sum((1, 2)) - d) - mu * (J - 1) + 0.5 * lam * (J - 1) ** 2
        P = mu * F + (lam * (J - 1) - mu)[:, None, None] * cof
        return psi, P
    U, s, V = rotation_svd(F)
    R = U @ np.transpose(V, (0, 2, 1))
    psi = mu * ((s - 1) ** 2).sum(1)
    P = 2 * mu * (F - R)
    if name == "arap_volume":
        psi = psi + 0.5 * lam * (J - 1) ** 2
        P = P + (lam * (J - 1))[:, None, None] * cof
    return psi, P


def _pairs(d: int) -> list[tuple[int, int, int]]:
    """(i, j, k): pairs of singular values and (3D) the remaining index."""
    return [(0, 1, 1)] if d == 2 else [(0, 1, 2), (0, 2, 1), (1, 2, 0)]


def material_hessian(name: str, F: np.ndarray, mu: float, lam: float, project: bool = True) -> np.ndarray:
    """∂²Ψ/∂F² (m, d², d²) in row-major vec(F) (index a·d + b for F[a, b]), from the closed-form
    eigen-system of the isotropic density; ``project`` clamps negative eigenvalues to 0."""
    if name not in MATERIALS:
        raise ValueError(f"unknown material {name!r}; one of {MATERIALS}")
    m, d = F.shape[0], F.shape[-1]
    U, s, V = rotation_svd(F)
    J = np.prod(s, 1)
    gJ = np.stack([np.prod(np.delete(s, i, 1), 1) for i in range(d)], 1)  # ∂J/∂σᵢ
    hJ = np.zeros((m, d, d))  # ∂²J/∂σ²
    for i, j, k in _pairs(d):
        v = 1.0 if d == 2 else s[:, k]
        hJ[:, i, j] = hJ[:, j, i] = v
    eye = np.eye(d)[None]
    pairs = _pairs(d)
    third = np.ones((m, len(pairs))) if d == 2 else np.stack([s[:, k] for _, _, k in pairs], 1)
    if name == "neo_hookean":
        c = lam * (J - 1) - mu
        Hs = mu * eye + lam * gJ[:, :, None] * gJ[:, None, :] + c[:, None, None] * hJ
        flip = mu - c[:, None] * third
        twist = mu + c[:, None] * third
    else:
        ssum = np.stack([s[:, i] + s[:, j] for i, j, _ in pairs], 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            tw = 2 * mu * (1 - 2 / ssum)
        tw = np.where(np.abs(ssum) < 1e-12, -np.inf, tw)  # σᵢ + σⱼ = 0: unbounded below
        Hs = 2 * mu * np.broadcast_to(eye, (m, d, d)).copy()
        flip = np.full((m, len(pairs)), 2 * mu)
        twist = tw
        if name == "arap_volume":
            c = lam * (J - 1)
            Hs = Hs + lam * gJ[:, :, None] * gJ[:, None, :] + c[:, None, None] * hJ
            flip = flip - c[:, None] * third
            twist = twist + c[:, None] * third
    ev, q = np.linalg.eigh(Hs)  # scaling modes: U diag(q) Vᵀ
    outer = np.einsum("mai,mbj->mijab", U, V)  # uᵢ vⱼᵀ
    modes = [np.einsum("mij,miab->mjab", q, outer[:, np.arange(d), np.arange(d)])]
    r2 = 1 / math.sqrt(2)
    fl = [(outer[:, i, j] + outer[:, j, i]) * r2 for i, j, _ in pairs]
    tv = [(outer[:, i, j] - outer[:, j, i]) * r2 for i, j, _ in pairs]
    Q = np.concatenate([modes[0], np.stack(fl, 1), np.stack(tv, 1)], 1).reshape(m, d * d, d * d)
    lam_all = np.concatenate([ev, flip, twist], 1)
    if project:
        lam_all = np.maximum(lam_all, 0.0)
    lam_all = np.where(np.isfinite(lam_all), lam_all, 0.0 if project else np.nan)
    Qt = np.transpose(Q, (0, 2, 1))  # rows: modes, so columns of Qt are vec(mode)
    return (Qt * lam_all[:, None, :]) @ Q


# ----------------------------------------------------------------------------- problem data


@dataclass
class Collider:
    """Penalty obstacle. plane: unit ``normal`` towards the free side through ``point_or_centre``,
    pen = max(0, −(x − p)·n); sphere (circle in 2D): pen = max(0, radius − |x − c|)."""

    kind: str
    point_or_centre: np.ndarray
    normal: np.ndarray | None = None
    radius: float | None = None
    stiffness: float = 0.0

    def __post_init__(self):
        self.point_or_centre = np.asarray(self.point_or_centre, float)
        if self.kind == "plane":
            n = np.asarray(self.normal, float)
            self.normal = n / np.linalg.norm(n)
        elif self.kind == "sphere":
            if self.radius is None or self.radius <= 0:
                raise ValueError("sphere collider needs a positive radius")
        else:
            raise ValueError(f"collider kind {self.kind!r}: 'plane' or 'sphere'")


@dataclass
class PenaltySet:
    """k/2 · mean_{i∈nodes}|xᵢ − (Xᵢ + displacement)|², active while tₙ₊₁ ≤ until."""

    nodes: np.ndarray
    displacement: np.ndarray
    stiffness: float
    until: float = math.inf


@dataclass
class StepInfo:
    iterations: int
    converged: bool
    grad_norm: float
    seconds_cpu: float
    energy: float = math.nan  # E at the solution
    linear_iterations: int = 0  # CG iterations (0 with the direct solver)
    energy_history: list[float] = field(default_factory=list)  # E at the start and after each iteration


# ----------------------------------------------------------------------------- meshes


def box_tet_mesh(lo, hi, divisions) -> tuple[np.ndarray, np.ndarray]:
    """Structured tetrahedral mesh of the box [lo, hi] ⊂ R³: (nx+1)(ny+1)(nz+1) nodes, each hex
    split into the 6 (positively oriented) Kuhn tetrahedra along its main diagonal, so the mesh
    is conforming and halving the spacing keeps every old vertex."""
    nx, ny, nz = (int(v) for v in divisions)
    axes = [np.linspace(a, b, k + 1) for a, b, k in zip(lo, hi, (nx, ny, nz))]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)

    def idx(i, j, k):
        return (i * (ny + 1) + j) * (nz + 1) + k

    i, j, k = (a.ravel() for a in np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"))
    tets = []
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        off = [0, 0, 0]
        verts = [idx(i, j, k)]
        for ax in perm:
            off[ax] += 1
            verts.append(idx(i + off[0], j + off[1], k + off[2]))
        tets.append(np.stack(verts, 1))
    tets = np.concatenate(tets)
    e = grid[tets[:, 1:]] - grid[tets[:, :1]]
    neg = np.linalg.det(e) < 0
    tets[neg, 2], tets[neg, 3] = tets[neg, 3].copy(), tets[neg, 2].copy()
    return grid, tets


# ----------------------------------------------------------------------------- ordering


def _node_graph(n: int, cells: np.ndarray) -> sp.csr_matrix:
    k = cells.shape[1]
    r = np.repeat(cells, k, axis=1).ravel()
    c = np.tile(cells, (1, k)).ravel()
    return sp.coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n)).tocsr()


def nested_dissection(points: np.ndarray, graph: sp.csr_matrix, nodes: np.ndarray, leaf: int = 200) -> np.ndarray:
    """Geometric nested-dissection order of ``nodes``: split at the median of the longest
    extent, the split's left nodes adjacent to the right form the separator, ordered last."""
    indptr, indices = graph.indptr, graph.indices
    side = np.zeros(len(points), np.int8)
    out: list[np.ndarray] = []

    def rec(idx: np.ndarray) -> None:
        if len(idx) <= leaf:
            out.append(idx)
            return
        pts = points[idx]
        ax = int(np.argmax(pts.max(0) - pts.min(0)))
        srt = idx[np.argsort(pts[:, ax], kind="stable")]
        left, right = srt[: len(srt) // 2], srt[len(srt) // 2:]
        side[right] = 2
        cnt = indptr[left + 1] - indptr[left]
        start = np.repeat(indptr[left] - (np.cumsum(cnt) - cnt), cnt)
        nb = indices[start + np.arange(cnt.sum())]
        hit = np.repeat(np.arange(len(left)), cnt)[side[nb] == 2]
        side[right] = 0
        sep = np.zeros(len(left), bool)
        sep[hit] = True
        rec(left[~sep])
        rec(right)
        out.append(left[sep])

    rec(np.asarray(nodes))
    return np.concatenate(out) if out else np.zeros(0, int)


# ----------------------------------------------------------------------------- solver


class MeshFEM:
    """Implicit-Euler hyperelastodynamics of a P1 simplex mesh; see the module docstring."""

    def __init__(self, points, cells, *, density: float, material: str, mu: float, lam: float, gravity,
                 fixed: np.ndarray | None = None, colliders: Sequence[Collider] = (),
                 penalties: Sequence[PenaltySet] = (), force: np.ndarray | None = None,
                 force_until: float = 0.0, tol: float = 1e-10, max_newton: int = 50,
                 linear_solver: str = "auto"):
        if material not in MATERIALS:
            raise ValueError(f"unknown material {material!r}; one of {MATERIALS}")
        self.points = np.asarray(points, float)
        self.cells = np.asarray(cells, np.int64)
        n, d = self.points.shape
        if d not in (2, 3) or self.cells.shape[1] != d + 1:
            raise ValueError(f"points (n, 2|3) and cells (m, d+1); got {self.points.shape}, {self.cells.shape}")
        self.d = d
        self.density, self.material, self.mu, self.lam = float(density), material, float(mu), float(lam)
        self.gravity = np.asarray(gravity, float).reshape(d)
        self.colliders = list(colliders)
        self.penalties = [PenaltySet(np.asarray(p.nodes, np.int64), np.asarray(p.displacement, float).reshape(d),
                                     float(p.stiffness), float(p.until)) for p in penalties]
        self.force = None if force is None else np.asarray(force, float).reshape(d)
        self.force_until = float(force_until)
        self.tol, self.max_newton = float(tol), int(max_newton)
        self.exact_first = True  # try the unprojected tangent first each Newton iteration
        if linear_solver not in ("auto", "direct", "cg"):
            raise ValueError("linear_solver: 'auto', 'direct' or 'cg'")

        X = self.points[self.cells]  # (m, d+1, d)
        Dm = np.transpose(X[:, 1:] - X[:, :1], (0, 2, 1))  # columns = edges
        det = np.linalg.det(Dm)
        if np.any(np.abs(det) <= 1e-14 * np.abs(Dm).max() ** d):
            raise ValueError("degenerate (zero-volume) cells")
        self.volume = np.abs(det) / math.factorial(d)
        self._extent = float(np.ptp(self.points, axis=0).max())
        Dinv = np.linalg.inv(Dm)
        self.G = np.concatenate([-Dinv.sum(1, keepdims=True), Dinv], 1)  # (m, d+1, d) shape gradients
        self.node_volume = np.bincount(self.cells.ravel(), np.repeat(self.volume / (d + 1), d + 1), minlength=n)
        self.mass = self.density * self.node_volume

        free = np.ones(n, bool)
        if fixed is not None and len(np.asarray(fixed)):
            free[np.asarray(fixed, np.int64)] = False
        self.free = free
        self.free_nodes = np.nonzero(free)[0]
        fid = -np.ones((n, d), np.int64)
        fid[free] = np.arange(free.sum() * d).reshape(-1, d)
        self._fid = fid
        self._nf = int(free.sum() * d)
        self._solver = linear_solver if linear_solver != "auto" else ("direct" if self._nf <= DIRECT_MAX_DOFS else "cg")
        self._pattern()
        self.positions = self.points.copy()
        self.previous = self.points.copy()
        self.time = 0.0

    # ---- state

    @property
    def n_dofs(self) -> int:
        """Free degrees of freedom (Dirichlet nodes eliminated)."""
        return self._nf

    def set_state(self, positions, previous=None) -> None:
        """Set xⁿ (and xⁿ⁻¹; None: at rest, xⁿ⁻¹ = xⁿ). Dirichlet nodes are put at X."""
        self.positions = np.asarray(positions, float).copy()
        self.positions[~self.free] = self.points[~self.free]
        self.previous = self.positions.copy() if previous is None else np.asarray(previous, float).copy()
        self.previous[~self.free] = self.points[~self.free]

    # ---- sparse pattern of the free-DOF tangent

    def _pattern(self) -> None:
        d, k, m = self.d, self.d + 1, len(self.cells)
        # node-level pattern first ((d+1)² pairs per cell instead of ((d+1)d)² entries), then
        # d×d blocks: row (i, a) lists the columns (j, c) of i's free neighbours j, j-major
        fn = np.full(len(self.points), -1, np.int64)
        fn[self.free_nodes] = np.arange(len(self.free_nodes))
        nfn = len(self.free_nodes)
        ce = fn[self.cells]  # (m, k)
        r = np.repeat(ce, k, axis=1).reshape(m, k, k)
        c = np.tile(ce, (1, k)).reshape(m, k, k)
        keep = (r >= 0) & (c >= 0)
        key = r * nfn + c
        ukey, inv = np.unique(key[keep], return_inverse=True)
        nr, nc = ukey // nfn, ukey % nfn
        nptr = np.searchsorted(nr, np.arange(nfn + 1))
        deg = np.diff(nptr)
        q = np.arange(len(ukey)) - nptr[nr]  # rank of the neighbour within its row
        rowptr = d * d * nptr[:-1, None] + np.arange(d) * d * deg[:, None]  # (nfn, d)
        self._nnz = d * d * len(ukey)
        self._indptr = np.append(rowptr.ravel(), self._nnz).astype(np.int64)
        ar = np.arange(d)
        pos = rowptr[nr][:, :, None] + (q * d)[:, None, None] + ar  # (npairs, a, c)
        indices = np.empty(self._nnz, np.int64)
        indices[pos.ravel()] = np.broadcast_to((nc * d)[:, None, None] + ar, pos.shape).ravel()
        self._indices = indices
        itype = np.int32 if self._nnz < 2**31 - 1 else np.int64
        pair = np.full((m, k, k), -1, np.int64)
        pair[keep] = inv.ravel()
        emap = np.full((m, k, d, k, d), self._nnz, itype)  # nnz: a dump slot for eliminated entries
        for kk in range(k):
            for ll in range(k):
                u = pair[:, kk, ll]
                ok = u >= 0
                emap[ok, kk, :, ll, :] = pos[u[ok]]
        self._emap = emap.reshape(m, -1)
        diag = np.searchsorted(ukey, np.arange(nfn) * (nfn + 1))
        self._bpos = pos[diag].ravel()  # node d×d blocks (row-major) in the CSR data
        self._perm = None
        if self._solver == "direct":
            order = nested_dissection(self.points, _node_graph(len(self.points), self.cells), self.free_nodes)
            self._perm = self._fid[order].ravel()
            # the permuted pattern once; each solve then only gathers its values
            probe = sp.csr_matrix((np.arange(1, self._nnz + 1, dtype=np.float64), self._indices, self._indptr),
                                  shape=(self._nf, self._nf))[self._perm][:, self._perm]
            probe.sort_indices()
            self._pdata = probe.data.astype(np.int64) - 1
            self._pind, self._pptr = probe.indices, probe.indptr

    # ---- energy pieces

    def _time_of(self, dt: float | None) -> float:
        return self.time + dt if dt is not None else self.time

    def _target(self) -> np.ndarray:
        return 2 * self.positions - self.previous

    def _deformation(self, x: np.ndarray) -> np.ndarray:
        return np.transpose(x[self.cells], (0, 2, 1)) @ self.G  # F = Σₖ xₖ ⊗ ∇Nₖ

    def _external(self, t: float) -> np.ndarray:
        g = self.gravity.copy()
        if self.force is not None and t <= self.force_until:
            g = g + self.force
        return g

    def _terms(self, x: np.ndarray, dt: float | None, t: float, target, *, grad: bool = True,
               hess: bool = False, elastic: bool = True, inertia: bool = True):
        """(E, ∇E (n, d) or None, node d×d Hessian blocks (n, d, d) or None) of every term but
        the elastic tangent."""
        n, d = x.shape
        E = 0.0
        G = np.zeros((n, d)) if grad else None
        B = np.zeros((n, d, d)) if hess else None
        if elastic:
            F = self._deformation(x)
            psi, P = material_density(self.material, F, self.mu, self.lam)
            E += float(self.volume @ psi)
            if grad:
                f = self.volume[:, None, None] * (self.G @ np.transpose(P, (0, 2, 1)))  # (m, d+1, d)
                for a in range(d):
                    G[:, a] += np.bincount(self.cells.ravel(), f[:, :, a].ravel(), minlength=n)
        if inertia and dt is not None:
            w = self.mass / dt**2
            diff = x - target
            E += float(0.5 * (w[:, None] * diff**2).sum())
            if grad:
                G += w[:, None] * diff
            if hess:
                B += w[:, None, None] * np.eye(d)
        ext = self._external(t)
        E -= float((self.mass[:, None] * ext * x).sum())
        if grad:
            G -= self.mass[:, None] * ext
        for col in self.colliders:
            k, w = col.stiffness, self.node_volume
            if col.kind == "plane":
                nrm = col.normal
                pen = np.maximum(0.0, -((x - col.point_or_centre) @ nrm))
                E += float(0.5 * k * (w * pen**2).sum())
                if grad:
                    G -= (k * w * pen)[:, None] * nrm
                if hess:
                    B += ((k * w) * (pen > 0))[:, None, None] * np.outer(nrm, nrm)
            else:
                r = x - col.point_or_centre
                dist = np.linalg.norm(r, axis=1)
                pen = np.maximum(0.0, col.radius - dist)
                E += float(0.5 * k * (w * pen**2).sum())
                nrm = r / np.maximum(dist, 1e-300)[:, None]
                if grad:
                    G -= (k * w * pen)[:, None] * nrm
                if hess:  # SPD (Gauss–Newton) part: k w n nᵀ
                    B += ((k * w) * (pen > 0))[:, None, None] * nrm[:, :, None] * nrm[:, None, :]
        for ps in self.penalties:
            if t > ps.until or len(ps.nodes) == 0:
                continue
            c = ps.stiffness / len(ps.nodes)
            diff = x[ps.nodes] - (self.points[ps.nodes] + ps.displacement)
            E += float(0.5 * c * (diff**2).sum())
            if grad:
                np.add.at(G, ps.nodes, c * diff)
            if hess:
                np.add.at(B, ps.nodes, c * np.eye(d))
        return E, G, B

    def _elastic_tangent(self, x: np.ndarray, project: bool = True) -> np.ndarray:
        """CSR data (nnz,) of the (projected) elastic tangent on the free DOFs."""
        d, k, m = self.d, self.d + 1, len(self.cells)
        data = np.zeros(self._nnz + 1)
        for s in range(0, m, _CHUNK):
            sl = slice(s, min(m, s + _CHUNK))
            Gc = self.G[sl]
            mc = Gc.shape[0]
            F = np.transpose(x[self.cells[sl]], (0, 2, 1)) @ Gc
            C = material_hessian(self.material, F, self.mu, self.lam, project=project)
            C *= self.volume[sl, None, None]
            Gt = np.transpose(Gc, (0, 2, 1))
            T = C.reshape(mc, d * d * d, d) @ Gt  # [a, b, c, l]
            T = np.transpose(T.reshape(mc, d, d, d, k), (0, 2, 1, 3, 4)).reshape(mc, d, d * d * k)  # [b, (a c l)]
            H = (Gc @ T).reshape(mc, k, d, d, k)  # [k, a, c, l]
            H = np.transpose(H, (0, 1, 2, 4, 3)).reshape(mc, -1)  # [k, a, l, c]
            data += np.bincount(self._emap[sl].ravel(), H.ravel(), minlength=self._nnz + 1)
        return data

    def _tangent(self, x: np.ndarray, dt: float | None, t: float, project: bool = True) -> sp.csr_matrix:
        data = self._elastic_tangent(x, project)
        _, _, B = self._terms(x, dt, t, x, grad=False, hess=True, elastic=False)
        data[: self._nnz] += np.bincount(self._bpos, B[self.free_nodes].ravel(), minlength=self._nnz)
        return sp.csr_matrix((data[: self._nnz], self._indices, self._indptr), shape=(self._nf, self._nf))

    # ---- public evaluation (tests, comparisons)

    def energy(self, x, dt: float | None) -> float:
        """E(x) of the step from the current state (dt=None: static, no inertia)."""
        x = np.asarray(x, float)
        return self._terms(x, dt, self._time_of(dt), self._target(), grad=False)[0]

    def gradient(self, x, dt: float | None) -> np.ndarray:
        """∇E (n, d) at x (fixed nodes included; the solver ignores their rows)."""
        x = np.asarray(x, float)
        return self._terms(x, dt, self._time_of(dt), self._target())[1]

    def hessian(self, x, dt: float | None, project: bool = True) -> sp.csr_matrix:
        """Newton tangent on the free DOFs (free node-major, d per node): per-element SPD
        projected (``project``) or the exact Hessian (contact: its SPD normal part)."""
        return self._tangent(np.asarray(x, float), dt, self._time_of(dt), project)

    def total_energy(self, dt: float) -> float:
        """Kinetic (lumped, v = (xⁿ − xⁿ⁻¹)/Δt) + elastic + gravity + contact + penalties at xⁿ."""
        x = self.positions
        v = (x - self.previous) / dt
        ke = 0.5 * float((self.mass[:, None] * v**2).sum())
        force, self.force = self.force, None  # the stored energy leaves out the external force
        try:
            pot = self._terms(x, None, self.time, None, grad=False)[0]
        finally:
            self.force = force
        return ke + pot

    # ---- Newton

    def _linear_solve(self, K: sp.csr_matrix, rhs: np.ndarray, rtol: float,
                      require_pd: bool = False) -> tuple[np.ndarray | None, int]:
        """Solve K s = rhs; with ``require_pd``, None unless K is certified positive definite
        (direct: all LDLᵀ pivots > 0 without row exchanges; CG: no direction of curvature ≤ 0)."""
        if self._solver == "direct":
            p = self._perm
            # K is symmetric: its permuted CSR arrays are also its CSC arrays
            Kp = sp.csc_matrix((K.data[self._pdata], self._pind, self._pptr), shape=K.shape)
            if require_pd:
                try:
                    lu = spla.splu(Kp, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                                   options=dict(SymmetricMode=True))
                except RuntimeError:
                    return None, 0
                if not (np.all(lu.perm_r == np.arange(len(rhs))) and np.all(lu.U.diagonal() > 0)):
                    return None, 0
                out = np.empty_like(rhs)
                out[p] = lu.solve(rhs[p])
                return out, 0
            shift = 0.0
            for _ in range(12):
                try:
                    A = Kp if shift == 0 else Kp + shift * sp.identity(Kp.shape[0], format="csc")
                    lu = spla.splu(A, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                                   options=dict(SymmetricMode=True))
                    y = lu.solve(rhs[p])
                    if np.all(np.isfinite(y)):
                        break
                except RuntimeError:  # exactly singular (e.g. a free rigid mode in a static solve)
                    pass
                shift = 1e-10 * abs(K.diagonal()).mean() if shift == 0 else shift * 100
            out = np.empty_like(y)
            out[p] = y
            return out, 0
        # block-Jacobi preconditioned CG
        d = self.d
        Bk = K.data[self._bpos].reshape(-1, d, d) + 1e-300 * np.eye(d)
        try:
            Binv = np.linalg.inv(Bk)
        except np.linalg.LinAlgError:
            Binv = np.linalg.pinv(Bk)

        def prec(r):
            return (Binv @ r.reshape(-1, d, 1)).ravel()

        x = np.zeros_like(rhs)
        r = rhs.copy()
        z = prec(r)
        pdir = z.copy()
        rz = r @ z
        stop = rtol * np.linalg.norm(rhs)
        it = 0
        for it in range(1, 20 * len(rhs) + 1):
            Ap = K @ pdir
            pAp = pdir @ Ap
            if pAp <= 0:
                if require_pd:
                    return None, it
                break
            alpha = rz / pAp
            x += alpha * pdir
            r -= alpha * Ap
            if np.linalg.norm(r) <= stop:
                break
            z = prec(r)
            rz, rz_old = r @ z, rz
            pdir = z + (rz / rz_old) * pdir
        return x, it

    def _minimise(self, start: np.ndarray, dt: float | None) -> tuple[np.ndarray, StepInfo]:
        c0 = _time.process_time()
        t = self._time_of(dt)
        target = self._target() if dt is not None else None
        x = start.copy()
        x[~self.free] = self.points[~self.free]
        fr = self.free

        def ev(y):
            E, G, _ = self._terms(y, dt, t, target)
            return E, G[fr].ravel()

        E, g = ev(x)
        hist = [E]
        gn = g0 = float(np.linalg.norm(g))
        load = float(np.linalg.norm((self.mass[:, None] * self._external(t))[fr]))
        stop = self.tol * max(g0, load)
        it, lin, converged = 0, 0, gn <= stop
        while not converged and it < self.max_newton:
            it += 1
            rtol = min(0.1, gn / max(g0, 1e-300))
            step = None
            if self.exact_first:  # exact Hessian where it is positive definite: quadratic convergence
                K = self._tangent(x, dt, t, project=False)
                step, nl = self._linear_solve(K, -g, rtol, require_pd=True)
                lin += nl
            if step is None:
                K = self._tangent(x, dt, t, project=True)
                step, nl = self._linear_solve(K, -g, rtol)
                lin += nl
            if np.abs(step).max() <= STEP_FLOOR * self._extent:  # at working precision (round-off floor)
                x[fr] += step.reshape(-1, self.d)
                E, g = ev(x)
                gn = float(np.linalg.norm(g))
                hist.append(E)
                converged = True
                break
            slope = float(g @ step)
            if not slope < 0:  # not a descent direction (round-off): steepest descent
                step, slope = -g / max(np.abs(K.diagonal()).max(), 1e-300), -float(g @ g) / max(np.abs(K.diagonal()).max(), 1e-300)
            alpha, accepted = 1.0, False
            for _ in range(40):
                y = x.copy()
                y[fr] += alpha * step.reshape(-1, self.d)
                Ey, gy = ev(y)
                gyn = float(np.linalg.norm(gy))
                if Ey <= E + 1e-4 * alpha * slope or (
                        abs(Ey - E) <= 1e-13 * (abs(E) + 1.0) and gyn < gn):  # round-off band near the minimum
                    accepted = True
                    break
                alpha *= 0.5
            if not accepted:
                break
            x, E, g, gn = y, Ey, gy, gyn
            hist.append(E)
            converged = gn <= stop
        info = StepInfo(it, bool(converged), gn, _time.process_time() - c0, E, lin, hist)
        return x, info

    def step(self, dt: float) -> StepInfo:
        """One implicit-Euler step from xⁿ (start: x̃ = 2xⁿ − xⁿ⁻¹); advances time by dt."""
        x, info = self._minimise(self._target(), dt)
        self.previous, self.positions = self.positions, x
        self.time += dt
        return info

    def equilibrium(self) -> StepInfo:
        """Static solve (no inertia) from the current positions; sets xⁿ = xⁿ⁻¹ = the solution."""
        x, info = self._minimise(self.positions, None)
        self.positions, self.previous = x, x.copy()
        return info
