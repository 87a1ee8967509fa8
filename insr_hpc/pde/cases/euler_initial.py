"""Initial velocity fields of the Euler case, each from a stream function ψ on
[−1, 1]² that is constant on the walls, so u = (∂ψ/∂y, −∂ψ/∂x) is divergence-free and
has u·n = 0 there. One torch implementation serves the grid (float64) and the
network fit (float32); the curl is taken by autograd."""

from __future__ import annotations

import math

import numpy as np
import torch

from insr_hpc.pde.cases.params import EULER_INITIAL as INITIAL_CONDITIONS  # noqa: F401  (defined with the case's Params)


def stream_function(kind: str, x: torch.Tensor, y: torch.Tensor, params) -> torch.Tensor:
    """ψ(x, y) for the named initial condition; x, y any matching shape."""
    xp, yp = x + 1.0, y + 1.0
    pi = math.pi
    if kind == "taylor_green":
        # u = (sin πx' cos πy', −cos πx' sin πy')/π: steady for Euler in this box
        return torch.sin(pi * xp) * torch.sin(pi * yp) / pi**2
    if kind == "taylor_green_multiscale":
        # the (1, 1) mode plus a (2, 1) mode: different |k|, so the flow is unsteady
        a = params.mode_amplitude
        return torch.sin(pi * xp) * torch.sin(pi * yp) / pi**2 + a * torch.sin(2 * pi * xp) * torch.sin(pi * yp) / (
            pi**2 * math.sqrt(5.0)
        )
    if kind == "vortex_pair":
        # two counter-rotating Gaussian vortices, windowed so ψ = 0 on the walls
        s, d = params.vortex_radius, params.vortex_separation / 2
        g = lambda cx: torch.exp(-((x - cx) ** 2 + y**2) / s**2)  # noqa: E731
        window = (1 - x**2) * (1 - y**2)
        return params.vortex_strength * s * window * (g(-d) - g(d))
    raise ValueError(f"unknown initial condition {kind!r}")


def velocity_torch(kind: str, pts: torch.Tensor, params) -> torch.Tensor:
    """u0 = (∂ψ/∂y, −∂ψ/∂x) at points (N, 2) → (N, 2), same dtype/device, no graph kept
    (``torch.func``: usable inside vmap and other transforms)."""
    g = torch.func.vmap(torch.func.grad(lambda p: stream_function(kind, p[0], p[1], params)))(pts.detach())
    return torch.stack([g[:, 1], -g[:, 0]], dim=1).detach()


def velocity_numpy(kind: str, params):
    """A ``u0(X, Y) -> (…, 2)`` function on numpy arrays (float64), for the grid solver."""

    def u0(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        pts = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1), dtype=torch.float64)
        return velocity_torch(kind, pts, params).numpy().reshape(*X.shape, 2)

    return u0
