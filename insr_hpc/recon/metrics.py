"""Errors of a reconstruction and the classical interpolation baselines (pure numpy/scipy).

Shapes: fields (T, H, W) in physical units; ``valid`` (H, W); ``observed`` (T, H, W).
Normalised units are the min-max scaling of the true field: (v − lo) / (hi − lo).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def errors(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray, observed: np.ndarray, lo: float, hi: float) -> dict[str, float]:
    """``mse`` (normalised, every valid point — the paper's metric), ``mse_unobserved``
    (normalised, valid points not observed at that time step) and ``rmse`` (physical units)."""
    every = np.broadcast_to(valid, truth.shape)
    hidden = every & ~observed
    diff = pred - truth
    sq = diff[every] ** 2
    return {
        "mse": float(sq.mean() / (hi - lo) ** 2),
        "mse_unobserved": float((diff[hidden] ** 2).mean() / (hi - lo) ** 2) if hidden.any() else float("nan"),
        "rmse": float(np.sqrt(sq.mean())),
    }


def unit_sphere(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(H, W) grid → (H·W, 3) points on the unit sphere (longitude wraps around)."""
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1).reshape(-1, 3)


def idw(values: np.ndarray, observed: np.ndarray, valid: np.ndarray, lat: np.ndarray, lon: np.ndarray,
        k: int = 8, power: float = 2.0) -> np.ndarray:
    """Inverse-distance weighting per time step from the ``k`` nearest observed points
    (chord distance on the sphere); ``k = 1`` is nearest neighbour. Observed points keep
    their values. Returns (T, H, W), NaN off ``valid``."""
    pts = unit_sphere(lat, lon)
    out = np.full(values.shape, np.nan)
    target = np.flatnonzero(valid.ravel())
    for t in range(values.shape[0]):
        obs = np.flatnonzero(observed[t].ravel())
        kk = min(k, obs.size)
        dist, idx = cKDTree(pts[obs]).query(pts[target], k=kk)
        dist, idx = dist.reshape(target.size, kk), idx.reshape(target.size, kk)
        w = 1.0 / np.maximum(dist, 1e-12) ** power
        vals = values[t].ravel()[obs][idx]
        est = (w * vals).sum(1) / w.sum(1)
        exact = dist[:, 0] < 1e-12
        est[exact] = vals[exact, 0]
        frame = out[t].reshape(-1)
        frame[target] = est
    return out
