"""Elastodynamics of mesh bodies (2D and 3D): the paper's energies as terms, INSR against
the FEM reference on the same incremental potential, bad meshes refused, resume bitwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from _small import REPO, cli

from insr_hpc.pde.cases.elasticity import determinant, material_density, signed_singular_sum

MU, LAM = 3.0, 7.0


def _rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    return q * torch.sign(torch.linalg.det(q))


@pytest.mark.parametrize("kind", ["arap", "arap_volume", "neo_hookean"])
def test_energies_vanish_at_rest(kind):
    for d in (2, 3):
        eye = torch.eye(d, dtype=torch.float64)
        assert abs(float(material_density(kind, eye, MU, LAM))) < 1e-12
    if kind != "neo_hookean":  # ARAP (and the volume term) are rotation invariant
        for seed in range(3):
            assert abs(float(material_density(kind, _rotation(seed), MU, LAM))) < 1e-10


def test_arap_and_volume_equal_a_hand_computation_on_one_tetrahedron():
    # F = R₁ diag(1.3, 0.8, 1.1) R₂: singular values known, J = 1.144
    sig = torch.tensor([1.3, 0.8, 1.1], dtype=torch.float64)
    F = _rotation(1) @ torch.diag(sig) @ _rotation(2)
    tet = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    volume = 1 / 6
    arap_hand = MU * ((0.3**2) + (0.2**2) + (0.1**2))  # μ Σ(σ − 1)²
    vol_hand = 0.5 * LAM * (1.3 * 0.8 * 1.1 - 1) ** 2
    # the map x = F X applied to the tet's vertices: its deformation gradient is F
    x = tet @ F.T
    D_ref = (tet[1:] - tet[0]).T
    D_def = (x[1:] - x[0]).T
    F_tet = D_def @ torch.linalg.inv(D_ref)
    assert torch.allclose(F_tet, F)
    assert abs(volume * float(material_density("arap", F_tet, MU, LAM)) - volume * arap_hand) < 1e-12
    both = volume * float(material_density("arap_volume", F_tet, MU, LAM))
    assert abs(both - volume * (arap_hand + vol_hand)) < 1e-12
    assert abs(float(determinant(F_tet)) - 1.144) < 1e-12


def test_signed_singular_sum_matches_the_svd_and_flips_for_inverted_elements():
    gen = torch.Generator().manual_seed(0)
    for d in (2, 3):
        F = torch.eye(d, dtype=torch.float64) + 0.6 * torch.randn(2000, d, d, dtype=torch.float64, generator=gen)
        s = torch.linalg.svdvals(F)
        s[:, -1] *= torch.sign(torch.linalg.det(F))
        assert torch.allclose(signed_singular_sum(F), s.sum(-1), atol=1e-9)
    # differentiable at rest (repeated singular values): ∂Σσ/∂F = R = I
    eye = torch.eye(3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(signed_singular_sum(eye), eye)
    assert torch.allclose(g, torch.eye(3, dtype=torch.float64))


def test_torch_densities_equal_the_fem_reference_densities():
    from insr_hpc.pde.baselines.mesh_fem import material_density as fem_density

    gen = torch.Generator().manual_seed(1)
    for d in (2, 3):
        F = torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(50, d, d, dtype=torch.float64, generator=gen)
        for kind in ("neo_hookean", "arap", "arap_volume"):
            psi, _ = fem_density(kind, F.numpy(), MU, LAM)
            np.testing.assert_allclose(material_density(kind, F, MU, LAM).numpy(), psi, rtol=1e-9, atol=1e-12)
