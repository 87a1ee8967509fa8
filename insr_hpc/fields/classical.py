"""Classical spatial interpolators as registry models: inverse-distance weighting and
Gaussian-process regression (kriging, through scikit-learn).

They are the baselines a neural field has to beat. A classical entry registers
with ``classical=True``; ``build`` returns an object with

    interpolate(values, observed, valid, lat, lon) -> (T, H, W)

``values`` (T, H, W) in any units (only the ``observed`` points are read), ``observed``
(T, H, W) bool, ``valid`` (H, W) bool, ``lat``/``lon`` in degrees. Each time step is
interpolated on its own from that step's observations; the result is NaN off ``valid``
and equals the observation at observed points (IDW) or the posterior mean (kriging).
Distances are chords on the unit sphere, so longitude wraps around.
"""

from __future__ import annotations

import warnings

import numpy as np

from insr_hpc.fields.params import IDWParams, KrigingParams
from insr_hpc.fields.registry import MODELS


def unit_sphere(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(H,) × (W,) grid in degrees → (H·W, 3) points on the unit sphere."""
    la, lo = np.meshgrid(np.radians(np.asarray(lat, float)), np.radians(np.asarray(lon, float)), indexing="ij")
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1).reshape(-1, 3)


def idw(values: np.ndarray, observed: np.ndarray, valid: np.ndarray, lat: np.ndarray, lon: np.ndarray,
        k: int = 8, power: float = 2.0) -> np.ndarray:
    """Inverse-distance weighting per time step from the ``k`` nearest observed points;
    ``k = 1`` is nearest neighbour. Observed points keep their values."""
    from scipy.spatial import cKDTree

    pts = unit_sphere(lat, lon)
    out = np.full(values.shape, np.nan)
    target = np.flatnonzero(valid.ravel())
    for t in range(values.shape[0]):
        obs = np.flatnonzero(observed[t].ravel())
        if obs.size == 0:
            raise ValueError(f"time step {t} has no observed point to interpolate from")
        kk = min(k, obs.size)
        dist, idx = cKDTree(pts[obs]).query(pts[target], k=kk)
        dist, idx = dist.reshape(target.size, kk), idx.reshape(target.size, kk)
        w = 1.0 / np.maximum(dist, 1e-12) ** power
        vals = values[t].ravel()[obs][idx]
        est = (w * vals).sum(1) / w.sum(1)
        exact = dist[:, 0] < 1e-12
        est[exact] = vals[exact, 0]
        out[t].reshape(-1)[target] = est
    return out


@MODELS.register("idw")
class IDW:

    Params = IDWParams

    def __init__(self, params: "IDW.Params"):
        self.params = params

    @classmethod
    def build(cls, params: "IDW.Params", in_dim: int = 2, out_dim: int = 1) -> "IDW":
        return cls(params)

    def interpolate(self, values, observed, valid, lat, lon) -> np.ndarray:
        return idw(values, observed, valid, lat, lon, self.params.neighbours, self.params.power)


@MODELS.register("kriging")
class Kriging:
    """Ordinary kriging as Gaussian-process regression (scikit-learn's
    ``GaussianProcessRegressor``): a constant × Matérn covariance of the chord distance
    plus a white-noise nugget, hyperparameters fitted by maximum marginal likelihood on
    each time step's observations (warm-started from the previous step's fit), values
    standardised per step; the estimate is the posterior mean."""

    Params = KrigingParams

    def __init__(self, params: "Kriging.Params"):
        self.params = params

    @classmethod
    def build(cls, params: "Kriging.Params", in_dim: int = 2, out_dim: int = 1) -> "Kriging":
        return cls(params)

    def _kernel(self):
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

        p = self.params
        shape = RBF(p.length_scale, (1e-4, 10.0)) if np.isinf(p.nu) else Matern(p.length_scale, (1e-4, 10.0), nu=p.nu)
        return ConstantKernel(1.0, (1e-3, 1e3)) * shape + WhiteKernel(p.nugget, (1e-8, 1.0))

    def interpolate(self, values, observed, valid, lat, lon) -> np.ndarray:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor

        pts = unit_sphere(lat, lon)
        out = np.full(values.shape, np.nan)
        target = np.flatnonzero(valid.ravel())
        kernel = self._kernel()
        for t in range(values.shape[0]):
            obs = np.flatnonzero(observed[t].ravel())
            if obs.size == 0:
                raise ValueError(f"time step {t} has no observed point to interpolate from")
            y = values[t].ravel()[obs]
            refit = t % self.params.fit_every == 0
            gp = GaussianProcessRegressor(kernel, normalize_y=True, optimizer="fmin_l_bfgs_b" if refit else None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gp.fit(pts[obs], y)
            kernel = gp.kernel_  # the next step starts from (or reuses) this fit
            out[t].reshape(-1)[target] = gp.predict(pts[target])
        return out
