"""P1 simplex-mesh FEM reference (insr_hpc.pde.baselines.mesh_fem): energy densities and
stresses, the incremental potential's gradient and tangent, static beam sag under refinement
against Euler–Bernoulli, agreement with the 2D ElasticFEM, and contact dynamics."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from insr_hpc.pde.baselines.elastic_fem import ElasticFEM, bar_mesh, lame
from insr_hpc.pde.baselines.mesh_fem import (MATERIALS, Collider, MeshFEM, PenaltySet, box_tet_mesh,
                                             material_density, material_hessian)

MU, LAM = 1.3, 2.1


def _rotations(d, k, seed):
    if d == 3:
        return Rotation.random(k, random_state=seed).as_matrix()
    a = np.random.default_rng(seed).uniform(0, 2 * np.pi, k)
    return np.stack([np.stack([np.cos(a), -np.sin(a)], -1), np.stack([np.sin(a), np.cos(a)], -1)], 1)


@pytest.mark.parametrize("d", [2, 3])
def test_densities_vanish_at_rest_and_under_rotation(d):
    for name in MATERIALS:
        psi, P = material_density(name, np.eye(d)[None].repeat(2, 0), MU, LAM)
        assert np.abs(psi).max() < 1e-14 and np.abs(P).max() < 1e-14
        psi, P = material_density(name, _rotations(d, 5, 0), MU, LAM)
        assert np.abs(psi).max() < 1e-12 and np.abs(P).max() < 1e-12, name


def _unit_tet_fem(material):
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    return points, MeshFEM(points, np.array([[0, 1, 2, 3]]), density=1.0, material=material, mu=MU, lam=LAM,
                           gravity=np.zeros(3))


@pytest.mark.parametrize("sigma", [(2.0, 1.5, 0.5), (2.0, 1.5, -0.5)])
def test_one_deformed_tet_matches_hand_values(sigma):
    R1, R2 = _rotations(3, 2, 3)
    F = R1 @ np.diag(sigma) @ R2  # singular values |σ|, det F = Πσ
    J = np.prod(sigma)
    V = 1 / 6
    hand = {
        "arap": MU * sum((s - 1) ** 2 for s in sigma),  # signed σ: the inverted tet pays (−0.5 − 1)²
        "arap_volume": MU * sum((s - 1) ** 2 for s in sigma) + LAM / 2 * (J - 1) ** 2,
        "neo_hookean": MU / 2 * (sum(s**2 for s in sigma) - 3) - MU * (J - 1) + LAM / 2 * (J - 1) ** 2,
    }
    for name, psi in hand.items():
        points, fem = _unit_tet_fem(name)
        x = points @ F.T + np.array([0.3, -1.0, 2.0])
        assert abs(fem.energy(x, None) - V * psi) < 1e-12, name


@pytest.mark.parametrize("d", [2, 3])
def test_stress_and_tangent_match_finite_differences(d):
    rng = np.random.default_rng(d)
    F = np.eye(d) + 0.35 * rng.normal(size=(6, d, d))
    F[0] = np.diag([1.2, 1.2, 0.9][:d])  # repeated singular values
    F = F[np.linalg.det(F) > 0]
    eps = 1e-6
    for name in MATERIALS:
        psi, P = material_density(name, F, MU, LAM)
        C = material_hessian(name, F, MU, LAM, project=False)
        fdP, fdC = np.zeros_like(P), np.zeros_like(C)
        for a in range(d):
            for b in range(d):
                dF = np.zeros((d, d))
                dF[a, b] = eps
                pp, Pp = material_density(name, F + dF, MU, LAM)
                pm, Pm = material_density(name, F - dF, MU, LAM)
                fdP[:, a, b] = (pp - pm) / (2 * eps)
                fdC[:, :, a * d + b] = ((Pp - Pm) / (2 * eps)).reshape(len(F), d * d)
        assert np.abs(fdP - P).max() < 1e-7 * max(1.0, np.abs(P).max()), name
        assert np.abs(fdC - C).max() < 1e-6 * max(1.0, np.abs(C).max()), name
        Cp = material_hessian(name, F, MU, LAM, project=True)
        ev = np.linalg.eigvalsh(Cp)
        assert ev.min() > -1e-10 * np.abs(ev).max(), name  # projected: positive semidefinite
        psd = np.linalg.eigvalsh(C).min(1) >= 0
        assert np.abs(Cp[psd] - C[psd]).max() < 1e-10 * np.abs(C).max()  # and exact where C is


def _small_3d(material="neo_hookean", **kw):
    points, cells = box_tet_mesh((0, -0.25, -0.25), (2, 0.25, 0.25), (4, 1, 1))
    mu, lam = lame(1e3, 0.3)
    fem = MeshFEM(points, cells, density=1.0, material=material, mu=mu, lam=lam, gravity=(0, 0, -9.8),
                  fixed=np.nonzero(points[:, 0] == 0)[0], **kw)
    return points, fem


@pytest.mark.parametrize("material", MATERIALS)
def test_potential_gradient_matches_finite_differences(material):
    colliders = [Collider("plane", (0, 0, -0.3), normal=(0, 0.2, 1), stiffness=1e4),
                 Collider("sphere", (1, 0, 0.5), radius=0.8, stiffness=1e4)]
    points, _ = _small_3d(material)
    tip = PenaltySet(np.nonzero(points[:, 0] == 2)[0], np.array([0.1, 0, 0]), 100.0)
    points, fem = _small_3d(material, colliders=colliders, force=(1.0, 0, 0), force_until=1.0, penalties=[tip])
    rng = np.random.default_rng(0)
    fem.set_state(points + 0.02 * rng.normal(size=points.shape), points)
    x = 2 * fem.positions - fem.previous + 0.05 * rng.normal(size=points.shape)
    assert np.any(((x - [0, 0, -0.3]) @ colliders[0].normal) < 0)  # both contacts active
    assert np.any(np.linalg.norm(x - [1, 0, 0.5], axis=1) < 0.8)
    dt = 0.01
    g = fem.gradient(x, dt)
    for seed in range(3):
        v = np.random.default_rng(seed + 10).normal(size=x.shape)
        eps = 1e-6
        fd = (fem.energy(x + eps * v, dt) - fem.energy(x - eps * v, dt)) / (2 * eps)
        assert abs(fd - (g * v).sum()) < 1e-7 * max(1.0, abs(fd)), (fd, (g * v).sum())


def test_tangent_is_the_hessian_and_matches_scikit_fem_at_rest():
    from skfem import Basis, ElementTetP1, ElementVector, MeshTet, asm
    from skfem.models.elasticity import linear_elasticity

    for material in MATERIALS:
        points, fem = _small_3d(material)
        rng = np.random.default_rng(1)
        x = 1.15 * points + 0.003 * rng.normal(size=points.shape)  # stretched: element tangents PD
        K = fem.hessian(x, 0.01, project=False)
        v = np.zeros_like(points)
        v[fem.free] = rng.normal(size=(fem.free.sum(), 3))
        eps = 1e-6
        fd = (fem.gradient(x + eps * v, 0.01) - fem.gradient(x - eps * v, 0.01))[fem.free].ravel() / (2 * eps)
        assert np.abs(K @ v[fem.free].ravel() - fd).max() < 1e-8 * np.abs(fd).max(), material
    points, cells = box_tet_mesh((0, 0, 0), (1, 1, 1), (2, 2, 2))
    basis = Basis(MeshTet(points.T.copy(), cells.T.copy()), ElementVector(ElementTetP1()), intorder=1)
    mu, lam = lame(1e3, 0.3)
    # at F = I: arap_volume is linear elasticity with (μ, λ); the log-free neo-Hookean with (μ, λ − μ)
    for material, lam_lin in (("arap_volume", lam), ("neo_hookean", lam - mu)):
        fem = MeshFEM(points, cells, density=1.0, material=material, mu=mu, lam=lam, gravity=(0, 0, 0))
        ref = asm(linear_elasticity(lam_lin, mu), basis)  # interleaved node-major DOFs, as here
        assert abs(fem.hessian(points, None) - ref).max() < 1e-12 * abs(ref).max(), material


def test_beam_sag_converges_to_euler_bernoulli():
    E, L, b, h, g = 2400.0, 2.0, 0.5, 0.5, 1.0
    mu, lam = lame(E, 0.0)  # ν = 0; arap_volume linearises to Lamé (μ, λ) (λ = 0 here)
    beam = g * 1.0 * b * h * L**4 / (8 * E * b * h**3 / 12)
    assert 0.01 < beam / L < 0.05  # a few % of the length (2 %)
    tips = []
    for k in (2, 4, 8):
        points, cells = box_tet_mesh((0, -b / 2, -h / 2), (L, b / 2, h / 2), (4 * k, k, k))
        fem = MeshFEM(points, cells, density=1.0, material="arap_volume", mu=mu, lam=lam, gravity=(0, 0, -g),
                      fixed=np.nonzero(points[:, 0] == 0)[0])
        info = fem.equilibrium()
        assert info.converged and info.iterations <= 8, info
        hist = np.array(info.energy_history)
        assert hist[-1] < hist[0] and np.all(np.diff(hist) <= 1e-12 * np.abs(hist).max())
        tip = np.nonzero(points[:, 0] == L)[0]
        tips.append(-(fem.positions[tip, 2] - points[tip, 2]).mean())
    d1, d2 = abs(tips[1] - tips[0]), abs(tips[2] - tips[1])
    assert tips[0] < tips[1] < tips[2]  # P1 tets are too stiff in bending and soften under refinement
    assert d2 < 0.6 * d1, tips
    assert abs(tips[2] - beam) < 0.1 * beam, (tips, beam)


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_linear_solvers_agree(solver):
    points, fem = _small_3d("arap_volume", linear_solver=solver)
    info = fem.equilibrium()
    assert info.converged
    points, ref = _small_3d("arap_volume", linear_solver="direct")
    ref.equilibrium()
    assert np.abs(fem.positions - ref.positions).max() < 1e-9


def test_2d_bar_matches_elastic_fem():
    mu, lam = lame(500.0, 0.3)
    nodes, tris = bar_mesh(2.0, 0.4, 16, 2)
    fixed = np.where(nodes[:, 0] == 0)[0]
    old = ElasticFEM(nodes, tris, 1.0, mu, lam, (0.0, -1.0), fixed)
    new = MeshFEM(nodes, tris, density=1.0, material="neo_hookean", mu=mu, lam=lam, gravity=(0.0, -1.0), fixed=fixed)
    info = new.equilibrium()
    assert info.converged
    x_old = old.equilibrium()
    assert np.abs(new.positions - x_old).max() < 1e-6
    # same incremental potential for a dynamic step too
    old.set_state(x_old)
    new.set_state(x_old)
    x = x_old + 0.01
    target = 2 * old.positions - old.previous
    E_old, G_old = old.potential(x, target, 0.05)
    assert abs(new.energy(x, 0.05) - E_old) < 1e-12 * max(1, abs(E_old))
    assert np.abs(new.gradient(x, 0.05) - G_old).max() < 1e-10


def test_square_falls_and_rests_on_circle():
    nodes, tris = bar_mesh(1.0, 1.0, 8, 8)
    nodes = nodes - [0.5, 0.0] + [0.0, -0.4]  # [−½, ½] × [−0.9, 0.1]: 0.1 above the circle's top (y = −1)
    mu, lam = lame(1e3, 0.3)
    k = 1e4
    fem = MeshFEM(nodes, tris, density=1.0, material="neo_hookean", mu=mu, lam=lam, gravity=(0.0, -1.0),
                  colliders=[Collider("sphere", np.array([0.0, -2.0]), radius=1.0, stiffness=k)])
    dt = 0.05
    energies = []
    for _ in range(80):
        info = fem.step(dt)
        assert info.converged, info
        energies.append(fem.total_energy(dt))
    dist = np.linalg.norm(fem.positions - [0.0, -2.0], axis=1)
    # lumped weight 1 carried by the penalty: k Σ w pen ≈ 1 → pen of order 1/(k · contact area)
    assert 1.0 - 0.02 < dist.min() < 1.0, dist.min()
    v = (fem.positions - fem.previous) / dt
    assert np.abs(v).max() < 0.02
    assert energies[-1] < energies[0]  # implicit Euler dissipates
