"""Observation patterns of the four reconstruction tasks (Luo et al. 2024, sec. 4).

Every function is pure: (task, ratios, valid mask, number of time steps, seed) →
``observed`` (T, H, W) bool, True only on valid grid points.

* task1 — the same ``round(ratio·V)`` points at every time step (V = valid points).
* task2 — one fixed random ordering of the valid points; time step t observes its first
  n_t points, n_t drawn uniformly in [ratio_min·V, ratio·V]: random count, fixed positions.
* task3 — ``round(ratio·V)`` points drawn afresh at every time step.
* task4 — n_t as in task2, positions drawn afresh at every time step.

:func:`validation_split` then holds back part of the observations for model selection:
whole sensors where positions are fixed (tasks 1, 2: a point seen at other time steps
would not test interpolation), single observations where they are redrawn (tasks 3, 4).
"""

from __future__ import annotations

import numpy as np

from insr_hpc.recon.config import TASKS


def count(ratio: float, n_valid: int) -> int:
    """Observed points for a sampling ratio: at least one."""
    return max(1, min(n_valid, int(round(ratio * n_valid))))


def observation_mask(task: str, ratio: float, ratio_min: float, valid: np.ndarray, n_times: int, seed: int) -> np.ndarray:
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}' (known: {', '.join(TASKS)})")
    rng = np.random.default_rng(seed)
    flat_valid = np.flatnonzero(valid.ravel())
    n_valid = flat_valid.size
    hi = count(ratio, n_valid)
    lo = count(ratio_min, n_valid)
    random_count = task in ("task2", "task4")
    random_positions = task in ("task3", "task4")
    counts = rng.integers(lo, hi + 1, size=n_times) if random_count else np.full(n_times, hi)
    order = rng.permutation(flat_valid)
    mask = np.zeros((n_times, valid.size), dtype=bool)
    for t in range(n_times):
        if random_positions:
            order = rng.permutation(flat_valid)
        mask[t, order[: counts[t]]] = True
    return mask.reshape(n_times, *valid.shape)


FIXED_POSITIONS = ("task1", "task2")


def validation_split(task: str, observed: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``observed`` (T, H, W) into (train, validation) masks, disjoint, whose union is
    ``observed``. ``fraction`` of the sensors (tasks 1–2) or of each time step's
    observations (tasks 3–4) goes to validation, rounded down, never a time step's last
    training point. ``fraction = 0``: no validation points."""
    val = np.zeros_like(observed)
    if fraction <= 0:
        return observed.copy(), val
    rng = np.random.default_rng([seed, 0x7A1])  # independent of the observation draw
    n_t = observed.shape[0]
    flat_obs = observed.reshape(n_t, -1)
    flat_val = val.reshape(n_t, -1)
    if task in FIXED_POSITIONS:
        sensors = np.flatnonzero(flat_obs.any(0))
        held = rng.permutation(sensors)[: int(fraction * sensors.size)]
        flat_val[:, held] = flat_obs[:, held]
        for t in np.flatnonzero(flat_val.sum(1) >= flat_obs.sum(1)):  # keep a training point
            flat_val[t, np.flatnonzero(flat_val[t])[0]] = False
    else:
        for t in range(n_t):
            pts = np.flatnonzero(flat_obs[t])
            k = min(int(fraction * pts.size), pts.size - 1)
            flat_val[t, rng.permutation(pts)[:k]] = True
    return observed & ~val, val
