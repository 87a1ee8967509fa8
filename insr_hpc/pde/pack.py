"""Packed runs (``launch.pack``): k runs of a sweep that share a network shape, case,
integrator and optimiser, and differ only in values (seeds, Δt, learning rates, the
case's ``pack_values`` such as the initial pulse's μ and σ), computed in one process
with their parameters stacked and every sub-problem solved under one ``vmap`` over
runs (:mod:`insr_hpc.pde.optimizers.packed`).

Each run keeps its own Solver (network initialisation from its seed, samples from its
own generators, history, reference) and, in the workload, its own store, TensorBoard
log, lock and state: packing changes how the arithmetic is batched, not what is
computed. :func:`pack_key` says which runs may share a pack, or why a run cannot.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from insr_hpc.errors import ConfigError, DivergenceError
from insr_hpc.pde.case import CASES, StepContext
from insr_hpc.pde.optimizers import OPTIMIZERS
from insr_hpc.pde.optimizers.base import ParamVector
from insr_hpc.pde.optimizers.packed import PackedProblem, packed_adam, packed_levenberg_marquardt
from insr_hpc.pde.terms import draw
from insr_hpc.runtime import derived_seed

# optimiser keys that may differ inside a pack (each run keeps its own rate)
OPTIM_VALUES = ("lr", "init_lr", "init_warmup_lr")
# keys that change nothing computed (outputs, logging, launching, guard rails)
FREE_SECTIONS = ("launch", "guard", "sweep")
FREE_KEYS = {("output", "figure_every"), ("output", "log_every"), ("output", "overwrite")}


def pack_key(config: dict) -> str:
    """A string equal for exactly the runs that may share a pack; ConfigError (key
    ``launch.pack``) naming why when this run cannot be packed at all."""
    if config.get("workload", "pde") != "pde":
        raise ConfigError("launch.pack", f"only PDE runs can be packed, not workload '{config.get('workload')}'")
    ddp = config.get("launch", {}).get("ddp", {})
    if int(ddp.get("nproc_per_node", 1)) > 1 or int(ddp.get("nodes", 1)) > 1:
        raise ConfigError("launch.pack", "data-parallel runs (launch.ddp) cannot be packed; use launch.pack=1")
    case = config["problem"]["case"]
    cls = CASES.get(case)
    if not CASES.has(case, "packable"):
        packable = CASES.having("packable")
        raise ConfigError("launch.pack", f"problem.case '{case}' cannot be packed (its sub-steps read each other's "
                          f"results); packable cases: {', '.join(packable)}; use launch.pack=1")
    optim = config["optim"]["name"]
    if optim not in OPTIMIZERS or not OPTIMIZERS.has(optim, "packable"):
        raise ConfigError("launch.pack", f"optim.name '{optim}' has no packed version (packed: "
                          f"{', '.join(OPTIMIZERS.having('packable'))}); use launch.pack=1")
    if config["optim"].get("linear_solver") == "cg":
        raise ConfigError("launch.pack", "optim.linear_solver 'cg' is not packed; use cholesky/auto or launch.pack=1")
    shared = {}
    for section, values in config.items():
        if section in FREE_SECTIONS or section in ("seed", "name"):
            continue
        if not isinstance(values, dict):
            shared[section] = values
            continue
        keep = {}
        for key, value in values.items():
            if (section, key) in FREE_KEYS:
                continue
            if section == "problem" and key in cls.pack_values:
                continue
            if section == "optim" and key in OPTIM_VALUES:
                continue
            if section == "time" and key == "dt":
                continue
            keep[key] = value
        shared[section] = keep
    return json.dumps(shared, sort_keys=True, default=str)


def _tensor(values, dtype) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=dtype)


class PackStepper:
    """Advances a group of Solvers (same shapes, same next step) together."""

    def __init__(self, solvers):
        self.solvers = solvers

    def advance(self, group: list[int], step: int, notes=None) -> list[dict | BaseException]:
        """Step ``step`` of the solvers ``group`` (indices). Per run: the result dict of
        :meth:`Solver.advance` (plus ``losses`` by sub-problem), or the exception that
        ended that run (the others go on). ``notes``: index → the run's ``on_progress``
        (as :meth:`Solver.advance`'s), told the pack's iterations."""
        t0 = time.perf_counter()
        solvers = [self.solvers[i] for i in group]
        template = solvers[0]
        device = template.env.device
        dtype = next(template.models[next(iter(template.models))].parameters()).dtype
        problems = [s.problems(step) for s in solvers]
        # values that differ between the runs become per-run inputs; agreed ones stay numbers
        varying = {}
        for key in template.case.pack_values:
            vals = [getattr(s.case.params, key) for s in solvers]
            if len(set(vals)) > 1:
                varying[key] = _tensor(vals, dtype).to(device)
        dts = [s.cfg.time.dt for s in solvers]
        aux_base: dict[str, torch.Tensor] = {f"value:{k}": v for k, v in varying.items()}
        if len(set(dts)) > 1:
            aux_base["dt"] = _tensor(dts, dtype).to(device)
        for h in range(len(template.history) if step else 0):
            for name, model in template.models.items():
                aux_base[f"history:{h}:{name}"] = torch.stack(
                    [torch.as_tensor(s._split(s.history[h])[name], dtype=dtype) for s in solvers]).to(device)
        vecs = {name: ParamVector(m) for name, m in template.models.items()}
        cfg = template.cfg
        n_int = max(1, cfg.sampling.interior)
        n_bdy = max(1, cfg.sampling.boundary) if cfg.sampling.boundary else 0

        def terms_of(k: int):
            def build(aux):
                case = template.case.with_values({key: aux[f"value:{key}"] for key in varying})
                if step == 0:
                    sps = case.initial_problems(template.models, n_int, n_bdy, device)
                else:
                    history = [
                        {name: vecs[name].point_fn(aux[f"history:{h}:{name}"]) for name in template.models}
                        for h in range(len(template.history))
                    ]
                    ctx = StepContext(step=step, t=step * cfg.time.dt, dt=aux.get("dt", cfg.time.dt),
                                      current=template.models, history=history, integrator=template.integrator,
                                      n_interior=n_int, n_boundary=n_bdy, device=device)
                    sps = case.step_problems(ctx)
                return sps[k].terms
            return build

        out: list[dict | BaseException] = [{"iterations": {}, "loss": {}, "capped": {}, "losses": {}} for _ in solvers]
        alive = list(range(len(solvers)))
        for k in range(len(problems[0])):
            names = {problems[i][k].name for i in alive}
            assert len(names) == 1, names
            sp0 = problems[alive[0]][k]
            if any(problems[i][k].prepare is not None for i in alive):
                raise NotImplementedError(f"sub-problem '{sp0.name}' has a prepare hook: not packable")
            gens = {i: torch.Generator().manual_seed(derived_seed(solvers[i].cfg.seed, step, k, 0)) for i in alive}
            prob = PackedProblem(
                vec=vecs[sp0.field],
                thetas=[ParamVector(solvers[i].models[sp0.field]).get() for i in alive],
                aux={key: value[torch.tensor(alive)] for key, value in aux_base.items()},
                terms_of=terms_of(k),
                draws=[(lambda i=i: draw(problems[i][k].terms, gens[i])) for i in alive],
            )
            members = [group[i] for i in alive]

            def on_iteration(done, most, name=sp0.name, members=members):
                for m in members:
                    if notes and m in notes:
                        notes[m](step=step, substep=name, iteration=done, of=most)

            thetas, results = _minimize(solvers, alive, prob, initial=step == 0,
                                        on_iteration=on_iteration if notes else None)
            still = []
            for n, i in enumerate(alive):
                res, solver = results[n], solvers[i]
                ParamVector(solver.models[sp0.field]).set(thetas[n])
                if not all(np.isfinite(res.losses)) or not np.isfinite(res.final_loss):
                    bad = next((q for q, v in enumerate(res.losses) if not np.isfinite(v)), len(res.losses) - 1)
                    out[i] = DivergenceError(f"step {step}, sub-problem '{sp0.name}': non-finite loss at iteration "
                                             f"{bad + 1} ({solver.cfg.optim.name}, packed)")
                    continue
                bad_params = [q for q, p in solver.models[sp0.field].named_parameters() if not torch.isfinite(p).all()]
                if bad_params:
                    out[i] = DivergenceError(f"step {step}, sub-problem '{sp0.name}': non-finite network parameters "
                                             f"({', '.join(bad_params[:3])})")
                    continue
                out[i]["iterations"][sp0.name] = res.iterations
                out[i]["loss"][sp0.name] = res.final_loss
                out[i]["capped"][sp0.name] = bool(res.capped)
                out[i]["losses"][sp0.name] = res.losses
                still.append(i)
            alive = still
        share = (time.perf_counter() - t0) / len(solvers)
        for i in alive:
            flat = solvers[i].flat_weights()
            solvers[i].push_history(flat)
            out[i].update(weights=flat, seconds=share)
        return out


def _minimize(solvers, alive, prob: PackedProblem, *, initial: bool, on_iteration=None):
    """The packed counterpart of ``solver.optimizer.minimize`` (same keys, per-run rates)."""
    opts = [solvers[i].cfg.optim for i in alive]
    p = opts[0]
    if p.name == "adam":
        lrs = [o.init_lr if initial else o.lr for o in opts]
        max_iters, rtol = (p.init_max_iters, p.init_rtol) if initial else (p.max_iters, p.rtol)
        return packed_adam(prob, lrs=lrs, max_iters=max_iters, tol=p.tol, rtol=rtol, window=p.window,
                           patience=p.patience, grad_clip=p.grad_clip, plateau=p.plateau,
                           plateau_factor=p.plateau_factor, min_lr=p.min_lr, keep_best=p.keep_best,
                           on_iteration=on_iteration)
    # gauss_newton: Adam warm-up at step 0, then Levenberg–Marquardt (as GaussNewton.minimize)
    max_iters, rtol = (p.init_max_iters, p.init_rtol) if initial else (p.max_iters, p.rtol)
    warm = 0
    most = max_iters + (p.init_warmup if initial else 0)
    if initial and p.init_warmup:
        thetas, _ = packed_adam(prob, lrs=[o.init_warmup_lr for o in opts], max_iters=p.init_warmup, tol=0.0,
                                rtol=0.0, window=1, on_iteration=on_iteration, report_of=most)
        prob.thetas = list(thetas)
        warm = p.init_warmup
    report = None if on_iteration is None else (lambda done: on_iteration(warm + done, most))
    thetas, results = packed_levenberg_marquardt(prob, max_iters=max_iters, rtol=rtol, params=p, report=report)
    for res in results:
        res.iterations += warm
    return thetas, results


__all__ = ["PackStepper", "pack_key"]
