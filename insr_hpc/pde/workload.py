"""The PDE workload: a Solver driven step by step into a StepStore and TensorBoard.

Idempotent: started again on the same run directory it continues after the last
committed step (weights reloaded from the store), and does nothing if all are done.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from insr_hpc.config.load import config_to_dict, config_to_yaml
from insr_hpc.config.schema import Config
from insr_hpc.errors import DivergenceError
from insr_hpc.monitor import Monitor
from insr_hpc.pde.config import TAGGED_SECTIONS, PDEConfig
from insr_hpc.pde.solver import Solver
from insr_hpc.rundir import ProgressNote, RunDir
from insr_hpc.runtime import RunEnv, git_commit, package_versions, signals_deferred
from insr_hpc.store import StepStore, VarSpec, json_safe
from insr_hpc.workloads import WORKLOADS, Ended, hparams, reopen_store

HPARAM_SECTIONS = ("problem", "network", "integrator", "optim", "time", "sampling")
# values of the store's ``capped`` (CF flag_meanings → flag_values)
CAPPED_FLAGS = {"not_run": -1, "converged_by_rule": 0, "stopped_at_cap": 1}


# CF attributes of the error series a case reports (every PDE case is non-dimensional).
ERROR_ATTRS = {
    "rel_l2": "relative L2 error vs the reference (‖u − u_ref‖ / ‖u_ref‖ on the output grid)",
    "max_err": "maximum absolute error vs the reference on the output grid",
    "solver_rel_l2": "relative L2 error vs the integrator's semi-discrete solution (the optimiser's share)",
    "scheme_rel_l2": "relative L2 error of the integrator's reference solution vs the exact one (the time scheme's share)",
    "drift": "relative L2 difference from the initial velocity u0",
    "tip_error": "distance of the beam tip from its FEM reference position",
}
# CF attributes of the output grids' coordinates (the domains are non-dimensional).
COORD_ATTRS = {
    "x": {"long_name": "x (non-dimensional domain coordinate)", "units": "1", "axis": "X"},
    "y": {"long_name": "y (non-dimensional domain coordinate)", "units": "1", "axis": "Y"},
    "point": {"long_name": "reference point index (positions: attribute reference_positions of points)", "units": "1"},
}
TIME_ATTRS = {"standard_name": "time", "long_name": "time (non-dimensional: step × time.dt)", "units": "1", "axis": "T"}


def store_variables(solver: Solver) -> dict[str, VarSpec]:
    cfg, case = solver.cfg, solver.case
    res = cfg.output.resolution
    n = cfg.time.steps + 1
    subs = solver.substep_names()
    errs = case.error_names
    variables: dict[str, VarSpec] = {
        "step": VarSpec(("step",), (n,), "int32", {"long_name": "time step index", "units": "1"},
                        np.arange(n, dtype=np.int32)),
        "time": VarSpec(("step",), (n,), "float64", dict(TIME_ATTRS), np.arange(n) * cfg.time.dt),
        # a label: no units (CF: units are for quantities)
        "substep": VarSpec(("substep",), (len(subs),), "str", {"long_name": "sub-problem"}, np.array(subs)),
    }
    # the coordinate arrays of the case's output grid
    for name, values in case.output_coords(res).items():
        attrs = dict(COORD_ATTRS.get(name, {"long_name": f"{name} (non-dimensional)", "units": "1"}))
        variables[name] = VarSpec((name,), values.shape, "float64", attrs, values)
    for name, (dims, dtype, attrs, data) in case.static_vars(res).items():
        variables[name] = VarSpec(dims, data.shape, dtype, attrs, data)
    variables["weights"] = VarSpec(
        ("step", "parameter"),
        (n, solver.n_params()),
        "float32",
        {"long_name": "flattened network parameters; layout in the store attribute param_layout", "units": "1"},
    )
    for name, (dims, shape, attrs) in case.output_vars(res).items():
        variables[name] = VarSpec(("step", *dims), (n, *shape), "float32", attrs)
    variables["iterations"] = VarSpec(("step", "substep"), (n, len(subs)), "int32",
                                      {"long_name": "optimiser iterations (Adam/L-BFGS steps, Gauss–Newton iterations; "
                                                    "-1: the sub-problem did not run)", "units": "1"})
    variables["loss"] = VarSpec(("step", "substep"), (n, len(subs)), "float64",
                                {"long_name": "objective at the end of the sub-problem", "units": "1"})
    variables["capped"] = VarSpec(
        ("step", "substep"), (n, len(subs)), "int8",
        {"long_name": "the sub-problem's optimiser stopped at its iteration cap, not by its convergence rule",
         "units": "1", "flag_values": list(CAPPED_FLAGS.values()), "flag_meanings": " ".join(CAPPED_FLAGS)},
        fill=CAPPED_FLAGS["not_run"],
    )
    variables["seconds"] = VarSpec(("step",), (n,), "float64",
                                   {"long_name": "wall time of the step (step 0: the initial fit)", "units": "s"})
    for name in errs:
        variables[name] = VarSpec(("step",), (n,), "float64",
                                  {"long_name": ERROR_ATTRS.get(name, f"{name} vs reference"), "units": "1"})
    return variables


def store_attrs(cfg: Config, solver: Solver, run_id: str) -> dict[str, Any]:
    return json_safe(
        {
            "title": f"insr-hpc {cfg.problem.case} run {run_id}",
            "run_id": run_id,
            "workload": "pde",
            "case": cfg.problem.case,
            "integrator": cfg.integrator.name,
            "model": cfg.network.model,
            "fields": {name: [s.in_dim, s.out_dim] for name, s in solver.case.fields.items()},
            "seed": cfg.seed,
            "config": config_to_dict(cfg),
            "config_yaml": config_to_yaml(cfg),
            "git_commit": git_commit(),
            "versions": package_versions(),
            "param_layout": solver.layout(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "complete": False,
            **solver.case.extra_attrs(),
        }
    )


class PDERun:
    """One PDE run's I/O around its Solver: the store (created or reopened and repaired,
    weights and history reloaded), TensorBoard, progress, and the per-step record
    (evaluate, guard, commit). ``run_pde`` drives one; ``run_pde_pack`` drives k in
    lockstep with their steps computed packed (:mod:`insr_hpc.pde.pack`)."""

    def __init__(self, cfg: Config, run_dir: str, env: RunEnv, run_id: str = "r000", log=None):
        self.cfg, self.env, self.run_id = cfg, env, run_id
        self.log = log or (lambda line: print(line, flush=True))
        self.solver = solver = Solver(cfg, env)
        rd = RunDir(run_dir)
        path = rd.store
        env.barrier()  # e.g. rank 0 clearing the run's outputs for output.overwrite (cli)
        store = reopen_store(path, log=self.log) if env.is_main else None
        env.barrier()  # rank 0 has recovered / repaired the store: the others open it as it is now
        if not env.is_main:
            store = StepStore.open(path) if StepStore.exists(path) else None
        if store is None:
            store = StepStore.create(path, store_variables(solver), store_attrs(cfg, solver, run_id)) if env.is_main else None
            env.barrier()
            store = store or StepStore.open(path)
        elif store.n_steps < cfg.time.steps + 1:  # time.steps was raised: extend the run, every step kept
            if env.is_main:
                was = store.n_steps - 1
                store = StepStore.extend(store, store_variables(solver), store_attrs(cfg, solver, run_id))
                self.log(f"{run_id}: extended from {was} to {cfg.time.steps} steps; "
                         f"continues after step {store.completed_steps() - 1}")
            env.barrier()
            store = store if env.is_main else StepStore.open(path)
        self.store = store
        self.start = start = store.completed_steps()
        self.total = cfg.time.steps + 1
        # Reload the last committed weights (and the history the integrator needs).
        for k in range(max(0, start - solver.n_history), start):
            solver.push_history(store.read_step("weights", k))
        if start > 0:
            solver.load_weights(solver.history[0])
        done_iters = int(store.read_records("iterations", start).clip(min=0).sum()) if start else 0
        # The arrays a step writes are the store's: one made by an older version lacks the
        # per-step variables added since (``capped``, Euler's scheme_rel_l2) and is resumed
        # without them (unknown there).
        self.arrays = store.names()
        self.monitor = Monitor(rd.tb, start, done_iters, cfg.output.log_every, enabled=env.is_main)
        self.subs = solver.substep_names()
        self.global_iter = done_iters
        self.next_step = start
        self.bar = None
        # progress.json: where the run is inside its current step (status; main rank only)
        self.note = ProgressNote(run_dir, enabled=env.is_main)
        # When stdout is a file (batch logs, log.txt of a local worker): a line every ~5 % of the run.
        self.lines = max(1, self.total // 20) if env.is_main and not sys.stdout.isatty() else 0

    @property
    def finished(self) -> bool:
        return self.next_step >= self.total

    def log_losses(self, name: str, losses: list[float]) -> None:
        self.monitor.iteration_losses(name, losses, self.global_iter)
        self.global_iter += len(losses)

    def record(self, result: dict) -> None:
        """Evaluate, check and commit the step just computed (``result`` of Solver.advance)."""
        cfg, env, solver, step = self.cfg, self.env, self.solver, self.next_step
        t = step * cfg.time.dt
        solver.case.time_now = t
        outputs = solver.case.evaluate(solver.models, cfg.output.resolution, env.device)
        reference = solver.case.reference(t, cfg.output.resolution)
        errors = solver.case.errors(outputs, reference)
        check_guard(cfg, step, errors, solver.case.error_names[0],
                    (solver.case.substeps if step else solver.case.initial_substeps)[-1])
        if env.is_main:
            iters = np.array([result["iterations"].get(s, -1) for s in self.subs], dtype=np.int32)
            losses = np.array([result["loss"].get(s, np.nan) for s in self.subs])
            values = {
                "weights": result["weights"],
                **outputs,
                **reference,
                "iterations": iters,
                "loss": losses,
                "seconds": result["seconds"],
                **errors,
                "capped": np.array([int(result["capped"][s]) if s in result["capped"] else CAPPED_FLAGS["not_run"]
                                    for s in self.subs], dtype=np.int8),
            }
            scalars = {f"error/{k}": v for k, v in errors.items()}
            scalars.update({f"iterations/{s}": result["iterations"][s] for s in result["iterations"]})
            scalars.update({f"final_loss/{s}": result["loss"][s] for s in result["loss"]})
            with signals_deferred():  # a signal between the commit and its log would leave the step unlogged
                self.store.commit_step(step, {k: v for k, v in values.items() if k in self.arrays})
                self.monitor.step_scalars(step, scalars)
            every = cfg.output.figure_every
            if every and (step % every == 0 or step == self.total - 1):
                self.monitor.step_figure(step, "field", solver.case.figure(outputs, t, cfg.output.resolution))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{max(result['loss'].values()):.2e}", **{k: f"{v:.2e}" for k, v in errors.items()})
        if self.lines and (step % self.lines == 0 or step == self.total - 1):  # batch logs: plain lines, not a bar
            errs = " ".join(f"{k}={v:.3e}" for k, v in errors.items())
            its = sum(result["iterations"].values())
            capped = [s for s, c in result["capped"].items() if c]
            self.log(f"{self.run_id} step {step}/{self.total - 1} t={t:.4g} {errs} "
                     f"loss={max(result['loss'].values()):.3e} iterations={its} {result['seconds']:.2f}s"
                     + (f" capped={','.join(capped)}" if capped else ""))
        self.next_step += 1

    def finish(self) -> dict[str, Any]:
        summary = _summary(self.store, self.solver.case.error_names)
        if self.env.is_main:
            if not self.store.attrs.get("complete"):
                self.monitor.hparams(hparams(self.cfg, HPARAM_SECTIONS), summary["final"])
            done = {"complete": True, "final_errors": summary["final"]}
            if "capped_substeps" in summary:
                done["capped_substeps"] = summary["capped_substeps"]
            self.store.finish(done)
        return summary

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.monitor.close()


def run_pde(cfg: Config, run_dir: str, env: RunEnv, run_id: str = "r000") -> dict[str, Any]:
    """Run (or resume) one PDE job. Returns a summary (steps done, final errors)."""
    run = PDERun(cfg, run_dir, env, run_id)
    run.bar = tqdm(total=run.total, initial=run.start, desc=run_id, unit="step",
                   disable=None if env.progress else True, leave=False)
    try:
        while not run.finished:
            step = run.next_step
            run.record(run.solver.advance(step, run.log_losses, run.note))
            env.barrier()
            if not run.finished:
                env.check_stop(f"step {step}")
        return run.finish()
    finally:
        run.close()


def run_pde_pack(runs, env: RunEnv, ended, should_drop=None) -> None:
    """Run (or resume) k PDE runs as one pack: ``runs`` is a list of (cfg, run_dir,
    run_id) that :func:`insr_hpc.pde.pack.pack_key` puts in one pack. Steps are
    computed packed (runs at the same next step together, the ones behind first);
    each run keeps its own store, TensorBoard log and ``log.txt`` lines. ``ended(i,
    Ended(...))`` is called once per run as it ends: with its summary, or the exception
    that ended it alone (the others go on), or the reason it was dropped. ``should_drop(i)``: a reason to stop run i at a
    step boundary (e.g. cancelled), or None. :class:`~insr_hpc.runtime.Interrupted`
    (a stop signal) propagates; runs not yet ended are then the caller's to record."""
    from insr_hpc.pde.pack import PackStepper

    members: dict[int, PDERun] = {}
    for i, (cfg, run_dir, run_id) in enumerate(runs):
        try:
            members[i] = PDERun(cfg, run_dir, env, run_id, log=_run_log(run_dir))
        except Exception as exc:  # this run alone cannot start (e.g. a damaged store)
            ended(i, Ended(error=exc))
    stepper = PackStepper({i: m.solver for i, m in members.items()})
    try:
        for i, m in list(members.items()):
            if m.finished:  # resumed after its last step
                ended(i, Ended(summary=m.finish()))
                members.pop(i).close()
        while members:
            step = min(m.next_step for m in members.values())
            group = [i for i, m in members.items() if m.next_step == step]
            notes = {i: members[i].note for i in group}
            for i, outcome in zip(group, stepper.advance(group, step, notes), strict=True):
                m = members[i]
                try:
                    if isinstance(outcome, BaseException):
                        raise outcome
                    for name, values in outcome["losses"].items():
                        m.log_losses(name, values)
                    m.record(outcome)
                    if m.finished:
                        ended(i, Ended(summary=m.finish()))
                        members.pop(i).close()
                except Exception as exc:
                    ended(i, Ended(error=exc))
                    members.pop(i).close()
            if members:
                env.check_stop(f"step {step}")
                for i in list(members):
                    reason = should_drop(i) if should_drop is not None else None
                    if reason:
                        ended(i, Ended(dropped=reason))
                        members.pop(i).close()
    finally:
        for m in members.values():
            m.close()


def _run_log(run_dir: str):
    """A run's progress lines into its own ``log.txt`` (a pack shares one stdout)."""
    path = RunDir(run_dir).log

    def log(line: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        print(line, flush=True)

    return log


def check_guard(cfg: Config, step: int, errors: dict[str, float], primary: str, last_sub: str) -> None:
    """Fail the step (DivergenceError, before it is committed) when an error metric is not
    finite or the primary one exceeds ``guard.max_error``."""
    if not np.isfinite(errors[primary]):
        raise DivergenceError(f"step {step}, sub-problem '{last_sub}': non-finite {primary} vs the reference")
    bound = cfg.guard.max_error
    if bound and errors[primary] > bound:
        raise DivergenceError(
            f"step {step}, sub-problem '{last_sub}': {primary}={errors[primary]:.3e} exceeds guard.max_error={bound:g}"
        )


def _summary(store: StepStore, error_names) -> dict[str, Any]:
    last = store.completed_steps() - 1
    final = {name: float(store.read_step(name, last)) for name in error_names if name in store}
    final["max_over_steps_rel_l2"] = float(np.nanmax(store.read_records(error_names[0], last + 1)))
    out: dict[str, Any] = {"steps_done": last + 1, "final": final}
    if "capped" in store:  # absent in stores from before the variable: unknown
        capped = store.read_records("capped", last + 1)
        out["capped_substeps"] = int((capped == CAPPED_FLAGS["stopped_at_cap"]).sum())
    return out


@WORKLOADS.register("pde")
class PDEWorkload:
    config_class = PDEConfig
    tagged_sections = TAGGED_SECTIONS
    run = staticmethod(run_pde)
    run_pack = staticmethod(run_pde_pack)

    @staticmethod
    def pack_key(config: dict) -> str:
        from insr_hpc.pde.pack import pack_key

        return pack_key(config)
