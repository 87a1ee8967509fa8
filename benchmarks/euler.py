"""2D Euler, Taylor–Green (configs/euler.yaml): the INSR authors' own code, this project
with Adam and with Gauss–Newton, and the grid solver at the networks' memory, in one
table. Everything on one thread; every row shows CPU seconds (``time.process_time``)
beside wall seconds, since the machine may be shared.

    git clone https://github.com/honglin-c/INSR-PDE /tmp/insr     # optional
    python benchmarks/euler.py [--authors-repo /tmp/insr] [--steps 20] [--write]

Rows:
1. the authors' code (only with ``--authors-repo``): their ``fluid`` model class
   (fluid/model.py, base/, configured by their own parser from scripts/fluid2Dtlgn.sh,
   on CPU; harness in benchmarks/insr_authors.py). Per-iteration CPU and wall ms of each
   sub-problem (initialise, advect, pressure, projection), and the iterations per
   sub-problem their plateau rule allows (fewest: the loss never improves; most: their
   iteration cap), hence bounds on seconds per step. ``--authors-full`` also runs their
   step 0 and step 1 to their own stopping rule (tens of minutes on one core);
2. this project, Adam and Gauss–Newton, driven step by step (``Solver.advance``):
   rel. L2 against the grid reference (256², cubic) at t = 1 (and t = 5 with
   ``--steps 100``), the largest RMS ∇·u over the steps, the initial fit's CPU seconds,
   CPU and wall seconds per step (steps ≥ 1, mean), and how many sub-problems stopped at
   their iteration cap. The optimiser blocks are this script's, not the file's: Adam
   ``ADAM`` below (the recipe configs/euler.yaml had before Gauss–Newton), Gauss–Newton
   the file's block when it names ``gauss_newton``, else the class defaults; ``--adam``
   and ``--gn`` change single keys (``--gn max_iters=3``), ``--ours`` any other key of
   both runs (``--ours network.depth=4``);
3. the grid solver (insr_hpc/pde/baselines/euler_grid.py) at N² cells with 3·N² ≈ the
   INSR weights (u and p), linear and cubic, sampled on the same 64² cell centres;
4. the reference itself: its drift ‖u_ref(t) − u0‖/‖u0‖ (Taylor–Green is steady, so
   this is the splitting's own error).

Prints the table; ``--write`` also puts it into docs/benchmarks.md (section
"Euler: the authors' code, Adam and Gauss–Newton"). ``--smoke`` shrinks everything
(a test runs it in seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.report import markdown_table, write_section  # noqa: E402
from insr_hpc.catalog import build_config  # noqa: E402
from insr_hpc.config.load import load_raw, merge_dicts, parse_overrides  # noqa: E402
from insr_hpc.pde.baselines.euler_grid import EulerGrid, cell_centres  # noqa: E402
from insr_hpc.pde.cases.euler_initial import velocity_numpy  # noqa: E402
from insr_hpc.pde.solver import Solver  # noqa: E402
from insr_hpc.runtime import RunEnv  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "euler.yaml")
SECTION = "Euler: the authors' code, Adam and Gauss–Newton"
RES = 64  # output grid (cell centres) on which every field is compared
REF_RES = 256  # the grid reference's cells per side
# Adam as configs/euler.yaml had it before its Gauss–Newton default
ADAM = {"name": "adam", "lr": 1e-4, "init_lr": 1e-4, "max_iters": 300, "init_max_iters": 2000, "rtol": 1e-3,
        "window": 25}
# scripts/fluid2Dtlgn.sh of the authors' repository (-g selects a GPU: not used here)
AUTHORS_ARGS = ["--init_cond", "taylorgreen", "--num_hidden_layers", "3", "--hidden_features", "32", "-sr", "128",
                "-vr", "32", "--dt", "0.05", "-T", "100"]
AUTHORS_SUBS = (("initialise", "_initialize"), ("advect", "_advect_velocity"), ("pressure", "_solve_pressure"),
                ("projection", "_projection"))
SUBSTEPS = ("advect", "pressure", "project")
SMOKE = {"ours": ["sampling.interior=256", "sampling.boundary=32"],
         "adam": ["max_iters=5", "init_max_iters=20"],
         "gn": ["max_iters=1", "init_max_iters=2", "init_warmup=5"]}


def optim_block(base: dict, overrides: list[str]) -> dict:
    return merge_dicts(base, parse_overrides(overrides)) if overrides else dict(base)


def sec(x: float) -> str:
    """Seconds for the table: whole seconds from 10 on, else two significant digits."""
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


def checkpoints(steps: int, dt: float) -> list[int]:
    """Steps at which errors are reported: t = 1 and t = 5 where the run reaches them,
    else the last step."""
    marks = [k for k in (int(round(1 / dt)), int(round(5 / dt))) if 1 <= k <= steps]
    return marks or [steps]


# the authors' code --------------------------------------------------------------------
def authors(repo: str, iters: int, warmup: int, sr: int | None, full: bool, max_iters: int | None) -> dict:
    from benchmarks import insr_authors as ia

    args = list(AUTHORS_ARGS)
    if sr is not None:
        args[args.index("-sr") + 1] = str(sr)
    if max_iters is not None:
        args += ["--max_n_iters", str(max_iters)]
    torch.manual_seed(0)
    model = ia.load_model(repo, "fluid", args)
    from fluid.examples import get_examples  # their Taylor–Green initial condition

    model.init_cond_func = get_examples(model.cfg.init_cond)
    rule = ia.plateau_rule(model)
    n_params = sum(p.numel() for net in model._trainable_networks.values() for p in net.parameters())
    cost = {}
    for label, name in AUTHORS_SUBS:
        if label == "projection":  # their step(): u_prev ← u (after advection) before the projection
            model.velocity_field_prev.load_state_dict(model.velocity_field.state_dict())
        if label == "advect":
            model.velocity_field_prev.load_state_dict(model.velocity_field.state_dict())
        cost[label] = ia.time_iterations(model, name, iters, warmup)
        print(f"  authors' {label}: {cost[label].cpu_ms:.1f} ms CPU, {cost[label].wall_ms:.1f} ms wall per iteration",
              flush=True)
    out = {"rule": rule, "cost": cost, "n_params": n_params, "sr": int(args[args.index("-sr") + 1]),
           "cfg": model.cfg, "args": args}
    if full:
        print("  authors' code, step 0 and step 1 to their own stopping rule …", flush=True)
        torch.manual_seed(0)
        model = ia.load_model(repo, "fluid", args)
        model.init_cond_func = get_examples(model.cfg.init_cond)
        runs = {"initialise": ia.run_to_convergence(model, "_initialize")}
        model.velocity_field_prev.load_state_dict(model.velocity_field.state_dict())
        runs["advect"] = ia.run_to_convergence(model, "_advect_velocity")
        runs["pressure"] = ia.run_to_convergence(model, "_solve_pressure")
        model.velocity_field_prev.load_state_dict(model.velocity_field.state_dict())
        runs["projection"] = ia.run_to_convergence(model, "_projection")
        xc = torch.as_tensor(cell_centres(RES), dtype=torch.float32)
        Y, X = torch.meshgrid(xc, xc, indexing="ij")
        with torch.no_grad():
            u1 = model.velocity_field(torch.stack([X, Y], -1)).double().numpy()
        out["full"] = {"runs": runs, "u1": u1}
        for k, (n, c, w) in runs.items():
            print(f"  authors' {k}: {n} iterations, {c:.0f} s CPU, {w:.0f} s wall", flush=True)
    return out


# this project -------------------------------------------------------------------------
def run_ours(label: str, raw: dict, steps: int, refs: dict, marks: list[int]) -> dict:
    cfg = build_config(raw)
    solver = Solver(cfg, RunEnv(torch.device("cpu"), progress=False))
    case = solver.case
    rec = {"label": label, "optim": cfg.optim, "n_params": solver.n_params(), "cpu": [], "wall": [], "iters": [],
           "capped": 0, "subproblems": 0, "div": [], "errors": {}}
    for step in range(steps + 1):
        c0, w0 = time.process_time(), time.perf_counter()
        res = solver.advance(step)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        out = case.evaluate(solver.models, RES, "cpu")
        err = case.errors(out, refs[step]) if step in refs else None
        if step == 0:
            rec["init"] = (cpu, wall, res["iterations"], sum(res["capped"].values()))
        else:
            rec["cpu"].append(cpu)
            rec["wall"].append(wall)
            rec["iters"].append([res["iterations"][n] for n in SUBSTEPS])
            rec["capped"] += sum(res["capped"].values())
            rec["subproblems"] += len(res["capped"])
            rec["div"].append(float(out["divergence"]))
        if step in marks:
            rec["errors"][step] = err
        print(f"  {label} step {step}: {cpu:.1f} s CPU, {wall:.1f} s wall, iterations {res['iterations']}, "
              f"capped {[k for k, v in res['capped'].items() if v]}, RMS div {float(out['divergence']):.3g}"
              + (f", rel L2 {err['rel_l2']:.3e}" if err else ""), flush=True)
    return rec


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--authors-repo", help="a checkout of honglin-c/INSR-PDE (their code is imported from it)")
    ap.add_argument("--authors-iters", type=int, default=20, help="timed iterations per sub-problem of their code")
    ap.add_argument("--authors-warmup", type=int, default=3, help="untimed iterations before those")
    ap.add_argument("--authors-sr", type=int, help="their -sr (samples per iteration = sr²; script: 128)")
    ap.add_argument("--authors-full", action="store_true",
                    help="also run their step 0 and step 1 to their own stopping rule (long)")
    ap.add_argument("--authors-max-iters", type=int, help="their --max_n_iters (default theirs: 20 000)")
    ap.add_argument("--steps", type=int, default=20, help="time steps of ours (20: t = 1; 100: t = 5)")
    ap.add_argument("--samples", type=int, help="sampling.interior of ours (default: the file's)")
    ap.add_argument("--init-iters", type=int,
                    help="Adam iterations of our initial fit: Adam's init_max_iters, Gauss–Newton's init_warmup")
    ap.add_argument("--adam", nargs="*", default=[], metavar="KEY=V", help="keys of our Adam block")
    ap.add_argument("--gn", nargs="*", default=[], metavar="KEY=V", help="keys of our Gauss–Newton block")
    ap.add_argument("--ours", nargs="*", default=[], metavar="KEY=V", help="config overrides of both our runs")
    ap.add_argument("--skip", nargs="*", default=[], choices=("adam", "gn"), help="leave out our Adam / GN row")
    ap.add_argument("--smoke", action="store_true", help="tiny everything (tests)")
    ap.add_argument("--write", action="store_true", help="write the section of docs/benchmarks.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    ours_ov = [*(SMOKE["ours"] if args.smoke else []), *args.ours]
    if args.samples:
        ours_ov.append(f"sampling.interior={args.samples}")
    base = ["device=cpu", f"time.steps={args.steps}", f"problem.reference_resolution={REF_RES}",
            f"output.resolution={RES}", *ours_ov]
    raw0 = load_raw(CONFIG, base)
    adam_init = [f"init_max_iters={args.init_iters}"] if args.init_iters else []
    gn_init = [f"init_warmup={args.init_iters}"] if args.init_iters else []
    adam = optim_block(ADAM, [*(SMOKE["adam"] if args.smoke else []), *adam_init, *args.adam])
    file_optim = raw0.get("optim") or {}
    gn_base = dict(file_optim) if file_optim.get("name") == "gauss_newton" else {"name": "gauss_newton"}
    gn = optim_block(gn_base, [*(SMOKE["gn"] if args.smoke else []), *gn_init, *args.gn])
    gn_source = "the file's block" if file_optim.get("name") == "gauss_newton" else "the class defaults"

    probe = Solver(build_config({**raw0, "optim": adam}), RunEnv(torch.device("cpu"), progress=False))
    case, dt, n_params = probe.case, probe.cfg.time.dt, probe.n_params()
    marks = checkpoints(args.steps, dt)
    print(f"grid reference {REF_RES}² (cubic) to step {max(marks)} …", flush=True)
    refs = {k: case.reference(k * dt, RES) for k in range(args.steps + 1)}
    u0 = case.initial_field(RES)

    def rel(u, k):
        ref = refs[k]["u_ref"].astype(np.float64)
        return float(np.linalg.norm(u - ref) / np.linalg.norm(ref))

    def drift(u):
        return float(np.linalg.norm(u - u0) / np.linalg.norm(u0))

    a = None
    if args.authors_repo:
        print("the authors' code …", flush=True)
        it, wu, sr = (2, 1, args.authors_sr or 16) if args.smoke else (args.authors_iters, args.authors_warmup,
                                                                       args.authors_sr)
        a = authors(args.authors_repo, it, wu, sr, args.authors_full, args.authors_max_iters)

    ours = []
    for key, label, block in (("adam", "this project, Adam", adam), ("gn", "this project, Gauss–Newton", gn)):
        if key in args.skip:
            continue
        print(f"{label}: {block} …", flush=True)
        ours.append(run_ours(label, {**raw0, "optim": block}, args.steps, refs, marks))

    n_eq = int(round((n_params / 3) ** 0.5))
    grids = []
    for order, name in ((1, "linear"), (3, "cubic")):
        g = EulerGrid(n_eq, dt, velocity_numpy(case.params.initial, case.params), order)
        errs, cpu, wall = {}, 0.0, 0.0
        for k in range(1, max(marks) + 1):
            c0, w0 = time.process_time(), time.perf_counter()
            g.advance()
            cpu, wall = cpu + time.process_time() - c0, wall + time.perf_counter() - w0
            if k in marks:
                u, _ = g.sample(cell_centres(RES), cell_centres(RES))
                errs[k] = (rel(u, k), drift(u))
        grids.append((f"grid, equal memory ({name})", f"{n_eq}² cells × 3 = {3 * n_eq * n_eq}", cpu / max(marks),
                      wall / max(marks), errs))

    # the table ---------------------------------------------------------------------------
    tl = [f"t = {k * dt:g}" for k in marks]
    headers = ["method", "weights / values", "CPU ms / iteration (wall)", "iterations / sub-problem",
               "sub-problems capped", "initial fit CPU s (wall)", "CPU s / step", "wall s / step",
               *[f"rel L2 {t}" for t in tl], *[f"drift {t}" for t in tl], "max RMS ∇·u"]
    blank_t = ["–"] * len(marks)
    rows = []
    if a is not None:
        c, rule = a["cost"], a["rule"]
        lo, hi = rule.min_iters, rule.max_iters
        step_cpu = sum(c[k].cpu_ms for k in ("advect", "pressure", "projection")) / 1e3
        step_wall = sum(c[k].wall_ms for k in ("advect", "pressure", "projection")) / 1e3
        rows.append([
            "authors' code (their Fluid2DModel, timed per iteration)",
            f"{a['n_params']} ({a['cfg'].num_hidden_layers + 1} sine layers × {a['cfg'].hidden_features}; "
            f"{a['sr']}² samples)",
            " / ".join(f"{c[k].cpu_ms:.1f}" for k, _ in AUTHORS_SUBS)
            + " (" + " / ".join(f"{c[k].wall_ms:.1f}" for k, _ in AUTHORS_SUBS) + ")",
            f"{lo}–{hi} (plateau rule)", "–",
            f"{sec(lo * c['initialise'].cpu_ms / 1e3)}–{sec(hi * c['initialise'].cpu_ms / 1e3)} "
            f"({sec(lo * c['initialise'].wall_ms / 1e3)}–{sec(hi * c['initialise'].wall_ms / 1e3)})",
            f"{sec(lo * step_cpu)}–{sec(hi * step_cpu)}", f"{sec(lo * step_wall)}–{sec(hi * step_wall)}",
            *blank_t, *blank_t, "–",
        ])
        if "full" in a:
            runs = a["full"]["runs"]
            rows.append([
                "authors' code, step 0 and step 1 run to their stopping rule", f"{a['n_params']}",
                " / ".join(f"{1e3 * runs[k][1] / runs[k][0]:.1f}" for k, _ in AUTHORS_SUBS)
                + " (" + " / ".join(f"{1e3 * runs[k][2] / runs[k][0]:.1f}" for k, _ in AUTHORS_SUBS) + ")",
                " / ".join(str(runs[k][0]) for k, _ in AUTHORS_SUBS), "–",
                f"{sec(runs['initialise'][1])} ({sec(runs['initialise'][2])})",
                sec(sum(runs[k][1] for k in ("advect", "pressure", "projection"))),
                sec(sum(runs[k][2] for k in ("advect", "pressure", "projection"))),
                *blank_t, *blank_t, "–",
            ])
    for rec in ours:
        its = np.array(rec["iters"], dtype=float)
        cpu, wall = float(np.mean(rec["cpu"])), float(np.mean(rec["wall"]))
        per_it = 1e3 * np.sum(rec["cpu"]) / max(its.sum(), 1)
        per_it_w = 1e3 * np.sum(rec["wall"]) / max(its.sum(), 1)
        init_cpu, init_wall, init_its, init_capped = rec["init"]
        rows.append([
            rec["label"], f"{rec['n_params']}", f"{per_it:.1f} ({per_it_w:.1f}), step mean",
            "/".join(f"{v:.0f}" for v in its.mean(0)) + " (advect/pressure/project, mean)",
            f"{rec['capped']} / {rec['subproblems']}", f"{init_cpu:.1f} ({init_wall:.1f})", f"{cpu:.2f}", f"{wall:.2f}",
            *[f"{rec['errors'][k]['rel_l2']:.2e}" for k in marks], *[f"{rec['errors'][k]['drift']:.2e}" for k in marks],
            f"{max(rec['div']):.3f}",
        ])
    for label, mem, cpu, wall, errs in grids:
        rows.append([label, mem, "–", "–", "–", "–", f"{cpu:.4f}", f"{wall:.4f}",
                     *[f"{errs[k][0]:.2e}" for k in marks], *[f"{errs[k][1]:.2e}" for k in marks], "–"])
    rows.append([f"grid reference itself ({REF_RES}², cubic)", f"{REF_RES}² cells × 3 = {3 * REF_RES ** 2}",
                 "–", "–", "–", "–", "–", "–", *["0"] * len(marks),
                 *[f"{drift(refs[k]['u_ref'].astype(np.float64)):.2e}" for k in marks], "–"])
    table = markdown_table(headers, rows)

    notes = [
        f"Taylor–Green in [−1, 1]², Δt = {dt:g}, {args.steps} step{'s' if args.steps != 1 else ''}, 1 thread, CPU. "
        f"Errors: velocity on the {RES}² cell centres against the grid reference ({REF_RES}², cubic, the same "
        f"splitting); drift ‖u(t) − u0‖/‖u0‖ (the flow is steady). CPU seconds are process time; wall seconds count "
        f"waiting for a shared machine too.",
        f"This project: configs/euler.yaml with `{' '.join(ours_ov) or 'no overrides'}`"
        + ("" if "adam" in args.skip else f"; Adam block {adam}")
        + ("" if "gn" in args.skip else f"; Gauss–Newton block ({gn_source}) {gn}") + ". "
        "'CPU ms / iteration' of ours is a step's CPU time over its iterations (all sub-problems); "
        "'sub-problems capped' counts those of steps ≥ 1 that stopped at their iteration cap.",
        f"Grid at equal memory: N = {n_eq} (3·N² ≈ {n_params} weights of u and p).",
    ]
    if a is not None:
        rule, c = a["rule"], a["cost"]
        lo = rule.min_iters
        sr = a["sr"]
        notes.insert(1, (
            f"Authors' code: their `Fluid2DModel` imported from a checkout, configured by their parser with "
            f"scripts/fluid2Dtlgn.sh (`{' '.join(a['args'])}`"
            f", strong-form pressure, {sr}² = {sr * sr} samples per iteration), on CPU. CPU (wall) ms per "
            f"iteration of initialise / advect / pressure / projection: mean of {c['advect'].iters} iterations after "
            f"a warm-up. Their schedule ({rule.describe()}) runs every sub-problem for {lo}–{rule.max_iters} "
            f"iterations: {lo} when the loss never improves after the first, up to the cap while it keeps "
            f"improving. The seconds in their row are those two counts times the measured ms: a step (3 "
            f"sub-problems) costs at least {lo} × Σ ms."))
        if "full" in a:
            u1 = a["full"]["u1"]
            notes.append("Authors' code run to convergence: their own loop (with its progress bar and TensorBoard "
                         "figures every 1000 iterations, written to nowhere), so its ms per iteration is above the "
                         f"timed ones. Their step 1: rel L2 {rel(u1, 1) if 1 in refs else float('nan'):.2e} "
                         f"at t = {dt:g} vs the reference, drift {drift(u1):.2e}.")
    body = "\n\n".join([notes[0], table, *notes[1:]]) + "\n"
    if not args.write:
        print(body)
    else:
        cmd = ["python benchmarks/euler.py"]
        if args.authors_repo:
            cmd.append("--authors-repo CHECKOUT")
        raw_args = sys.argv[1:] if argv is None else argv
        skip_next = False
        for tok in raw_args:
            if skip_next:
                skip_next = False
                continue
            if tok == "--authors-repo":
                skip_next = True
                continue
            if tok.startswith("--authors-repo=") or tok == "--write":
                continue
            cmd.append(tok)
        write_section(SECTION, " ".join(cmd), body)


if __name__ == "__main__":
    main()
