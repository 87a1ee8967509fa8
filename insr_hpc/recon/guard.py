"""Guard rails on a finished reconstruction, from the observations alone (never the
truth): a field far outside the observed range, or a validation error that grew far
past its best, makes a run ``suspect``."""

from __future__ import annotations

import numpy as np

from insr_hpc.recon.config import ReconConfig


def guard(cfg: ReconConfig, pred: np.ndarray, valid: np.ndarray, train_values: np.ndarray,
          val_history: np.ndarray, units: str | None) -> str | None:
    """Why a finished reconstruction is not to be trusted, or None. ``pred`` (T, H, W) and
    ``train_values`` (the training observations) in physical units; ``val_history`` the
    validation MSE of every epoch (NaN where not measured)."""
    u = f" {units}" if units else ""
    reasons = []
    field_values = pred[:, valid]
    lo, hi = float(np.min(train_values)), float(np.max(train_values))
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    pmin, pmax = float(np.min(field_values)), float(np.max(field_values))
    f = cfg.train.guard_range
    if pmin < lo - f * span or pmax > hi + f * span:
        reasons.append(f"reconstruction spans [{pmin:.4g}, {pmax:.4g}]{u}, beyond the observed [{lo:.4g}, {hi:.4g}]{u} "
                       f"by more than train.guard_range={f:g} × their range")
    measured = np.flatnonzero(np.isfinite(val_history))
    if measured.size:
        best = int(measured[np.argmin(val_history[measured])])
        last = int(measured[-1])
        if val_history[last] > cfg.train.guard_growth * val_history[best]:
            reasons.append(f"validation MSE grew from {val_history[best]:.3e} (epoch {best + 1}) to "
                           f"{val_history[last]:.3e} (epoch {last + 1}), more than train.guard_growth={cfg.train.guard_growth:g}×")
    return "; ".join(reasons) or None
