"""Fit one neural field to the observed points of a gridded field (pure training logic,
no I/O): min-max normalised coordinates and values, L1 loss (summed or averaged over a
batch's points), AdamW with exponential lr decay per epoch, global gradient-norm
clipping, batches of whole time steps, a validation MSE every epoch and the weights of
the best one kept for the end.

Data-parallel: with ``env.world_size > 1`` each batch's time steps are dealt out over
the ranks (rank r takes steps r, r + world, … of the batch), every rank computes its
share of the batch loss, scaled so that the all-reduced gradient is the one-process
gradient of the whole batch; clipping and the AdamW step then run identically on every
rank, so weights stay equal without broadcasts.

A coordinate network sees (lat, lon, t) ∈ [0, 1]³; a latent-modulated network
(registered ``latent``, e.g. MMGN) sees (lat, lon) ∈ [0, 1]² and the code z_t of its time
step from a table (T, latent_dim) initialised to zero and optimised with the weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from insr_hpc.errors import DivergenceError
from insr_hpc.fields import build_model
from insr_hpc.fields.registry import latent_size
from insr_hpc.recon.config import TrainConfig
from insr_hpc.runtime import RunEnv


@dataclass
class Problem:
    """The training data in normalised units. Observations are sorted by time step:
    those of step t are ``obs_pix[offsets[t]:offsets[t+1]]`` (flat grid indices)."""

    grid: np.ndarray  # (H·W, 2) normalised (lat, lon)
    times: np.ndarray  # (T,) normalised time
    obs_pix: np.ndarray  # (M,) int64
    obs_val: np.ndarray  # (M,) normalised values
    offsets: np.ndarray  # (T+1,)
    lo: float  # physical value ↦ 0: the training observations' minimum …
    hi: float  # physical value ↦ 1: … and maximum (never the unobserved truth's range)
    shape: tuple[int, int, int]  # (T, H, W)
    val_pix: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (V,) validation points
    val_t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (V,) their time steps
    val_val: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (V,) normalised values

    def denormalise(self, v: np.ndarray) -> np.ndarray:
        return self.lo + v * (self.hi - self.lo)


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def make_problem(values: np.ndarray, observed: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                 validation: np.ndarray | None = None) -> Problem:
    """values (T, H, W) physical (NaN off the valid points); observed (T, H, W) bool: the
    training points; validation (T, H, W) bool: points scored, never trained on.
    Values are min–max normalised by the training observations alone, so nothing about
    the points a run never sees (not even their range) reaches the network."""
    n_t, h, w = values.shape
    seen = values[observed]
    seen = seen[np.isfinite(seen)]
    lo, hi = (float(seen.min()), float(seen.max())) if seen.size else (0.0, 1.0)
    # a grid across the date line in −180…180 (170, 180, −180, …) becomes monotonic
    lon = np.degrees(np.unwrap(np.radians(np.asarray(lon, float))))
    la, lo_ = np.meshgrid(_minmax(np.asarray(lat, float)), _minmax(lon), indexing="ij")
    grid = np.stack([la.ravel(), lo_.ravel()], axis=-1)
    times = np.linspace(0.0, 1.0, n_t) if n_t > 1 else np.zeros(1)
    flat = observed.reshape(n_t, -1)
    t_idx, pix = np.nonzero(flat)  # row-major: sorted by time step
    span = hi - lo if hi > lo else 1.0
    vals = (values.reshape(n_t, -1)[t_idx, pix] - lo) / span
    offsets = np.concatenate([[0], np.cumsum(flat.sum(1))])
    problem = Problem(grid, times, pix.astype(np.int64), vals, offsets, lo, lo + span, (n_t, h, w))
    if validation is not None and validation.any():
        vt, vp = np.nonzero(validation.reshape(n_t, -1))
        problem.val_pix, problem.val_t = vp.astype(np.int64), vt.astype(np.int64)
        problem.val_val = (values.reshape(n_t, -1)[vt, vp] - lo) / span
    return problem


class DivergedError(DivergenceError):
    """Training produced a NaN or infinite loss; the message names the epoch."""




class Trainer:
    def __init__(self, network, train: TrainConfig, problem: Problem, seed: int, device: torch.device,
                 env: RunEnv | None = None):
        self.cfg, self.problem, self.device = train, problem, device
        self.rank, self.world = (env.rank, env.world_size) if env is not None else (0, 1)
        self.reduce_grads = env.reduce_grads if env is not None and self.world > 1 else None
        torch.manual_seed(seed)
        n_t = problem.shape[0]
        self.latent_dim = latent_size(network)
        self.model = build_model(network, 2, 1)
        if not self.latent_dim:  # a coordinate network: time is an input
            # (the (2 → 1) network just built is discarded; building it first keeps the
            # seed → initial weights of earlier versions, which drew it to learn the kind)
            self.model = build_model(network, 3, 1)
        self.model.to(device)
        self.codes = torch.nn.Parameter(torch.zeros(n_t, max(self.latent_dim, 1), device=device)) if self.latent_dim else None
        self.params = list(self.model.parameters()) + ([self.codes] if self.codes is not None else [])
        self.lr = train.lr_for(network.model)
        # fused: one kernel over every parameter (CPU and CUDA), the same update as the loop
        self.optimizer = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=train.weight_decay,
                                           fused=device.type in ("cpu", "cuda"))
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=train.lr_decay)
        self.order_rng = torch.Generator().manual_seed(seed)
        self.epoch = 0  # epochs completed
        # model selection: the weights of the lowest validation MSE so far
        self.best: dict | None = None  # {"epoch", "val_mse", "model", "codes"}
        f32 = dict(dtype=torch.float32, device=device)
        self.grid = torch.as_tensor(problem.grid, **f32)
        self.times = torch.as_tensor(problem.times, **f32)
        self.obs_pix = torch.as_tensor(problem.obs_pix, device=device)
        self.obs_val = torch.as_tensor(problem.obs_val, **f32)[:, None]
        counts = np.diff(problem.offsets)
        self.obs_t = torch.as_tensor(np.repeat(np.arange(n_t), counts), device=device)
        self.val_pix = torch.as_tensor(problem.val_pix, device=device)
        self.val_t = torch.as_tensor(problem.val_t, device=device)
        self.val_val = torch.as_tensor(problem.val_val, dtype=torch.float64, device=device)
        # hybrid models: f = b + w·(n − b) with b an interpolant (normalised units), see set_base
        self.base_grid: np.ndarray | None = None  # (T, H, W)
        self.base_val: torch.Tensor | None = None  # (V,) b at the validation points
        self.max_weight = 1.0
        self.blend_weight = 0.0  # w of the last validation_mse (or of the kept weights)
        self.blend_choice: dict | None = None  # its evidence (BlendChoice.as_dict)

    def set_base(self, base_grid: np.ndarray, max_weight: float = 1.0, min_z: float = 0.0,
                 val_grid: np.ndarray | None = None, val_fold: np.ndarray | None = None,
                 n_clusters: int | None = None, min_clusters: int = 2, folds: int = 10) -> None:
        """Make this a hybrid: predictions become b + w·(n − b), with ``base_grid`` = b
        (T, H, W, normalised) and w chosen on the validation observations by every
        :meth:`validation_mse`. ``val_grid`` (T, H, W): b's values to score at the
        validation points, each estimated without that observation (default ``base_grid``,
        for a b of the training observations only;
        :func:`~insr_hpc.fields.crossval.choose_blend`). ``val_fold`` (V,): the fold of
        each validation point (in ``problem.val_t``/``val_pix`` order), ``n_clusters`` the
        independent clusters behind them; None: one cluster per validation grid point,
        dealt into ``folds`` folds."""
        from insr_hpc.fields.crossval import deal_folds

        n_t = self.problem.shape[0]
        self.base_grid = np.nan_to_num(np.asarray(base_grid, np.float64))
        flat = (self.base_grid if val_grid is None else np.asarray(val_grid, np.float64)).reshape(n_t, -1)
        self.base_val = torch.as_tensor(flat[self.problem.val_t, self.problem.val_pix], dtype=torch.float64,
                                        device=self.device)
        self.max_weight = float(max_weight)
        self.min_z = float(min_z)
        self.min_clusters = int(min_clusters)
        # validation points grouped by grid point (clusters of the weight's standard error)
        cluster = np.unique(self.problem.val_pix, return_inverse=True)[1].reshape(-1)
        self.val_cluster = torch.as_tensor(cluster, device=self.device)
        if val_fold is None:
            n_clusters = int(cluster.max()) + 1 if cluster.size else 0
            fold_of, _ = deal_folds(n_clusters, folds, 0)
            val_fold = fold_of[cluster] if cluster.size else np.zeros(0, np.int64)
        self.val_fold = np.asarray(val_fold, np.int64)
        self.n_folds = int(self.val_fold.max()) + 1 if self.val_fold.size else 0
        self.n_clusters = int(n_clusters if n_clusters is not None else np.unique(cluster).size)

    @property
    def has_validation(self) -> bool:
        return self.val_pix.numel() > 0

    def n_params(self, with_codes: bool = True) -> int:
        n = sum(p.numel() for p in self.model.parameters())
        return n + (self.codes.numel() if with_codes and self.codes is not None else 0)

    def field(self, pix: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Normalised prediction (N, 1) at flat grid indices ``pix`` and time steps ``t``."""
        if self.latent_dim:
            uniq, inverse = torch.unique(pix, return_inverse=True)
            return self.model(self.grid[uniq], codes=self.codes, index=t, x_index=inverse)
        return self.model(torch.cat([self.grid[pix], self.times[t, None]], dim=-1))

    def _observed_field(self, steps: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
        """Normalised prediction (N, 1) at the observations ``idx`` of time steps ``steps``
        (``idx`` lists each step's observations in turn, see :meth:`_batch_points`). Where
        every step has as many observations, a latent model that offers ``forward_steps``
        evaluates them as (steps, points) blocks: the same function, without a per-point
        gather of the codes' modulation."""
        if self.latent_dim and hasattr(self.model, "forward_steps"):
            off = self.problem.offsets
            counts = off[steps + 1] - off[steps]
            if (counts == counts[0]).all():
                pix = self.obs_pix[idx].view(len(steps), int(counts[0]))
                x = self.grid[pix[0]] if bool((pix == pix[0]).all()) else self.grid[pix]
                codes = self.codes[torch.as_tensor(steps, device=self.device)]
                return self.model.forward_steps(x, codes).reshape(-1, self.model.out_dim)
        return self.field(self.obs_pix[idx], self.obs_t[idx])

    def _batch_points(self, steps: np.ndarray) -> torch.Tensor:
        off = self.problem.offsets
        idx = np.concatenate([np.arange(off[t], off[t + 1]) for t in steps]) if len(steps) else np.zeros(0, np.int64)
        return torch.as_tensor(idx, dtype=torch.int64, device=self.device)

    def train_epoch(self) -> tuple[float, list[float], float]:
        """One pass over all time steps in random batches. Returns (mean L1 loss per
        observed point, per-batch mean L1 losses, seconds) and decays the lr. Raises
        DivergedError on a NaN or infinite loss."""
        start = time.perf_counter()
        self.model.train()
        n_t = self.problem.shape[0]
        off = self.problem.offsets
        perm = torch.randperm(n_t, generator=self.order_rng).numpy()
        losses, weights = [], []
        for k in range(0, n_t, self.cfg.batch_steps):
            steps = perm[k : k + self.cfg.batch_steps]
            n_batch = int(sum(off[t + 1] - off[t] for t in steps))  # the whole batch, every rank
            if n_batch == 0:
                continue
            mine = steps[self.rank :: self.world]  # this rank's share
            idx = self._batch_points(mine)
            self.optimizer.zero_grad(set_to_none=True)
            if idx.numel():
                pred = self._observed_field(mine, idx)
                l1_sum = (pred - self.obs_val[idx]).abs().sum()
            else:  # more ranks than time steps in this batch
                l1_sum = sum(p.sum() * 0.0 for p in self.params)
            scale = 1.0 if self.cfg.loss_reduction == "sum" else 1.0 / n_batch
            # reduce_grads averages over ranks: × world makes the result the batch's sum
            (l1_sum * (scale * self.world)).backward()
            if self.reduce_grads is not None:
                self.reduce_grads(self.params)
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            self.optimizer.step()
            local = float(l1_sum.detach())
            batch_mean = (self._sum_over_ranks(local) if self.world > 1 else local) / n_batch
            if not math.isfinite(batch_mean):
                raise DivergedError(f"non-finite training loss ({batch_mean}) at epoch {self.epoch + 1}, batch {k // self.cfg.batch_steps + 1}")
            losses.append(batch_mean)
            weights.append(n_batch)
        self.scheduler.step()
        self.epoch += 1
        mean = float(np.average(losses, weights=weights)) if losses else float("nan")
        return mean, losses, time.perf_counter() - start

    def _sum_over_ranks(self, value: float) -> float:
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.to(self.device)
        dist.all_reduce(t)
        return float(t.item())

    @torch.no_grad()
    def validation_mse(self) -> float:
        """MSE (normalised) on the validation points; NaN without any."""
        if not self.has_validation:
            return float("nan")
        self.model.eval()
        pred = self.field(self.val_pix, self.val_t)[:, 0].double()
        if self.base_grid is None:
            return float(((pred - self.val_val) ** 2).mean())
        # hybrid: the weight of the network's residual over the interpolant, kept only
        # where the validation folds show a gain beyond their spread (crossval.choose_blend);
        # the score is the blend's cross-validated MSE (the base's when w is refused)
        from insr_hpc.fields.crossval import choose_blend

        d, r = pred - self.base_val, self.val_val - self.base_val
        choice = choose_blend(d.cpu().numpy(), r.cpu().numpy(), self.val_fold, self.n_folds, self.n_clusters,
                              self.max_weight, self.min_z, self.min_clusters)
        self.blend_weight = choice.w
        self.blend_choice = choice.as_dict()
        return choice.score

    def weight_stderr(self, d: torch.Tensor, r: torch.Tensor, w: float) -> float:
        """Cluster-robust (sandwich) standard error of the least-squares weight w of
        r ≈ w·d, one cluster per validation grid point: √(Σ_c (Σ_{i∈c} d_i e_i)²) / Σ d²,
        e = r − w·d."""
        scores = torch.zeros(int(self.val_cluster.max()) + 1, dtype=d.dtype, device=d.device)
        scores.index_add_(0, self.val_cluster, d * (r - w * d))
        return float(scores.square().sum().sqrt() / (d * d).sum())

    def observe_validation(self, val_mse: float) -> bool:
        """Keep the current weights if ``val_mse`` is the best so far (returns True)."""
        if not math.isfinite(val_mse) or (self.best is not None and val_mse >= self.best["val_mse"]):
            return False
        self.best = {
            "epoch": self.epoch, "val_mse": val_mse,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "codes": None if self.codes is None else self.codes.detach().clone(),
            "blend_weight": self.blend_weight, "blend_choice": self.blend_choice,
        }
        return True

    def use_best(self) -> None:
        """Load the best validation weights (no-op without any)."""
        if self.best is None:
            return
        self.model.load_state_dict(self.best["model"])
        self.blend_weight = float(self.best.get("blend_weight", 0.0))
        self.blend_choice = self.best.get("blend_choice")
        if self.codes is not None:
            with torch.no_grad():
                self.codes.copy_(self.best["codes"])

    @torch.no_grad()
    def predict(self, chunk_points: int = 8192, network_only: bool = False) -> np.ndarray:
        """The whole field (T, H, W) in normalised units (a hybrid's blend unless
        ``network_only``)."""
        self.model.eval()
        n_t, h, w = self.problem.shape
        per = max(1, chunk_points // (h * w))
        out = np.empty((n_t, h * w), dtype=np.float64)
        pix_all = torch.arange(h * w, device=self.device)
        blocks = self.latent_dim and hasattr(self.model, "forward_steps")
        for t0 in range(0, n_t, per):
            ts = torch.arange(t0, min(n_t, t0 + per), device=self.device)
            if blocks:  # the whole grid is every step's positions
                out[t0 : t0 + len(ts)] = self.model.forward_steps(self.grid, self.codes[ts])[..., 0].double().cpu().numpy()
                continue
            pix = pix_all.repeat(len(ts))
            t = ts.repeat_interleave(h * w)
            out[t0 : t0 + len(ts)] = self.field(pix, t).reshape(len(ts), h * w).double().cpu().numpy()
        out = out.reshape(n_t, h, w)
        if self.base_grid is not None and not network_only:
            out = self.base_grid + self.blend_weight * (out - self.base_grid)
        return out

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
            "best": self.best,
            "blend_weight": self.blend_weight,
            "blend_choice": self.blend_choice,
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
        self.best = state.get("best")
        self.blend_weight = float(state.get("blend_weight", 0.0))
        self.blend_choice = state.get("blend_choice")
