"""insr_hpc.grid.vorticity (the one grid vorticity: figures and jobs/euler_spectrum.py)."""

from __future__ import annotations

import os
import sys

import numpy as np

from insr_hpc.grid import vorticity


def test_vorticity_of_a_taylor_green_field_on_a_rectangular_grid():
    # u = (sin x cos 2y, −½ cos x sin 2y): divergence-free, ω = ∂v/∂x − ∂u/∂y = 2.5 sin x sin 2y.
    # x and y have different sizes and the field is not symmetric in them: swapped axes fail.
    x, y = np.linspace(0, 2 * np.pi, 129), np.linspace(0, np.pi, 65)
    X, Y = np.meshgrid(x, y)  # (y, x)
    u = np.stack([np.sin(X) * np.cos(2 * Y), -0.5 * np.cos(X) * np.sin(2 * Y)], -1)
    exact = 2.5 * np.sin(X) * np.sin(2 * Y)
    w = vorticity(u, x, y)
    assert w.shape == (65, 129)
    # central differences, h = π/64 in x and π/64 in y: error ≈ (h²/6)(½ + 8) sin x sin 2y ≈ 3.5e-3
    interior = np.abs(w - exact)[1:-1, 1:-1]
    assert 1e-3 < interior.max() < 5e-3  # second order, not exact and not worse
    np.testing.assert_allclose(w[1:-1, 1:-1], exact[1:-1, 1:-1], atol=5e-3)


def test_euler_spectrum_enstrophy_uses_the_same_vorticity():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "jobs"))
    try:
        import euler_spectrum
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    u, x, y = rng.standard_normal((17, 23, 2)), np.linspace(0, 1, 23), np.linspace(0, 2, 17)
    z = euler_spectrum.enstrophy(u, x, y)
    assert z == 0.5 * (vorticity(u, x, y) ** 2).sum() * (x[1] - x[0]) * (y[1] - y[0])
