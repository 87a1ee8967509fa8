"""2D incompressible Euler on [−1, 1]² with no-through walls: a collocated cell-centred
grid solver with the same splitting as the INSR case.

One step: (1) semi-Lagrangian advection u*(x) = uⁿ(x − Δt uⁿ(x)) with the backtracked
point clamped to the box and (bi)linear or cubic interpolation; (2)+(3) pressure
projection uⁿ⁺¹ = u* − ∇p with ∇²p = ∇·u*, ∂p/∂n = 0, solved exactly in the wall-
compatible sine/cosine basis (DST-II / DCT-II on the cell centres, scipy.fft).

Why that basis: u_x = 0 on x = ±1 and u_y = 0 on y = ±1 make u_x a sine series in x
and a cosine series in y (u_y the other way round), and a Neumann pressure a cosine
series in both; the Helmholtz projection is then diagonal, one 2×2 projection per mode
(k, l), and the projected field is discretely divergence-free in that basis.

Arrays: ``u`` (N, N, 2) indexed [y, x, component], cell centres
x_i = −1 + (i + ½)·h, h = 2/N; ``p`` (N, N) [y, x].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft, ndimage


def cell_centres(n: int) -> np.ndarray:
    """The n cell-centre coordinates of [−1, 1], (n,)."""
    h = 2.0 / n
    return -1.0 + (np.arange(n) + 0.5) * h


def _pad_wall(a: np.ndarray, odd_x: bool, odd_y: bool, g: int) -> np.ndarray:
    """Pad a (N, N) [y, x] array by ``g`` ghost cells, mirrored across the walls:
    odd (antisymmetric) for the normal velocity component, even otherwise."""
    out = np.pad(a, g, mode="symmetric")
    if odd_x:
        out[:, :g] *= -1
        out[:, -g:] *= -1
    if odd_y:
        out[:g, :] *= -1
        out[-g:, :] *= -1
    return out


def interpolate(u: np.ndarray, pts: np.ndarray, order: int = 1) -> np.ndarray:
    """Velocity (N, N, 2) sampled at points ``pts`` (M, 2) as (x, y) in [−1, 1]² → (M, 2)."""
    n = u.shape[0]
    g = 2
    h = 2.0 / n
    # fractional index in the padded array: cell centre i sits at (x + 1)/h − ½ (+ g)
    ix = (pts[:, 0] + 1.0) / h - 0.5 + g
    iy = (pts[:, 1] + 1.0) / h - 0.5 + g
    out = np.empty((pts.shape[0], 2))
    for c, (odd_x, odd_y) in enumerate(((True, False), (False, True))):
        padded = _pad_wall(u[..., c], odd_x, odd_y, g)
        out[:, c] = ndimage.map_coordinates(padded, [iy, ix], order=order, mode="nearest")
    return out


def advect(u: np.ndarray, dt: float, order: int = 1) -> np.ndarray:
    """Semi-Lagrangian step: u*(x) = u(clamp(x − dt·u(x))), (N, N, 2) → (N, N, 2)."""
    n = u.shape[0]
    xc = cell_centres(n)
    X, Y = np.meshgrid(xc, xc)  # [y, x]
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    back = np.clip(pts - dt * u.reshape(-1, 2), -1.0, 1.0)
    return interpolate(u, back, order).reshape(n, n, 2)


def project(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Helmholtz projection: returns (u − ∇p, p) with ∇²p = ∇·u, ∂p/∂n = 0, mean(p) = 0."""
    n = u.shape[0]
    # u_x: DST-II along x (modes k = 1..N), DCT-II along y (l = 0..N−1); u_y mirrored.
    a = fft.dct(fft.dst(u[..., 0], type=2, axis=1, norm="ortho"), type=2, axis=0, norm="ortho")
    b = fft.dst(fft.dct(u[..., 1], type=2, axis=1, norm="ortho"), type=2, axis=0, norm="ortho")
    # common mode grid (l, k) with l, k = 0..N; a lives on k ≥ 1, l ≤ N−1; b on k ≤ N−1, l ≥ 1
    A = np.zeros((n + 1, n + 1))
    B = np.zeros((n + 1, n + 1))
    A[:n, 1:] = a
    B[1:, :n] = b
    # the sine Nyquist modes (k = N of u_x, l = N of u_y) have no partner in the other
    # component; they are the grid's highest frequency and are dropped (keeps P² = P)
    A[:, n] = 0.0
    B[n, :] = 0.0
    k = np.arange(n + 1)[None, :].astype(float)
    l_ = np.arange(n + 1)[:, None].astype(float)
    k2 = k**2 + l_**2
    k2[0, 0] = 1.0
    d = (k * A + l_ * B) / k2  # gradient part: (A, B) ∥ (k, l)
    A -= k * d
    B -= l_ * d
    # ∇ of c·cos(kπx'/2)cos(lπy'/2) has sine coefficients −(π/2)(k, l)·c, so c = −(2/π)·d
    c = -(2.0 / np.pi) * d[:n, :n]
    c[0, 0] = 0.0
    ux = fft.idst(fft.idct(A[:n, 1:], type=2, axis=0, norm="ortho"), type=2, axis=1, norm="ortho")
    uy = fft.idct(fft.idst(B[1:, :n], type=2, axis=0, norm="ortho"), type=2, axis=1, norm="ortho")
    p = fft.idct(fft.idct(c, type=2, axis=0, norm="ortho"), type=2, axis=1, norm="ortho")
    return np.stack([ux, uy], axis=-1), p


def divergence(u: np.ndarray) -> np.ndarray:
    """Central-difference ∇·u on the cell centres (walls mirrored), (N, N)."""
    n = u.shape[0]
    h = 2.0 / n
    ux = _pad_wall(u[..., 0], True, False, 1)
    uy = _pad_wall(u[..., 1], False, True, 1)
    return (ux[1:-1, 2:] - ux[1:-1, :-2]) / (2 * h) + (uy[2:, 1:-1] - uy[:-2, 1:-1]) / (2 * h)


def kinetic_energy(u: np.ndarray) -> float:
    """½∫|u|² dx over the box (cell-centre quadrature)."""
    h = 2.0 / u.shape[0]
    return float(0.5 * (u**2).sum() * h * h)


@dataclass
class EulerGrid:
    """A grid solution advanced step by step. ``u0(x, y) -> (…, 2)`` gives the start."""

    n: int
    dt: float
    u0: object
    order: int = 1
    step: int = 0
    u: np.ndarray = field(init=False)
    p: np.ndarray = field(init=False)

    def __post_init__(self):
        xc = cell_centres(self.n)
        X, Y = np.meshgrid(xc, xc)
        self.u, self.p = project(np.asarray(self.u0(X, Y), dtype=np.float64))

    def advance(self) -> None:
        self.u, self.p = project(advect(self.u, self.dt, self.order))
        self.step += 1

    def sample(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """u (ny, nx, 2) and p (ny, nx) on the tensor grid of 1-D coordinates x, y."""
        X, Y = np.meshgrid(x, y)
        pts = np.stack([X.ravel(), Y.ravel()], axis=1)
        u = interpolate(self.u, pts, self.order).reshape(len(y), len(x), 2)
        n, g, h = self.n, 2, 2.0 / self.n
        padded = np.pad(self.p, g, mode="symmetric")
        ix = (pts[:, 0] + 1.0) / h - 0.5 + g
        iy = (pts[:, 1] + 1.0) / h - 0.5 + g
        p = ndimage.map_coordinates(padded, [iy, ix], order=1, mode="nearest").reshape(len(y), len(x))
        del n
        return u, p
