"""Finite differences on the uniform grids stores hold (numpy only: no torch), shared by
the analysis (:mod:`insr_hpc.analysis.figures`) and the scripts in ``jobs/``.

The vorticity of a network itself (``insr-hpc render``) is taken by autograd instead
(:mod:`insr_hpc.analysis.render`)."""

from __future__ import annotations

import numpy as np


def vorticity(u: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ω = ∂v/∂x − ∂u/∂y of a (y, x, 2) velocity on the grid with coordinates ``x``,
    ``y``: second-order central differences inside, first-order one-sided at the edges
    (``np.gradient``)."""
    return np.gradient(u[..., 1], x, axis=1) - np.gradient(u[..., 0], y, axis=0)
