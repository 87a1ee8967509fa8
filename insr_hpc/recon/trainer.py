"""Fit one neural field to the observed points of a gridded field (pure training logic,
no I/O): min-max normalised coordinates and values, L1 loss, AdamW with exponential lr
decay per epoch, gradient clipping, batches of whole time steps.

A coordinate network sees (lat, lon, t) ∈ [0, 1]³; a latent-modulated network
(``latent_dim > 0``, e.g. MMGN) sees (lat, lon) ∈ [0, 1]² and the code z_t of its time
step from a table (T, latent_dim) initialised to zero and optimised with the weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from insr_hpc.fields import build_model
from insr_hpc.fields.registry import latent_dim
from insr_hpc.recon.config import TrainConfig


@dataclass
class Problem:
    """The training data in normalised units. Observations are sorted by time step:
    those of step t are ``obs_pix[offsets[t]:offsets[t+1]]`` (flat grid indices)."""

    grid: np.ndarray  # (H·W, 2) normalised (lat, lon)
    times: np.ndarray  # (T,) normalised time
    obs_pix: np.ndarray  # (M,) int64
    obs_val: np.ndarray  # (M,) normalised values
    offsets: np.ndarray  # (T+1,)
    lo: float  # physical value ↦ 0
    hi: float  # physical value ↦ 1
    shape: tuple[int, int, int]  # (T, H, W)

    def denormalise(self, v: np.ndarray) -> np.ndarray:
        return self.lo + v * (self.hi - self.lo)


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def make_problem(values: np.ndarray, observed: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> Problem:
    """values (T, H, W) physical (NaN off the valid points); observed (T, H, W) bool."""
    n_t, h, w = values.shape
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    la, lo_ = np.meshgrid(_minmax(np.asarray(lat, float)), _minmax(np.asarray(lon, float)), indexing="ij")
    grid = np.stack([la.ravel(), lo_.ravel()], axis=-1)
    times = np.linspace(0.0, 1.0, n_t) if n_t > 1 else np.zeros(1)
    flat = observed.reshape(n_t, -1)
    t_idx, pix = np.nonzero(flat)  # row-major: sorted by time step
    vals = (values.reshape(n_t, -1)[t_idx, pix] - lo) / (hi - lo if hi > lo else 1.0)
    offsets = np.concatenate([[0], np.cumsum(flat.sum(1))])
    return Problem(grid, times, pix.astype(np.int64), vals, offsets, lo, hi if hi > lo else lo + 1.0, (n_t, h, w))


class Trainer:
    def __init__(self, network, train: TrainConfig, problem: Problem, seed: int, device: torch.device):
        self.cfg, self.problem, self.device = train, problem, device
        torch.manual_seed(seed)
        n_t = problem.shape[0]
        self.model = build_model(network, 2, 1)
        self.latent_dim = latent_dim(self.model)
        if not self.latent_dim:  # a coordinate network: time is an input
            self.model = build_model(network, 3, 1)
        self.model.to(device)
        self.codes = torch.nn.Parameter(torch.zeros(n_t, max(self.latent_dim, 1), device=device)) if self.latent_dim else None
        params = list(self.model.parameters()) + ([self.codes] if self.codes is not None else [])
        self.lr = train.lr_for(network.model)
        self.optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=train.lr_decay)
        self.order_rng = torch.Generator().manual_seed(seed)
        self.epoch = 0  # epochs completed
        f32 = dict(dtype=torch.float32, device=device)
        self.grid = torch.as_tensor(problem.grid, **f32)
        self.times = torch.as_tensor(problem.times, **f32)
        self.obs_pix = torch.as_tensor(problem.obs_pix, device=device)
        self.obs_val = torch.as_tensor(problem.obs_val, **f32)[:, None]
        counts = np.diff(problem.offsets)
        self.obs_t = torch.as_tensor(np.repeat(np.arange(n_t), counts), device=device)

    def n_params(self, with_codes: bool = True) -> int:
        n = sum(p.numel() for p in self.model.parameters())
        return n + (self.codes.numel() if with_codes and self.codes is not None else 0)

    def field(self, pix: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Normalised prediction (N, 1) at flat grid indices ``pix`` and time steps ``t``."""
        if self.latent_dim:
            uniq, inverse = torch.unique(pix, return_inverse=True)
            return self.model(self.grid[uniq], codes=self.codes, index=t, x_index=inverse)
        return self.model(torch.cat([self.grid[pix], self.times[t, None]], dim=-1))

    def _batch_points(self, steps: np.ndarray) -> torch.Tensor:
        off = self.problem.offsets
        idx = np.concatenate([np.arange(off[t], off[t + 1]) for t in steps])
        return torch.as_tensor(idx, device=self.device)

    def train_epoch(self) -> tuple[float, list[float], float]:
        """One pass over all time steps in random batches. Returns (mean L1 loss, batch
        losses, seconds) and decays the lr."""
        start = time.perf_counter()
        self.model.train()
        n_t = self.problem.shape[0]
        perm = torch.randperm(n_t, generator=self.order_rng).numpy()
        losses, weights = [], []
        for k in range(0, n_t, self.cfg.batch_steps):
            idx = self._batch_points(perm[k : k + self.cfg.batch_steps])
            if idx.numel() == 0:
                continue
            pred = self.field(self.obs_pix[idx], self.obs_t[idx])
            loss = torch.nn.functional.l1_loss(pred, self.obs_val[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], self.cfg.grad_clip)
            self.optimizer.step()
            losses.append(float(loss.detach()))
            weights.append(idx.numel())
        self.scheduler.step()
        self.epoch += 1
        mean = float(np.average(losses, weights=weights)) if losses else float("nan")
        return mean, losses, time.perf_counter() - start

    @torch.no_grad()
    def predict(self, chunk_points: int = 8192) -> np.ndarray:
        """The whole field (T, H, W) in normalised units."""
        self.model.eval()
        n_t, h, w = self.problem.shape
        per = max(1, chunk_points // (h * w))
        out = np.empty((n_t, h * w), dtype=np.float64)
        pix_all = torch.arange(h * w, device=self.device)
        for t0 in range(0, n_t, per):
            ts = torch.arange(t0, min(n_t, t0 + per), device=self.device)
            pix = pix_all.repeat(len(ts))
            t = ts.repeat_interleave(h * w)
            out[t0 : t0 + len(ts)] = self.field(pix, t).reshape(len(ts), h * w).double().cpu().numpy()
        return out.reshape(n_t, h, w)

    # -- resume -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "codes": None if self.codes is None else self.codes.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "order_rng": self.order_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.model.load_state_dict(state["model"])
        if self.codes is not None:
            with torch.no_grad():
                self.codes.copy_(state["codes"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.order_rng.set_state(state["order_rng"])
        torch.set_rng_state(state["torch_rng"])
