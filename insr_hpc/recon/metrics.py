"""Errors of a reconstruction (pure numpy). The classical baselines live in
:mod:`insr_hpc.fields.classical` (``idw`` is re-exported here).

Shapes: fields (T, H, W) in physical units; ``valid`` (H, W); ``observed`` (T, H, W).
Normalised units are the min-max scaling of the true field: (v − lo) / (hi − lo).
"""

from __future__ import annotations

import numpy as np

from insr_hpc.fields.classical import idw, unit_sphere  # noqa: F401  (re-exported)


def metric_range(truth: np.ndarray) -> tuple[float, float]:
    """The paper's normalisation of its metric: the true field's min and max (a fixed
    yardstick for scoring; training never sees it, see ``trainer.make_problem``)."""
    lo, hi = float(np.nanmin(truth)), float(np.nanmax(truth))
    return lo, (hi if hi > lo else lo + 1.0)


def errors(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray, observed: np.ndarray, lo: float, hi: float) -> dict[str, float]:
    """``mse`` (normalised, every valid point — the paper's metric), ``mse_unobserved``
    (normalised, valid points not observed at that time step) and ``rmse`` (physical units).

    ``observed`` is every observation, the training points and the validation points
    alike: validation points select the model, so they never count as held out."""
    every = np.broadcast_to(valid, truth.shape)
    hidden = every & ~observed
    diff = pred - truth
    sq = diff[every] ** 2
    return {
        "mse": float(sq.mean() / (hi - lo) ** 2),
        "mse_unobserved": float((diff[hidden] ** 2).mean() / (hi - lo) ** 2) if hidden.any() else float("nan"),
        "rmse": float(np.sqrt(sq.mean())),
    }


def masked_mse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, lo: float, hi: float) -> float:
    """Normalised MSE over the points of ``mask`` (T, H, W); NaN when it is empty."""
    if not mask.any():
        return float("nan")
    return float(((pred[mask] - truth[mask]) ** 2).mean() / (hi - lo) ** 2)
