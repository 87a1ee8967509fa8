"""Linear-triangle finite elements for 2D hyperelastodynamics: each implicit-Euler step
minimises the same incremental potential as the INSR ``elasticity`` case,

    E(x) = Σᵢ mᵢ/(2Δt²)|xᵢ − 2xᵢⁿ + xᵢⁿ⁻¹|² + Σₜ Aₜ Ψ(Fₜ) − Σᵢ mᵢ g·xᵢ
           + Σᵢ (mᵢ/ρ) k/2 max(0, y_ground − yᵢ)²,

with lumped masses mᵢ, Dirichlet nodes eliminated, solved by L-BFGS (scipy) with the
analytic gradient. Ψ is the log-free ("stable") neo-Hookean energy density
Ψ(F) = μ/2(|F|² − 2) − μ(J − 1) + λ/2(J − 1)², defined for every F (also J ≤ 0),
stress-free at F = I, with Lamé parameters μ, λ in the small-strain limit.

Arrays: nodes (n, 2) reference positions; tris (m, 3) node indices; positions (n, 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize


def neo_hookean(F: np.ndarray, mu: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Ψ (m,) and first Piola stress P = ∂Ψ/∂F (m, 2, 2) for F (m, 2, 2)."""
    J = F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
    cof = np.stack([np.stack([F[:, 1, 1], -F[:, 1, 0]], -1), np.stack([-F[:, 0, 1], F[:, 0, 0]], -1)], 1)
    psi = 0.5 * mu * ((F**2).sum((1, 2)) - 2) - mu * (J - 1) + 0.5 * lam * (J - 1) ** 2
    P = mu * F + (lam * (J - 1) - mu)[:, None, None] * cof
    return psi, P


def lame(youngs: float, poisson: float) -> tuple[float, float]:
    """Plane-strain Lamé parameters (μ, λ) from Young's modulus and Poisson's ratio."""
    mu = youngs / (2 * (1 + poisson))
    lam = youngs * poisson / ((1 + poisson) * (1 - 2 * poisson))
    return mu, lam


def bar_mesh(length: float, height: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Structured mesh of [0, L] × [−H/2, H/2]: (nx+1)(ny+1) nodes, 2·nx·ny triangles."""
    xs, ys = np.linspace(0, length, nx + 1), np.linspace(-height / 2, height / 2, ny + 1)
    X, Y = np.meshgrid(xs, ys)  # node (j, i) → index j·(nx+1) + i
    nodes = np.stack([X.ravel(), Y.ravel()], 1)
    i, j = np.meshgrid(np.arange(nx), np.arange(ny))
    a = (j * (nx + 1) + i).ravel()
    b, c, d = a + 1, a + nx + 1, a + nx + 2
    tris = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return nodes, tris


@dataclass
class ElasticFEM:
    """A bar advanced by implicit Euler (``dt=None``: static equilibrium solves)."""

    nodes: np.ndarray
    tris: np.ndarray
    density: float
    mu: float
    lam: float
    gravity: tuple[float, float] = (0.0, 0.0)
    fixed: np.ndarray | None = None  # indices of nodes held at their reference position
    ground: float | None = None  # contact plane y = ground (None: none)
    contact_stiffness: float = 0.0
    positions: np.ndarray = field(init=False)
    previous: np.ndarray = field(init=False)

    def __post_init__(self):
        e = self.nodes[self.tris]
        Dm = np.stack([e[:, 1] - e[:, 0], e[:, 2] - e[:, 0]], -1)  # (m, 2, 2), columns = edges
        self.area = 0.5 * np.abs(np.linalg.det(Dm))
        self.Dm_inv = np.linalg.inv(Dm)
        node_area = np.zeros(len(self.nodes))
        np.add.at(node_area, self.tris.ravel(), np.repeat(self.area / 3, 3))
        self.node_area = node_area
        self.mass = self.density * node_area
        free = np.ones(len(self.nodes), bool)
        if self.fixed is not None:
            free[self.fixed] = False
        self.free = free
        self.positions = self.nodes.copy()
        self.previous = self.nodes.copy()

    def set_state(self, positions: np.ndarray) -> None:
        """Start at rest at ``positions`` (n, 2)."""
        self.positions = positions.copy()
        self.previous = positions.copy()

    def potential(self, x: np.ndarray, target: np.ndarray | None, dt: float | None) -> tuple[float, np.ndarray]:
        """Incremental potential and its gradient (n, 2) at positions x (n, 2)."""
        e = x[self.tris]
        Ds = np.stack([e[:, 1] - e[:, 0], e[:, 2] - e[:, 0]], -1)
        F = Ds @ self.Dm_inv
        psi, P = neo_hookean(F, self.mu, self.lam)
        H = self.area[:, None, None] * P @ np.transpose(self.Dm_inv, (0, 2, 1))  # ∂(AΨ)/∂Ds
        grad = np.zeros_like(x)
        np.add.at(grad, self.tris[:, 1], H[:, :, 0])
        np.add.at(grad, self.tris[:, 2], H[:, :, 1])
        np.add.at(grad, self.tris[:, 0], -H[:, :, 0] - H[:, :, 1])
        g = np.asarray(self.gravity)
        energy = float((self.area * psi).sum() - (self.mass[:, None] * g * x).sum())
        grad -= self.mass[:, None] * g
        if dt is not None:
            diff = x - target
            energy += float((self.mass[:, None] * diff**2).sum() / (2 * dt**2))
            grad += self.mass[:, None] * diff / dt**2
        if self.ground is not None and self.contact_stiffness > 0:
            pen = np.maximum(0.0, self.ground - x[:, 1])
            energy += float(0.5 * self.contact_stiffness * (self.node_area * pen**2).sum())
            grad[:, 1] -= self.contact_stiffness * self.node_area * pen
        return energy, grad

    def minimise(self, start: np.ndarray, target: np.ndarray | None, dt: float | None, gtol: float = 1e-9) -> np.ndarray:
        x = start.copy()

        def fun(v):
            x[self.free] = v.reshape(-1, 2)
            E, G = self.potential(x, target, dt)
            return E, G[self.free].ravel()

        res = minimize(fun, start[self.free].ravel(), jac=True, method="L-BFGS-B",
                       options={"maxiter": 20000, "maxcor": 30, "gtol": gtol, "ftol": 1e-15})
        x[self.free] = res.x.reshape(-1, 2)
        return x

    def step(self, dt: float) -> None:
        """One implicit-Euler step: minimise E with x̃ = 2xⁿ − xⁿ⁻¹."""
        target = 2 * self.positions - self.previous
        new = self.minimise(target, target, dt)
        self.previous, self.positions = self.positions, new

    def equilibrium(self) -> np.ndarray:
        """Static equilibrium (no inertia) reached from the current positions."""
        return self.minimise(self.positions, None, None)

    def total_energy(self, dt: float) -> float:
        """Kinetic (from the last step's velocity) + elastic + gravity + contact energy."""
        v = (self.positions - self.previous) / dt
        E, _ = self.potential(self.positions, None, None)
        return float(E + 0.5 * (self.mass[:, None] * v**2).sum())
