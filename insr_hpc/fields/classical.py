"""Classical spatial interpolators as registry models: inverse-distance weighting and
Gaussian-process regression (kriging, through scikit-learn).

They are the baselines a neural field has to beat. A classical entry registers
with ``classical=True``; ``build`` returns an object with

    interpolate(values, observed, valid, lat, lon, loo=False) -> (T, H, W)

``values`` (T, H, W) in any units (only the ``observed`` points are read), ``observed``
(T, H, W) bool, ``valid`` (H, W) bool, ``lat``/``lon`` in degrees. Each time step is
interpolated on its own from that step's observations; the result is NaN off ``valid``
and equals the observation at observed points (IDW) or the posterior mean (kriging).
Distances are chords on the unit sphere, so longitude wraps around.

With ``loo=True`` it returns ``(grid, held)``: ``held`` (T, H, W) is NaN except at the
observed points, where it is the leave-one-out estimate — what the interpolant of that
time step's *other* observations gives there (IDW: the k nearest others; kriging: the
closed form of Rasmussen & Williams §5.4.2, μ₋ᵢ = yᵢ − [K⁻¹y]ᵢ / [K⁻¹]ᵢᵢ at the step's
fitted hyperparameters, with no refit). A point's own time step is all it is taken out
of, so on fixed sensors this is leave-one-sensor-out at every step.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from insr_hpc.fields.crossval import deal_folds, tile_index
from insr_hpc.fields.params import ClassicalParams, IDWParams, KrigingParams
from insr_hpc.fields.registry import MODELS


def unit_sphere(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(H,) × (W,) grid in degrees → (H·W, 3) points on the unit sphere."""
    la, lo = np.meshgrid(np.radians(np.asarray(lat, float)), np.radians(np.asarray(lon, float)), indexing="ij")
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1).reshape(-1, 3)


def idw(values: np.ndarray, observed: np.ndarray, valid: np.ndarray, lat: np.ndarray, lon: np.ndarray,
        k: int = 8, power: float = 2.0, loo: bool = False):
    """Inverse-distance weighting per time step from the ``k`` nearest observed points;
    ``k = 1`` is nearest neighbour. Observed points keep their values. ``loo``: also the
    leave-one-out estimates at the observed points (module docstring)."""
    from scipy.spatial import cKDTree

    pts = unit_sphere(lat, lon)
    out = np.full(values.shape, np.nan)
    held = np.full(values.shape, np.nan) if loo else None
    target = np.flatnonzero(valid.ravel())
    for t in range(values.shape[0]):
        obs = np.flatnonzero(observed[t].ravel())
        if obs.size == 0:
            raise ValueError(f"time step {t} has no observed point to interpolate from")
        tree, y = cKDTree(pts[obs]), values[t].ravel()[obs]
        kk = min(k, obs.size)
        dist, idx = tree.query(pts[target], k=kk)
        dist, idx = dist.reshape(target.size, kk), idx.reshape(target.size, kk)
        out[t].reshape(-1)[target] = _idw_estimate(dist, y[idx], power)
        if loo:
            held[t].reshape(-1)[obs] = idw_loo(tree, pts[obs], y, k, power)
    return (out, held) if loo else out


def idw_loo(tree, pts: np.ndarray, y: np.ndarray, k: int, power: float) -> np.ndarray:
    """IDW at each of the points ``pts`` (indexed by ``tree``, values ``y``) from its ``k``
    nearest *other* points (the point itself, its own nearest, left out); NaN for a lone point."""
    if y.size < 2:
        return np.full(y.size, np.nan)
    kk = min(k + 1, y.size)
    dist, idx = tree.query(pts, k=kk)
    dist, idx = dist.reshape(y.size, kk), idx.reshape(y.size, kk)
    own = idx == np.arange(y.size)[:, None]
    own[own.sum(1) == 0, -1] = True  # a coincident point listed first: drop the farthest instead
    keep = ~own
    dist, idx = dist[keep].reshape(y.size, kk - 1), idx[keep].reshape(y.size, kk - 1)
    w = 1.0 / np.maximum(dist, 1e-12) ** power
    return (w * y[idx]).sum(1) / w.sum(1)


def gp_loo(gp, y: np.ndarray) -> np.ndarray:
    """Leave-one-out posterior means at a fitted ``GaussianProcessRegressor``'s own training
    points (``y`` its targets in their units), hyperparameters held at the fit:
    μ₋ᵢ = yᵢ − [K⁻¹ỹ]ᵢ / [K⁻¹]ᵢᵢ · s, ỹ the standardised targets, s their scale."""
    from scipy.linalg import solve_triangular

    linv = solve_triangular(gp.L_, np.eye(gp.L_.shape[0]), lower=True)
    diag = (linv * linv).sum(0)  # [K⁻¹]ᵢᵢ = Σ_k (L⁻¹)ₖᵢ²
    scale = float(np.std(y)) if gp.normalize_y else 1.0
    scale = scale if scale > 0 else 1.0  # scikit-learn's convention for constant targets
    return y - gp.alpha_.reshape(-1) / diag * scale


def _idw_estimate(dist: np.ndarray, vals: np.ndarray, power: float) -> np.ndarray:
    """IDW from the (N, k) distances to and values of each point's k nearest observations
    (an observation's own point keeps its value)."""
    w = 1.0 / np.maximum(dist, 1e-12) ** power
    est = (w * vals).sum(1) / w.sum(1)
    exact = dist[:, 0] < 1e-12
    est[exact] = vals[exact, 0]
    return est


def _kernel(nu: float, length_scale: float, nugget: float):
    """constant × Matérn(nu) (RBF for nu = inf) + white noise, on chord distance."""
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

    shape = RBF(length_scale, (1e-4, 10.0)) if np.isinf(nu) else Matern(length_scale, (1e-4, 10.0), nu=nu)
    return ConstantKernel(1.0, (1e-3, 1e3)) * shape + WhiteKernel(nugget, (1e-8, 1.0))


def _gp_fit(kernel, x: np.ndarray, y: np.ndarray, optimise: bool = True):
    """A fitted ``GaussianProcessRegressor`` (values standardised; hyperparameters by
    maximum likelihood from ``kernel``'s values unless not ``optimise``)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor

    gp = GaussianProcessRegressor(kernel, normalize_y=True, optimizer="fmin_l_bfgs_b" if optimise else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x, y)
    return gp


@MODELS.register("idw")
class IDW:

    Params = IDWParams

    def __init__(self, params: "IDW.Params"):
        self.params = params

    @classmethod
    def build(cls, params: "IDW.Params", in_dim: int = 2, out_dim: int = 1) -> "IDW":
        return cls(params)

    def interpolate(self, values, observed, valid, lat, lon, loo: bool = False):
        return idw(values, observed, valid, lat, lon, self.params.neighbours, self.params.power, loo)


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
        p = self.params
        return _kernel(p.nu, p.length_scale, p.nugget)

    def interpolate(self, values, observed, valid, lat, lon, loo: bool = False):
        pts = unit_sphere(lat, lon)
        out = np.full(values.shape, np.nan)
        held = np.full(values.shape, np.nan) if loo else None
        target = np.flatnonzero(valid.ravel())
        kernel = self._kernel()
        for t in range(values.shape[0]):
            obs = np.flatnonzero(observed[t].ravel())
            if obs.size == 0:
                raise ValueError(f"time step {t} has no observed point to interpolate from")
            y = values[t].ravel()[obs]
            gp = _gp_fit(kernel, pts[obs], y, optimise=t % self.params.fit_every == 0)
            kernel = gp.kernel_  # the next step starts from (or reuses) this fit
            out[t].reshape(-1)[target] = gp.predict(pts[target])
            if loo:
                held[t].reshape(-1)[obs] = gp_loo(gp, y)
        return (out, held) if loo else out


def _label(cand: dict) -> str:
    if cand["model"] == "stack":
        a, b = cand["of"]
        return f"stack({cand['weight']:.2f} {_label(a)} + {1 - cand['weight']:.2f} {_label(b)})"
    if cand["model"] == "idw":
        return f"idw(power={cand['power']:g}, neighbours={cand['neighbours']})"
    return f"kriging(nu={cand['nu']:g})"


def _gathered(held: list[list[np.ndarray]], ys: list[np.ndarray], groups: list[np.ndarray],
              where: list[np.ndarray]):
    """The CV's held-out estimates (n_cands, N), values (N,), groups (folds or clusters, N)
    and clusters (N,), concatenated."""
    if not ys:
        empty = np.zeros(0, np.int64)
        return np.zeros((len(held), 0)), np.zeros(0), empty, empty
    return (np.stack([np.concatenate(h) for h in held]), np.concatenate(ys),
            np.concatenate(groups).astype(np.int64), np.concatenate(where).astype(np.int64))


class Stack:
    """w · a + (1 − w) · b of two interpolants (the selector's average of its two best
    candidates, w = ½); ``loo`` mixes their leave-one-out estimates the same way."""

    def __init__(self, first, second, weight: float):
        self.first, self.second, self.weight = first, second, float(weight)

    def interpolate(self, values, observed, valid, lat, lon, loo: bool = False):
        a = self.first.interpolate(values, observed, valid, lat, lon, loo)
        b = self.second.interpolate(values, observed, valid, lat, lon, loo)
        w = self.weight
        if loo:
            return w * a[0] + (1 - w) * b[0], w * a[1] + (1 - w) * b[1]
        return w * a + (1 - w) * b


def _build(cand: dict, p) -> "IDW | Kriging | Stack":
    if cand["model"] == "stack":
        a, b = cand["of"]
        return Stack(_build(a, p), _build(b, p), cand["weight"])
    if cand["model"] == "idw":
        return IDW(IDWParams(neighbours=cand["neighbours"], power=cand["power"]))
    return Kriging(KrigingParams(nu=cand["nu"], length_scale=p.length_scale, nugget=p.nugget, fit_every=p.fit_every))


def paired_z(err_a: np.ndarray, err_b: np.ndarray, cluster: np.ndarray) -> float:
    """How clearly estimate a beats b: the mean of b's squared error minus a's over the
    held-out points, in standard errors across their clusters (the per-cluster mean
    differences' sd / √clusters); inf where every cluster agrees exactly."""
    d = np.asarray(err_b, np.float64) - np.asarray(err_a, np.float64)
    _, inv = np.unique(cluster, return_inverse=True)
    per = np.bincount(inv, d) / np.bincount(inv)
    if per.size < 2:
        return float("nan")
    se = per.std(ddof=1) / math.sqrt(per.size)
    return float(d.mean() / se) if se > 0 else (math.inf if d.mean() > 0 else 0.0)


@MODELS.register("classical")
class ClassicalSelector:
    """IDW or kriging, whichever interpolates *this* field best: cross-validation over
    the training observations on a grid of candidates (IDW power × neighbours, kriging's
    Matérn smoothness with its length scale and nugget fitted by maximum likelihood per
    time step); the lowest pooled CV MSE wins and interpolates every time step.

    ``cv: kfold`` (the default): K folds refitted without them, whole sensors dealt into
    the folds where positions are fixed in time (tasks 1–2) and each step's points at
    random where they are redrawn (3–4). ``cv: loo``: every observation is estimated from
    all the others of its time step (``interpolate(loo=True)``; kriging in closed form at
    the step's fitted hyperparameters, which saw the point), 4× cheaper; it favours smooth
    kernels — on 9 field × task cells it picked a kernel worse on the grid than 5-fold's
    choice on 4 (by 4–8 %, and 7.8× where it chose the squared exponential on OSTIA
    task2), a better one on 2 (A1B and E1 task1, 5.5–6 %), the same on 3: docs/recon.md.
    The spread is across clusters (sensors on tasks 1–2, lat/lon tiles on 3–4) or folds.
    When the CV cannot tell the two best apart (``stack``) their average is chosen
    (:class:`Stack`). The CV uses
    ``steps`` evenly spaced time steps (each is interpolated on its own)."""

    Params = ClassicalParams

    def __init__(self, params: "ClassicalSelector.Params"):
        self.params = params
        self.chosen = None  # the winning interpolator (IDW or Kriging), after select
        self.selection: dict | None = None

    @classmethod
    def build(cls, params: "ClassicalSelector.Params", in_dim: int = 2, out_dim: int = 1) -> "ClassicalSelector":
        return cls(params)

    def candidates(self) -> list[dict]:
        p, out = self.params, []
        for name in p.candidates:
            if name == "idw":
                out += [{"model": "idw", "power": float(pw), "neighbours": int(k)}
                        for pw in p.idw_power for k in p.idw_neighbours]
            else:
                out += [{"model": "kriging", "nu": float(nu)} for nu in p.kriging_nu]
        return out

    def select(self, values, observed, valid, lat, lon, fixed_positions: bool | None = None) -> dict:
        """Cross-validate every candidate on the ``observed`` points (T, H, W) and keep the
        best; returns (and keeps in ``selection``) the evidence. ``fixed_positions`` None:
        inferred (fixed when the distinct observed positions are at most twice the most
        any time step observes)."""
        start = time.perf_counter()
        p = self.params
        n_t = values.shape[0]
        flat_obs = observed.reshape(n_t, -1)
        if fixed_positions is None:
            fixed_positions = bool(flat_obs.any(0).sum() <= 2 * flat_obs.sum(1).max())
        steps = np.arange(n_t) if not p.steps or p.steps >= n_t else \
            np.unique(np.round(np.linspace(0, n_t - 1, p.steps)).astype(int))
        if fixed_positions:  # a cluster is a sensor
            cluster = np.full(flat_obs.shape[1], -1)
            sensors = np.flatnonzero(flat_obs.any(0))
            cluster[sensors] = np.arange(sensors.size)
            kind = "sensor"
        else:  # a lat/lon tile
            cluster = tile_index(observed.shape[1:], p.tiles).ravel()
            kind = "tile"
        cands = self.candidates()
        run = self._loo if p.cv == "loo" else self._kfold
        sse, cnt, groups, (held, y, group, where) = run(values.reshape(n_t, -1), flat_obs, steps,
                                                        unit_sphere(lat, lon), cands, cluster, fixed_positions)
        if not cnt.any():
            raise ValueError("classical: no time step has enough observations to cross-validate")
        mixed, n_single = None, len(cands)
        if p.stack and len(cands) > 1:
            # the two best, if the CV cannot tell them apart, averaged: one more entry, scored
            # like them on their held-out estimates (no weight is fitted)
            first, second = np.argsort(sse.sum(1))[:2]
            z = paired_z((held[first] - y) ** 2, (held[second] - y) ** 2, where)
            of = [{**cands[i], "label": _label(cands[i])} for i in (first, second)]
            cands = [*cands, {"model": "stack", "of": of, "weight": 0.5, "z": z if math.isfinite(z) else None}]
            mix = 0.5 * (held[first] + held[second]) - y
            sse = np.vstack([sse, np.bincount(group, mix * mix, minlength=sse.shape[1])])
            if not z >= p.stack_z:  # NaN (one cluster) too: no evidence to choose on
                mixed = len(cands) - 1
        present = cnt > 0
        per_group = sse[:, present] / cnt[present]
        kk = int(present.sum())
        pooled = sse.sum(1) / cnt.sum()
        se = per_group.std(1, ddof=1) / math.sqrt(kk) if kk > 1 else np.full(len(cands), np.nan)
        best = mixed if mixed is not None else int(np.argmin(pooled[:n_single]))
        self.chosen = _build(cands[best], p)
        table = [{**c, "label": _label(c), "cv_mse": float(pooled[i]),
                  "cv_mse_se": float(se[i]) if np.isfinite(se[i]) else None} for i, c in enumerate(cands)]
        n_clusters = int(np.unique(cluster[flat_obs[steps].any(0)]).size)
        self.selection = {
            "chosen": table[best], "candidates": table, "cv": p.cv, "clusters": n_clusters, "cluster_kind": kind,
            "folds": kk if p.cv == "kfold" else None, "spread_over": groups, "steps": int(steps.size),
            "of_steps": int(n_t), "points": int(cnt.sum()),
            "units": "squared field units (the observations' own)", "seconds": time.perf_counter() - start,
        }
        return self.selection

    def _loo(self, vals, flat_obs, steps, pts, cands, cluster, fixed_positions):
        """Leave-one-out at every observed point of the ``steps``: squared errors summed per
        cluster (C clusters: the spread is across them). Returns (sse (n_cands, C), count (C,), "clusters")."""
        from scipy.spatial import cKDTree

        p = self.params
        n_c = int(cluster.max()) + 1
        sse, cnt = np.zeros((len(cands), n_c)), np.zeros(n_c)
        held, ys, groups = [[] for _ in cands], [], []
        fitted: dict = {}  # nu → the kernel last fitted (warm start for the next step)
        for t in steps:
            o = np.flatnonzero(flat_obs[t])
            if o.size < 3:
                continue
            y, c = vals[t, o], cluster[o]
            cnt += np.bincount(c, minlength=n_c)
            ys.append(y)
            groups.append(c)
            tree = cKDTree(pts[o])
            for j, cand in enumerate(cands):
                if cand["model"] == "idw":
                    est = idw_loo(tree, pts[o], y, cand["neighbours"], cand["power"])
                else:
                    kernel = fitted.get(cand["nu"]) or _kernel(cand["nu"], p.length_scale, p.nugget)
                    gp = _gp_fit(kernel, pts[o], y)
                    fitted[cand["nu"]] = gp.kernel_
                    est = gp_loo(gp, y)
                sse[j] += np.bincount(c, (est - y) ** 2, minlength=n_c)
                held[j].append(est)
        return sse, cnt, "clusters", _gathered(held, ys, groups, groups)

    def _kfold(self, vals, flat_obs, steps, pts, cands, cluster, fixed_positions):
        """K-fold: whole sensors dealt into the folds where positions are fixed, each step's
        points dealt at random where they are redrawn; every candidate refitted without the
        fold. Returns (sse (n_cands, K), count (K,), "folds", (estimates (n_cands, N), y (N,), fold (N,)))."""
        from scipy.spatial import cKDTree

        p = self.params
        rng = np.random.default_rng([p.seed, 0xC1A5])
        if fixed_positions:
            fold_c, k = deal_folds(int(cluster.max()) + 1, p.folds, p.seed)
            fold_pix = np.where(cluster >= 0, fold_c[np.maximum(cluster, 0)], -1)
        else:
            k = p.folds
        sse, cnt = np.zeros((len(cands), k)), np.zeros(k)
        held, ys, groups, where = [[] for _ in cands], [], [], []
        fitted: dict = {}  # (nu, fold) → the kernel last fitted there (warm start for the next step)
        for t in steps:
            o = np.flatnonzero(flat_obs[t])
            y = vals[t, o]
            f = fold_pix[o] if fixed_positions else rng.permutation(o.size) % k
            for g in range(k):
                out = f == g
                if not out.any() or out.all():
                    continue
                tr, te, ytr, yte = o[~out], o[out], y[~out], y[out]
                cnt[g] += te.size
                ys.append(yte)
                groups.append(np.full(te.size, g))
                where.append(cluster[te])
                j = 0
                for name in p.candidates:
                    if name == "idw":
                        kmax = min(max(p.idw_neighbours), tr.size)
                        dist, idx = cKDTree(pts[tr]).query(pts[te], k=kmax)
                        dist, idx = dist.reshape(te.size, kmax), idx.reshape(te.size, kmax)
                        for pw in p.idw_power:
                            for kn in p.idw_neighbours:
                                kk = min(int(kn), tr.size)
                                est = _idw_estimate(dist[:, :kk], ytr[idx[:, :kk]], pw)
                                sse[j, g] += ((est - yte) ** 2).sum()
                                held[j].append(est)
                                j += 1
                    else:
                        for nu in p.kriging_nu:
                            kernel = fitted.get((nu, g)) or _kernel(nu, p.length_scale, p.nugget)
                            gp = _gp_fit(kernel, pts[tr], ytr)
                            fitted[(nu, g)] = gp.kernel_
                            est = gp.predict(pts[te])
                            sse[j, g] += ((est - yte) ** 2).sum()
                            held[j].append(est)
                            j += 1
        return sse, cnt, "folds", _gathered(held, ys, groups, where)


    def interpolate(self, values, observed, valid, lat, lon, loo: bool = False):
        if self.chosen is None:
            self.select(values, observed, valid, lat, lon)
        return self.chosen.interpolate(values, observed, valid, lat, lon, loo)
