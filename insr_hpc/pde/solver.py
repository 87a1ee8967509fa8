"""The INSR step loop: fit the initial condition, then one optimisation per time step
(per sub-problem), each warm-started from the previous weights, committed to the store."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from insr_hpc.errors import DivergenceError
from insr_hpc.fields import build_model, flatten_params, load_flat_params, param_layout
from insr_hpc.pde.case import CASES, Case, StepContext, SubProblem
from insr_hpc.pde.integrators import INTEGRATORS
from insr_hpc.pde.optimizers import OPTIMIZERS
from insr_hpc.pde.optimizers.base import Reducer
from insr_hpc.pde.terms import draw, module_point_fn, objective
from insr_hpc.runtime import RunEnv, derived_seed


@dataclass
class Solver:
    """Fields, case and integrator of one run, and the per-step work on them."""

    cfg: object
    env: RunEnv

    def __post_init__(self):
        cfg = self.cfg
        self.case: Case = CASES.get(cfg.problem.case)(cfg.problem, cfg.time.dt)
        self.integrator = INTEGRATORS.get(cfg.integrator.name)(cfg.integrator)
        self.case.integrator = self.integrator
        self.optimizer = OPTIMIZERS.get(cfg.optim.name)(cfg.optim)
        self.reducer = Reducer(self.env.world_size, self.env.reduce_tensor, self.env.reduce_grads, self.env.reduce_scalar)
        torch.manual_seed(cfg.seed)  # network initialisation is part of the seed
        self.models = {
            name: build_model(cfg.network, spec.in_dim, spec.out_dim).to(self.env.device)
            for name, spec in self.case.fields.items()
        }
        self.n_history = max(self.case.history_needed, self.integrator.history_needed)
        self.history: list[np.ndarray] = []  # flat weights of steps n, n−1, … (newest first)
        self._frozen = {name: copy.deepcopy(m).requires_grad_(False) for name, m in self.models.items()}
        if self.env.world_size > 1:
            # Every rank draws the same global batch (shared seed) and keeps its slice, so
            # W ranks see exactly the samples one process would: same gradients, same run.
            self.case.sample_interior = rank_slice(self.case.sample_interior, self.env.rank, self.env.world_size)
            self.case.sample_boundary = rank_slice(self.case.sample_boundary, self.env.rank, self.env.world_size)

    # weights ------------------------------------------------------------------
    def layout(self) -> list[dict]:
        out, offset = [], 0
        for name, model in self.models.items():
            for entry in param_layout(model):
                out.append({**entry, "name": f"{name}.{entry['name']}", "offset": offset + entry["offset"]})
            offset += sum(p.numel() for p in model.parameters())
        return out

    def n_params(self) -> int:
        return sum(p.numel() for m in self.models.values() for p in m.parameters())

    def flat_weights(self) -> np.ndarray:
        return np.concatenate([flatten_params(m) for m in self.models.values()])

    def _split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        parts, offset = {}, 0
        for name, model in self.models.items():
            n = sum(p.numel() for p in model.parameters())
            parts[name] = flat[offset : offset + n]
            offset += n
        return parts

    def load_weights(self, flat: np.ndarray) -> None:
        for name, part in self._split(flat).items():
            load_flat_params(self.models[name], part)

    def push_history(self, flat: np.ndarray) -> None:
        self.history.insert(0, flat)
        del self.history[self.n_history :]

    def _frozen_fields(self, flat: np.ndarray) -> dict[str, Callable]:
        """The fields of a stored weight vector as frozen per-point functions."""
        out = {}
        for name, part in self._split(flat).items():
            model = copy.deepcopy(self._frozen[name])
            load_flat_params(model, part)
            out[name] = module_point_fn(model)
        return out

    # one step -----------------------------------------------------------------
    def problems(self, step: int) -> list[SubProblem]:
        cfg, env = self.cfg, self.env
        n_int = max(1, cfg.sampling.interior // env.world_size)
        n_bdy = max(1, cfg.sampling.boundary // env.world_size) if cfg.sampling.boundary else 0
        if step == 0:
            return self.case.initial_problems(self.models, n_int, n_bdy, env.device)
        ctx = StepContext(
            step=step,
            t=step * cfg.time.dt,
            dt=cfg.time.dt,
            current=self.models,
            history=[self._frozen_fields(h) for h in self.history],
            integrator=self.integrator,
            n_interior=n_int,
            n_boundary=n_bdy,
            device=env.device,
        )
        return self.case.step_problems(ctx)

    def advance(self, step: int, on_losses: Callable[[str, list[float]], None] | None = None,
                on_progress: Callable[..., None] | None = None) -> dict:
        """Compute step ``step`` (0 = initial fit). Returns iterations, final loss and whether
        the optimiser stopped at its iteration cap (``capped``), by sub-problem name.
        ``on_progress(step=, substep=, iteration=, of=)``: as the optimiser iterates
        (every iteration: it must be cheap, e.g. a :class:`~insr_hpc.rundir.ProgressNote`)."""
        cfg = self.cfg
        iters, losses, capped = {}, {}, {}
        t0 = time.perf_counter()
        for k, sp in enumerate(self.problems(step)):
            # Rank-independent seed: ranks slice one global batch (see rank_slice).
            gen = torch.Generator().manual_seed(derived_seed(cfg.seed, step, k, 0))
            if sp.prepare is not None:
                sp.prepare()
            if sp.warm_from_previous and step > 0:
                self._pick_warm_start(sp, derived_seed(cfg.seed, step, k, 1))
            if on_progress is not None:
                self.optimizer.on_iteration = (lambda done, most, name=sp.name:
                                               on_progress(step=step, substep=name, iteration=done, of=most))
            try:
                res = self.optimizer.minimize(self.models[sp.field], sp, gen, initial=step == 0, reducer=self.reducer)
            finally:
                self.optimizer.on_iteration = None
            if not all(np.isfinite(res.losses)) or not np.isfinite(res.final_loss):
                bad = next((i for i, v in enumerate(res.losses) if not np.isfinite(v)), len(res.losses) - 1)
                raise DivergenceError(
                    f"step {step}, sub-problem '{sp.name}': non-finite loss at iteration {bad + 1} ({cfg.optim.name})"
                )
            bad_params = [n for n, p in self.models[sp.field].named_parameters() if not torch.isfinite(p).all()]
            if bad_params:
                raise DivergenceError(
                    f"step {step}, sub-problem '{sp.name}': non-finite network parameters ({', '.join(bad_params[:3])})"
                )
            iters[sp.name] = res.iterations
            losses[sp.name] = res.final_loss
            capped[sp.name] = bool(res.capped)
            if on_losses is not None:
                on_losses(sp.name, res.losses)
        flat = self.flat_weights()
        self.push_history(flat)
        return {"iterations": iters, "loss": losses, "capped": capped, "weights": flat,
                "seconds": time.perf_counter() - t0}

    def _pick_warm_start(self, sp: SubProblem, seed: int) -> None:
        """Load the field's step-n weights if they score lower than its current ones on
        one batch (drawn from its own seed: the optimiser's samples are unchanged)."""
        module = self.models[sp.field]
        field = module_point_fn(module)
        batches = draw(sp.terms, torch.Generator().manual_seed(seed))
        now = flatten_params(module)
        previous = self._split(self.history[0])[sp.field]
        scores = []
        for flat in (now, previous):
            load_flat_params(module, flat)
            with torch.no_grad():
                value = objective(sp.terms, field, batches).detach().reshape(1)
            scores.append(float(self.reducer.mean(value)[0]))
        load_flat_params(module, previous if scores[1] < scores[0] else now)

    def substep_names(self) -> list[str]:
        """Columns of the store's ``iterations``/``loss``: step 0's sub-problems, then a step's."""
        return [*self.case.initial_substeps, *self.case.substeps]


def rank_slice(sampler: Callable, rank: int, world_size: int) -> Callable:
    """Wrap ``sampler(n, gen, device)``: draw ``n * world_size`` points, return rank's ``n``.

    Points (N, d) come back as fresh leaves (``requires_grad`` kept) so spatial
    derivatives are taken with respect to this rank's points only."""

    def sample(n: int, gen, device):
        points = sampler(n * world_size, gen, device)
        if not isinstance(points, torch.Tensor) or points.shape[0] != n * world_size:
            return points  # fixed point sets (e.g. two boundary ends) are shared by all ranks
        part = points[rank * n : (rank + 1) * n].detach()
        return part.requires_grad_(points.requires_grad)

    return sample
