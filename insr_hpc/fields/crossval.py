"""Cross-validation over independent clusters of observations (pure numpy).

A sensor's errors over time are one piece of evidence, not one per time step, so every
count and every spread here is over *clusters*:

* positions fixed in time (tasks 1–2): a cluster is a sensor (one grid point);
* positions redrawn every time step (tasks 3–4): a cluster is a lat/lon tile, one of
  ``tiles × tiles`` blocks of the grid (neighbouring points share their errors, distant
  ones much less).

Clusters are dealt into K folds (K = min(folds, clusters)) by a seeded permutation.
:func:`choose_blend` is the hybrid's selection of the weight w of a network's residual
over its interpolant: w refitted without each fold, the fold's MSE reduction over the
interpolant measured on it, and w kept only if the mean reduction is above ``min_z``
standard errors across folds (docs/recon.md, "Cross-validation").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


def tile_index(shape: tuple[int, int], tiles: int) -> np.ndarray:
    """(H, W) int: the tile (row block · tiles + column block) of every grid point."""
    h, w = shape
    n_r, n_c = min(tiles, h), min(tiles, w)
    rows = np.minimum(np.arange(h) * n_r // h, n_r - 1)
    cols = np.minimum(np.arange(w) * n_c // w, n_c - 1)
    return rows[:, None] * n_c + cols[None, :]


def clusters_of(mask: np.ndarray, fixed_positions: bool, tiles: int) -> tuple[np.ndarray, int, str]:
    """The cluster of every point of ``mask`` (T, H, W): (T, H, W) int (−1 off the mask,
    else 0 … n − 1), n, and the kind (``sensor`` or ``tile``)."""
    if fixed_positions:
        key = np.broadcast_to(np.arange(mask[0].size).reshape(mask.shape[1:]), mask.shape)
        kind = "sensor"
    else:
        key = np.broadcast_to(tile_index(mask.shape[1:], tiles), mask.shape)
        kind = "tile"
    out = np.full(mask.shape, -1, dtype=np.int64)
    if mask.any():
        uniq, inverse = np.unique(key[mask], return_inverse=True)
        out[mask] = inverse.reshape(-1)
        return out, int(uniq.size), kind
    return out, 0, kind


def deal_folds(n_clusters: int, folds: int, seed: int) -> tuple[np.ndarray, int]:
    """The fold of each of ``n_clusters`` clusters, K = min(folds, n_clusters) folds of
    (nearly) equal numbers of clusters in a seeded random order; returns (fold, K)."""
    k = max(1, min(folds, n_clusters))
    fold = np.empty(n_clusters, dtype=np.int64)
    fold[np.random.default_rng([seed, 0xCF01]).permutation(n_clusters)] = np.arange(n_clusters) % k
    return fold, k


def fold_spread(sq_err: np.ndarray, fold: np.ndarray, k: int) -> tuple[float, float]:
    """Mean over folds of the per-fold MSE and its standard error across folds
    (std / √K; NaN with fewer than two folds)."""
    per = np.array([sq_err[fold == g].mean() for g in range(k) if (fold == g).any()])
    if per.size == 0:
        return float("nan"), float("nan")
    se = float(per.std(ddof=1) / math.sqrt(per.size)) if per.size > 1 else float("nan")
    return float(per.mean()), se


@dataclass
class BlendChoice:
    """The hybrid's weight at one epoch, and the evidence for it."""

    w: float  # the weight used: w_fit if kept, else 0 (the interpolant exactly)
    w_fit: float  # least squares on every validation point, clipped to [0, max_weight]
    kept: bool
    score: float  # the selection criterion: cross-validated MSE of the blend (kept) or the base's MSE
    base_mse: float  # the interpolant's MSE on the validation points
    gain: float  # mean over folds of the per-fold MSE reduction (w refitted without the fold)
    gain_se: float  # its standard error across folds
    folds: int
    clusters: int
    reason: str  # why w = 0, or ""

    @property
    def z(self) -> float:
        return self.gain / self.gain_se if self.gain_se > 0 else (math.inf if self.gain > 0 else 0.0)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["z"] = float(self.z) if math.isfinite(self.z) else None
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def choose_blend(d: np.ndarray, r: np.ndarray, fold: np.ndarray, k: int, n_clusters: int, max_weight: float = 1.0,
                 min_z: float = 1.0, min_clusters: int = 2) -> BlendChoice:
    """The weight w of ``d`` (network − base) that explains ``r`` (truth − base) at the
    validation points, with its cross-validated evidence. ``fold`` (N,) in 0 … k − 1.

    Per fold g: S_dd(g) = Σ d², S_dr(g) = Σ d·r, S_rr(g) = Σ r², n_g points. The weight
    without the fold, w₋g = clip((S_dr − S_dr(g)) / (S_dd − S_dd(g)), 0, max_weight), is
    scored on the fold: its MSE reduction over the base is
    Δ_g = (2 w₋g S_dr(g) − w₋g² S_dd(g)) / n_g. w (fitted on all folds) is kept when
    mean(Δ) > min_z · sd(Δ)/√K (and > 0), with at least ``min_clusters`` clusters and two
    folds; the score is then the out-of-fold MSE Σ_g (S_rr(g) − n_g Δ_g) / N, else the
    base's S_rr / N."""
    d, r = np.asarray(d, np.float64), np.asarray(r, np.float64)
    n = d.size
    base_mse = float((r * r).mean()) if n else float("nan")
    if n == 0:
        return BlendChoice(0.0, 0.0, False, base_mse, base_mse, float("nan"), float("nan"), 0, 0, "no validation points")
    sdd = np.bincount(fold, d * d, minlength=k)
    sdr = np.bincount(fold, d * r, minlength=k)
    srr = np.bincount(fold, r * r, minlength=k)
    cnt = np.bincount(fold, minlength=k).astype(np.float64)
    tdd, tdr = sdd.sum(), sdr.sum()
    w_fit = float(np.clip(tdr / tdd, 0.0, max_weight)) if tdd > 0 else 0.0
    present = cnt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        rest_dd = tdd - sdd
        w_out = np.where(rest_dd > 0, np.clip((tdr - sdr) / np.where(rest_dd > 0, rest_dd, 1.0), 0.0, max_weight), 0.0)
        delta = np.where(present, (2 * w_out * sdr - w_out**2 * sdd) / np.where(present, cnt, 1.0), np.nan)
    gains = delta[present]
    kk = int(present.sum())
    gain = float(gains.mean())
    gain_se = float(gains.std(ddof=1) / math.sqrt(kk)) if kk > 1 else float("nan")
    reason = ""
    if n_clusters < min_clusters:
        reason = f"{n_clusters} validation clusters < min_clusters={min_clusters}"
    elif kk < 2:
        reason = "fewer than two validation folds"
    elif w_fit <= 0:
        reason = "least-squares weight 0"
    elif not gain > 0 or not gain > min_z * gain_se:
        reason = f"cross-validated gain {gain:.3g} not above {min_z:g} × its standard error {gain_se:.3g}"
    kept = not reason
    score = float((srr.sum() - (cnt * np.nan_to_num(delta)).sum()) / n) if kept else base_mse
    return BlendChoice(w_fit if kept else 0.0, w_fit, kept, score, base_mse, gain, gain_se, kk, int(n_clusters), reason)
