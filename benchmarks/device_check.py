"""Run and time the project's main paths on one device (a lent GPU, or this CPU), each
item on its own, and print one table.

    python benchmarks/device_check.py                      # cuda when available, else cpu (< 8 min on an H200)
    python benchmarks/device_check.py --device cpu --small # every size shrunk: ~1–2 min on a 2-core CPU
    python benchmarks/device_check.py --only advection,pack --write
    python benchmarks/device_check.py --json device_check.json     # then, elsewhere: --from-json device_check.json --write

Items (``--only`` takes their names):

* ``advection`` — configs/advection.yaml (Gauss–Newton): step 0, then a few steps;
  s/step and rel. L2 vs the analytic solution;
* ``euler`` — configs/euler.yaml: the initial fit and a few steps; s/step, rel. L2 of u
  vs the grid reference, RMS divergence;
* ``recon`` — configs/reconstruct.yaml with the model mmgn on the shipped sample data
  (iris-sample-data A1B), 5 epochs; s/epoch and the final MSE;
* ``pack`` — packed advection runs (``launch.pack``, :class:`insr_hpc.pde.pack.PackStepper`)
  at k = 1 (alone), 16, 64 runs per pack; s per run-step;
* ``ddp`` — a one-rank process group (NCCL on CUDA, gloo on CPU, ``tcp://127.0.0.1``):
  one Gauss–Newton advection step through the project's reducers
  (:func:`insr_hpc.launch.ddp.group_env`; every sum goes through ``all_reduce`` although
  the group has one rank) against the same step without a group, and the reducers'
  results against their inputs.

Each item runs in its own try/except: a failure is a row with its error, the others go
on. Columns: seconds per unit of work in CPU (process) time and wall time (CUDA
synchronised), the item's error measure, peak memory (``torch.cuda.max_memory_allocated``
per item on CUDA; on CPU the process's peak RSS so far) and ok or the error. Exit status
0 when every row is ok. The device comes from ``--device`` or from availability, and
every config is loaded with ``device=<that>``; ``--write`` puts the table into
docs/benchmarks.md (section "Device check: <device type>"), ``--out`` into a file of its
own, ``--json`` as data; ``--from-json FILE --write`` writes the section here from a
report made on another machine (a lent GPU: docs/benchmarks.md says how).

Three things here are for this check alone: the DDP step's Reducer always all-reduces
(``_EveryReducer``: the project's skips the sums for one rank); the reconstruction runs
the recon workload's pieces (load_field, observation_mask, validation_split, Trainer,
metrics) without a store; packs of k > 1 take one PackStepper.advance per step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.report import machine, markdown_table, write_section  # noqa: E402
from insr_hpc.catalog import load_config  # noqa: E402
from insr_hpc.runtime import RunEnv, select_device  # noqa: E402

CONFIGS = os.path.join(ROOT, "configs")
ITEMS = ("advection", "euler", "elasticity3d", "recon", "pack", "ddp")

# Sizes. Full: the shipped configs (what a user runs), a few steps each. Small: every size
# shrunk so the whole check takes ~1–2 minutes on a 2-core CPU (a smoke test of the code
# paths, not a measurement).
FULL = {
    "advection": ["time.steps=5"],
    "euler": ["time.steps=3"],
    "elasticity3d": ["time.steps=3"],
    "recon": ["network.model=mmgn", "train.epochs=5"],
    "pack": ["time.steps=2"],
    "pack_k": [1, 16, 64],
    "ddp": ["time.steps=1", "optim.init_warmup=50", "optim.init_max_iters=5"],
    "by_optim": {},
    "euler_by_optim": {},
}
SMALL = {
    "advection": ["time.steps=2", "sampling.interior=400", "optim.init_max_iters=8", "output.resolution=256"],
    "euler": ["time.steps=2", "sampling.interior=512", "sampling.boundary=32", "network.depth=3", "network.width=24",
              "optim.init_max_iters=20", "optim.max_iters=4", "problem.reference_resolution=32",
              "output.resolution=32"],
    "elasticity3d": ["time.steps=1", "problem.mesh_resolution=16", "network.depth=2", "network.width=24",
                     "sampling.interior=512", "optim.init_warmup=30", "optim.max_iters=2", "optim.average=1",
                     "optim.hessian_samples=128", "optim.average_hessian_samples=128"],
    "recon": ["network.model=mmgn", "train.epochs=5", "network.width=32", "network.layers=2", "network.latent=8"],
    "pack": ["time.steps=1", "sampling.interior=200", "optim.init_max_iters=6", "output.resolution=256"],
    "pack_k": [1, 2, 4],
    "ddp": ["time.steps=1", "sampling.interior=200", "optim.init_max_iters=3"],
    # added to a PDE config whose optimiser is this one (keys the other optimisers lack)
    "by_optim": {"gauss_newton": ["optim.init_warmup=60"]},
    "euler_by_optim": {"gauss_newton": ["optim.init_warmup=200"]},
}


@dataclass
class Row:
    item: str
    unit: str = "step"
    cpu_s: float = float("nan")  # per unit
    wall_s: float = float("nan")  # per unit
    error: str = ""  # the item's error measure, in words
    values: dict = field(default_factory=dict)  # the same as numbers (checked finite by the test)
    peak_mib: float = float("nan")
    status: str = "ok"
    notes: str = ""


class Clock:
    """CPU (process) and wall seconds of a block; CUDA work is waited for at both ends."""

    def __init__(self, dev: torch.device):
        self.dev = dev
        self.cpu = self.wall = 0.0

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)

    def __enter__(self):
        self._sync()
        self._c0, self._w0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.cpu += time.process_time() - self._c0
        self.wall += time.perf_counter() - self._w0
        return False


def peak_mib(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def config(name: str, dev: torch.device, overrides, by_optim=None):
    """A shipped config through the project's loader, on ``dev``; ``by_optim``: more
    overrides for the optimiser the config turns out to use."""
    overrides = [f"device={dev}", *overrides]
    cfg = load_config(os.path.join(CONFIGS, name), overrides, notes=[])
    extra = (by_optim or {}).get(getattr(getattr(cfg, "optim", None), "name", None), [])
    if extra:
        overrides = [*overrides[:1], *extra, *overrides[1:]]  # explicit sizes win
        cfg = load_config(os.path.join(CONFIGS, name), overrides, notes=[])
    return cfg


def env_on(dev: torch.device) -> RunEnv:
    return RunEnv(device=select_device(str(dev)), progress=False)


def final_errors(solver, step: int) -> dict:
    """The case's errors at ``step``, the fields evaluated on the run's device."""
    cfg = solver.cfg
    solver.case.time_now = step * cfg.time.dt  # as the workload sets it before evaluating a step
    out = solver.case.evaluate(solver.models, cfg.output.resolution, solver.env.device)
    errs = solver.case.errors(out, solver.case.reference(step * cfg.time.dt, cfg.output.resolution))
    if "divergence" in out:
        errs["divergence"] = float(out["divergence"])
    return errs


def solve_steps(solver, steps: int, dev: torch.device) -> tuple[Clock, Clock]:
    """Step 0, then steps 1…``steps``; (step-0 clock, clock of the later steps)."""
    with Clock(dev) as first:
        solver.advance(0)
    later = Clock(dev)
    for step in range(1, steps + 1):
        with later:
            solver.advance(step)
    return first, later


# items ---------------------------------------------------------------------------------


def solve_config(name: str, dev: torch.device, overrides, by_optim=None):
    """Build the config ``name`` with ``overrides``, solve step 0 and its steps on ``dev``:
    (config, solver, step-0 clock, clock of the later steps, errors at the last step)."""
    from insr_hpc.pde.solver import Solver

    cfg = config(name, dev, overrides, by_optim)
    solver = Solver(cfg, env_on(dev))
    first, later = solve_steps(solver, cfg.time.steps, dev)
    return cfg, solver, first, later, final_errors(solver, cfg.time.steps)


def check_advection(dev: torch.device, sizes: dict) -> list[Row]:
    cfg, solver, first, later, errs = solve_config("advection.yaml", dev, sizes["advection"], sizes["by_optim"])
    steps = cfg.time.steps
    return [Row(
        f"advection GN ({steps} steps)", "step", later.cpu / steps, later.wall / steps,
        f"rel L2 {errs['rel_l2']:.2e} (optimiser {errs['solver_rel_l2']:.1e})",
        {"rel_l2": errs["rel_l2"], "solver_rel_l2": errs["solver_rel_l2"]},
        notes=f"step 0: {first.wall:.2f} s wall; {cfg.sampling.interior} samples, {solver.n_params()} params",
    )]


def check_euler(dev: torch.device, sizes: dict) -> list[Row]:
    cfg, solver, first, later, errs = solve_config("euler.yaml", dev, sizes["euler"], sizes["euler_by_optim"])
    steps = cfg.time.steps
    return [Row(
        f"euler {cfg.optim.name} ({steps} steps)", "step", later.cpu / steps, later.wall / steps,
        f"rel L2 {errs['rel_l2']:.2e}, RMS div {errs['divergence']:.2e}",
        {"rel_l2": errs["rel_l2"], "divergence": errs["divergence"]},
        notes=f"initial fit: {first.wall:.2f} s wall; {cfg.sampling.interior} samples",
    )]


def check_elasticity3d(dev: torch.device, sizes: dict) -> list[Row]:
    """The 3D mesh body (configs/elasticity_3d.yaml: tetrahedral torus, SIREN 4 × 66,
    Newton–CG with Gauss–Newton curvature) against its FEM reference."""
    cfg, solver, first, later, errs = solve_config("elasticity_3d.yaml", dev, sizes["elasticity3d"])
    steps = cfg.time.steps
    return [Row(
        f"elasticity 3D ({steps} steps)", "step", later.cpu / steps, later.wall / steps,
        f"vertex rel L2 {errs['rel_l2']:.2e}, tip {errs['tip_error']:.1e}",
        {"rel_l2": errs["rel_l2"], "tip_error": errs["tip_error"]},
        notes=f"step 0: {first.wall:.2f} s wall; {cfg.sampling.interior} samples, {solver.n_params()} params",
    )]


def check_recon(dev: torch.device, sizes: dict) -> list[Row]:
    """The recon workload's own pieces (as ``run_recon`` strings them), without a store."""
    from insr_hpc.recon import metrics
    from insr_hpc.recon.data import load_field
    from insr_hpc.recon.tasks import observation_mask, validation_split
    from insr_hpc.recon.trainer import Trainer, make_problem

    cfg = config("reconstruct.yaml", dev, sizes["recon"])
    fld = load_field(cfg.data.path, cfg.data.variable)
    observed = observation_mask(cfg.task.name, cfg.task.ratio, cfg.task.ratio_min, fld.valid, fld.values.shape[0],
                                cfg.task.seed)
    train_mask, val_mask = validation_split(cfg.task.name, observed, cfg.train.validation_fraction(cfg.task.name),
                                            cfg.task.seed)
    problem = make_problem(fld.values, train_mask, fld.lat, fld.lon, val_mask)
    env = env_on(dev)
    trainer = Trainer(cfg.network, cfg.train, problem, cfg.seed, env.device, env)
    epochs = cfg.train.epochs
    first, later = Clock(dev), Clock(dev)
    for epoch in range(epochs):
        with first if epoch == 0 else later:
            loss, _, _ = trainer.train_epoch()
    pred = problem.denormalise(trainer.predict())
    errs = metrics.errors(pred, fld.values, fld.valid, observed, *metrics.metric_range(fld.values))
    n = max(epochs - 1, 1)
    timed = later if epochs > 1 else first
    return [Row(
        f"recon {cfg.network.model} ({epochs} epochs)", "epoch", timed.cpu / n, timed.wall / n,
        f"MSE {errs['mse']:.3e}", {"mse": errs["mse"], "loss": loss},
        notes=f"epoch 1: {first.wall:.2f} s wall (not in the mean); {trainer.n_params()} params; "
              f"{os.path.basename(cfg.data.path)} {cfg.task.name} {cfg.task.ratio:g}",
    )]


def check_pack(dev: torch.device, sizes: dict, deadline: float) -> list[Row]:
    from insr_hpc.pde.pack import PackStepper
    from insr_hpc.pde.solver import Solver

    rows = []
    for k in sizes["pack_k"]:
        label = f"pack k={k}" + (" (alone)" if k == 1 else "")
        if time.monotonic() > deadline:
            rows.append(Row(label, "run-step", status="skipped: time budget spent"))
            continue
        row = Row(label, "run-step")
        try:
            _reset_peak(dev)
            env = env_on(dev)
            solvers = {i: Solver(config("advection.yaml", dev, [*sizes["pack"], f"seed={i}"], sizes["by_optim"]), env)
                       for i in range(k)}
            steps = solvers[0].cfg.time.steps
            stepper = PackStepper(solvers)

            def advance(step: int) -> None:
                if k == 1:  # alone: the ordinary Solver path (the baseline packing is measured against)
                    solvers[0].advance(step)
                    return
                for res in stepper.advance(list(range(k)), step):
                    if isinstance(res, BaseException):
                        raise res

            with Clock(dev) as first:
                advance(0)
            later = Clock(dev)
            for step in range(1, steps + 1):
                with later:
                    advance(step)
            rel = [final_errors(s, steps)["rel_l2"] for s in solvers.values()]
            row.cpu_s, row.wall_s = later.cpu / (k * steps), later.wall / (k * steps)
            row.error = f"mean rel L2 {np.mean(rel):.2e} (max {np.max(rel):.2e})"
            row.values = {"mean_rel_l2": float(np.mean(rel)), "max_rel_l2": float(np.max(rel))}
            row.notes = f"step 0: {first.wall / k:.2f} s wall per run; {steps} step(s) timed"
            row.peak_mib = peak_mib(dev)
        except Exception as exc:  # noqa: BLE001 (one failed pack size is one row)
            _failed(row, exc, dev)
        rows.append(row)
    return rows


class _EveryReducer:
    """The project's Reducer with its sums always sent through ``all_reduce`` (the real
    Reducer skips them for one rank): the DDP step then exercises every reduction."""

    def __init__(self, env: RunEnv):
        from insr_hpc.pde.optimizers.base import Reducer

        self.inner = Reducer(env.world_size, env.reduce_tensor, env.reduce_grads, env.reduce_scalar)
        self.world_size = env.world_size
        self.reduce_grads = env.reduce_grads
        self.mean_scalar = env.reduce_scalar
        self.calls = 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        t = t.contiguous().clone()
        self.inner.sum_tensor(t)
        return t

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.sum(t) / self.world_size


def check_ddp(dev: torch.device, sizes: dict) -> list[Row]:
    import datetime

    import torch.distributed as dist

    from insr_hpc.launch.ddp import group_env
    from insr_hpc.pde.solver import Solver
    from insr_hpc.pde.terms import draw, module_point_fn, objective

    backend = "nccl" if dev.type == "cuda" else "gloo"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    extra = {}
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        extra["device_id"] = dev
    with Clock(dev) as setup:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                                timeout=datetime.timedelta(seconds=120), **extra)
    try:
        env = group_env(dev, 0, 1, progress=False)
        cfg = config("advection.yaml", dev, sizes["ddp"], sizes["by_optim"])
        steps = cfg.time.steps
        # the same run with and without the group; every reduction of the DDP one goes through NCCL/gloo
        plain = Solver(cfg, env_on(dev))
        solve_steps(plain, steps, dev)
        ddp = Solver(cfg, env)
        ddp.reducer = _EveryReducer(env)
        first, later = solve_steps(ddp, steps, dev)
        weights_diff = float(np.abs(ddp.flat_weights() - plain.flat_weights()).max())
        # the reducers themselves: gradients (averaged), a scalar, a Gram-sized float64 tensor
        sp = ddp.problems(steps + 1)[0]
        model = ddp.models[sp.field]
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.grad = None
        loss = objective(sp.terms, module_point_fn(model), draw(sp.terms, torch.Generator().manual_seed(0)))
        loss.backward()
        local = [p.grad.detach().clone() for p in params]
        with Clock(dev) as reduce_clock:
            env.reduce_grads(params)
            scalar = env.reduce_scalar(float(loss.detach()))
            gram = torch.randn(ddp.n_params(), ddp.n_params(), dtype=torch.float64, device=dev)
            summed = gram.clone()
            env.reduce_tensor(summed)
            env.barrier()
        grad_diff = max(float((p.grad - g).abs().max()) for p, g in zip(params, local, strict=True))
        diffs = {"grads": grad_diff, "scalar": abs(scalar - float(loss.detach())),
                 "gram": float((summed - gram).abs().max()), "weights_vs_no_group": weights_diff}
        equal = all(v == 0.0 for k, v in diffs.items() if k != "weights_vs_no_group")
        # the step itself may differ from the group-less one only by the order of float sums
        same_run = weights_diff <= 1e-5 * max(1.0, float(np.abs(plain.flat_weights()).max()))
        row = Row(
            f"ddp {backend} 1 rank (GN step)", "step", later.cpu / steps, later.wall / steps,
            f"all-reduced == local: {'yes' if equal else 'NO'}; weights vs no group {weights_diff:.1e}",
            {**diffs, "reductions": ddp.reducer.calls},
            notes=f"init_process_group {setup.wall:.2f} s; {ddp.reducer.calls} reductions in the step(s); "
                  f"reducers {reduce_clock.wall * 1e3:.1f} ms",
        )
        if not equal:
            row.status = "error: an all-reduced value differs from the local one (" + ", ".join(
                f"{k} {v:.1e}" for k, v in diffs.items()) + ")"
        elif not same_run:
            row.status = f"error: the DDP step's weights differ from the step without a group by {weights_diff:.1e}"
        return [row]
    finally:
        dist.destroy_process_group()


# driver --------------------------------------------------------------------------------


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _failed(row: Row, exc: BaseException, dev: torch.device) -> None:
    traceback.print_exc(file=sys.stderr)
    text = " ".join(f"{type(exc).__name__}: {exc}".split()).replace("|", "/")
    row.status = "error: " + (text if len(text) <= 300 else text[:297] + "…")
    row.peak_mib = peak_mib(dev)


def run_items(names: list[str], dev: torch.device, sizes: dict, budget_s: float) -> list[Row]:
    deadline = time.monotonic() + budget_s
    checks: dict[str, Callable[[], list[Row]]] = {
        "advection": lambda: check_advection(dev, sizes),
        "euler": lambda: check_euler(dev, sizes),
        "elasticity3d": lambda: check_elasticity3d(dev, sizes),
        "recon": lambda: check_recon(dev, sizes),
        "pack": lambda: check_pack(dev, sizes, deadline),
        "ddp": lambda: check_ddp(dev, sizes),
    }
    rows = []
    for name in names:
        if time.monotonic() > deadline:
            rows.append(Row(name, status="skipped: time budget spent"))
            continue
        print(f"device check: {name} …", file=sys.stderr, flush=True)
        _reset_peak(dev)
        start = time.perf_counter()
        try:
            got = checks[name]()
            for row in got:
                if math.isnan(row.peak_mib):
                    row.peak_mib = peak_mib(dev)
        except Exception as exc:  # noqa: BLE001 (one failed item is one row; the rest still run)
            row = Row(name)
            _failed(row, exc, dev)
            got = [row]
        for row in got:
            print(f"  {row.item}: {row.wall_s:.3g} s/{row.unit} wall, {row.error} [{row.status}]", file=sys.stderr,
                  flush=True)
        print(f"  ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
        rows.extend(got)
    return rows


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def table(rows: list[Row], dev: torch.device) -> str:
    memory = "peak memory (MiB)" + (" allocated" if dev.type == "cuda" else ", process RSS")

    def num(v: float) -> str:
        return "–" if math.isnan(v) else f"{v:.3g}"

    return markdown_table(
        ["item", "device", "per", "CPU s", "wall s", "error", memory, "status", "notes"],
        [[r.item, device_name(dev), r.unit, num(r.cpu_s), num(r.wall_s), r.error or "–", num(r.peak_mib), r.status,
          r.notes] for r in rows],
    )


def _publish(report: dict, args) -> None:
    """--out / --json / --write of a report (measured here, or read back by --from-json)."""
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(f"# {report['section']}\n\nMeasured on {report['host']} with:\n\n```\n{report['command']}\n```\n\n"
                     f"{report['body']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1, default=str)
    if args.write:
        write_section(report["section"], report["command"], report["body"], host=report["host"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto (default): cuda when torch sees a GPU, else cpu")
    ap.add_argument("--small", action="store_true", help="shrink every size (~1–2 min on a 2-core CPU)")
    ap.add_argument("--only", default=",".join(ITEMS),
                    help=f"comma-separated items (default: all of {','.join(ITEMS)})")
    ap.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    ap.add_argument("--out", metavar="FILE.md", help="also write the table (and how it was made) to this file")
    ap.add_argument("--json", metavar="FILE", help="write the rows (and the table) as JSON")
    ap.add_argument("--from-json", metavar="FILE",
                    help="run nothing: take the report a --json run wrote (e.g. on a lent GPU machine) and print it, "
                         "write it with --write / --out")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own choice)")
    ap.add_argument("--budget", type=float, default=450.0,
                    help="seconds after which the items not yet started are skipped (default 450)")
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as fh:
            report = json.load(fh)
        if args.json and os.path.abspath(args.json) == os.path.abspath(args.from_json):
            args.json = None
        print(report["body"])
        _publish(report, args)
        return 0 if all(r["status"] == "ok" for r in report["rows"]) else 1
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ITEMS]
    if unknown or not names:
        ap.error(f"--only: unknown item(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ITEMS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here (torch " + torch.__version__ + ")")
    dev = select_device(args.device)  # auto: cuda:LOCAL_RANK when available, else cpu
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())  # set_device and NCCL want an index
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = SMALL if args.small else FULL

    start = time.perf_counter()
    rows = run_items(names, dev, sizes, args.budget)
    total = time.perf_counter() - start
    text = table(rows, dev)
    print(text)
    print(f"\n{len(rows)} rows, {sum(r.status == 'ok' for r in rows)} ok, {total:.0f} s in all on {device_name(dev)}")

    command = "python benchmarks/device_check.py " + " ".join(
        a for a in (f"--device {args.device}", "--small" if args.small else "",
                    f"--only {','.join(names)}" if names != list(ITEMS) else "") if a)
    what = "small sizes (a smoke test, not a measurement)" if args.small else "the shipped configs, a few steps each"
    body = (
        f"Device {device_name(dev)} (torch {torch.__version__}"
        + (f", CUDA {torch.version.cuda}" if dev.type == "cuda" else f", {torch.get_num_threads()} CPU thread(s)")
        + f"), {what}; {total:.0f} s in all. Seconds are per unit of work ('per'): CPU = process time, wall = elapsed "
        f"(CUDA synchronised); step 0 / the first epoch is timed apart (notes).\n\n{text}\n"
    )
    report = {"section": f"Device check: {dev.type}", "command": command, "body": body, "host": machine(),
              "device": device_name(dev), "device_type": dev.type, "small": args.small, "seconds": total,
              "rows": [asdict(r) for r in rows]}
    _publish(report, args)
    return 0 if all(r.status == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
