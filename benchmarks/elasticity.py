"""Elastodynamics benchmarks, two parts.

**The paper's scenarios** (default): 2D stretch, 2D collide and the 3D fall
(``configs/elasticity_stretch2d.yaml``, ``elasticity_collide2d.yaml``,
``elasticity_3d.yaml``, at the paper's network sizes), each solved by INSR with the
shipped Newton–CG (Gauss–Newton curvature), by INSR with Adam, and by the FEM on a mesh
of the same body with as many unknowns as the network has weights ("FEM at equal
memory"), all against the fine FEM reference (the INSR mesh refined ``--fine`` times,
the same incremental potential) at the INSR mesh's vertices: s/step (CPU and wall),
vertex error (rel. L2, max, the tip vertex) and the total energy, step by step.
``--steps`` shortens the dynamic scenarios; ``--scenarios`` picks some.

**The bar** (``--bar``): the previous default (Adam) against the shipped one (Gauss–Newton
curvature Newton–CG), interleaved in one run, over a few seeds.

Each variant runs the whole job (step-0 fit, then the steps) of ``configs/elasticity.yaml``
with its own optimiser section, seed by seed, variants alternating, so every ratio is
taken minutes apart on the same machine. Errors are against the FEM reference 128 × 16
(linear triangles, the same incremental potential): the tip (L, 0) distance and the rel.
L2 of the 27 reference points (as ``benchmarks/pde_baselines.py`` measures them).

Variants: ``adam-table`` is the previous table's setting (``pde_baselines.py`` ran the
old config with ``optim.max_iters=1500`` for sag, 300 for stretch), ``adam-500`` the old
config file as shipped, both with the previous derivative path
(``ops.reverse_jacobians``: ∇φ by reverse mode, the weight gradient a backward through
that backward); ``adam-table-fwd`` the same optimiser with the forward-mode ∇φ (one
lever alone); ``newton`` the shipped config.

Run: ``OMP_NUM_THREADS=1 python benchmarks/elasticity.py [--scenarios stretch2d,collide2d,fall3d]
[--steps N]`` (section "Elasticity: the paper's scenarios") or ``... --bar [--seeds 0,1,2]
[--quick]`` (section "Elasticity: the variational step"); ``--write`` also puts the
section into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.report import add_write_option, markdown_table, publish  # noqa: E402
from insr_hpc.catalog import build_config  # noqa: E402
from insr_hpc.config import load_raw  # noqa: E402
from insr_hpc.ops import reverse_jacobians  # noqa: E402
from insr_hpc.pde.baselines.elastic_fem import ElasticFEM, bar_mesh, lame  # noqa: E402
from insr_hpc.pde.solver import Solver  # noqa: E402
from insr_hpc.runtime import RunEnv  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/elasticity.yaml")
SCENARIOS = {"sag": (1000.0, 1), "stretch": (0.05, 3)}  # Δt, steps (as pde_baselines.py)

OLD_ADAM = {  # configs/elasticity.yaml before the Newton default
    "name": "adam", "lr": 1e-3, "max_iters": 500, "init_lr": 1e-3, "init_max_iters": 500, "rtol": 1e-4, "window": 50,
}
TABLE_ITERS = {"sag": 1500, "stretch": 300}  # pde_baselines.py's optim.max_iters for the old config
VARIANTS = {
    # label: (description, optim section (None: the config's), sampling.interior (None: the config's), reverse ∇φ)
    "adam-table": ("Adam (≤ 1500 it sag, ≤ 300 stretch), 1024 samples, reverse-mode ∇φ: the previous table",
                   OLD_ADAM, 1024, True),
    "adam-500": ("Adam ≤ 500 it, 1024 samples, reverse-mode ∇φ: the previous config file", OLD_ADAM, 1024, True),
    "adam-table-fwd": ("the previous table's Adam, forward-mode ∇φ", OLD_ADAM, 1024, False),
    "newton": ("Newton–CG, Gauss–Newton curvature: the shipped config", None, None, False),
}


def fem_reference(case, p, dt: float, steps: int, fine: tuple[int, int]) -> np.ndarray:
    nodes, tris = bar_mesh(p.length, p.height, *fine)
    fixed = np.where(nodes[:, 0] <= 1e-12)[0]
    mu, lam = lame(p.youngs_modulus, p.poisson_ratio)
    fem = ElasticFEM(nodes, tris, p.density, mu, lam, (0.0, -case.g), fixed)
    fem.set_state(case.initial_map(nodes))
    idx = [int(np.argmin(((nodes - q) ** 2).sum(1))) for q in case.ref_points]
    out = []
    for _ in range(steps):
        fem.step(dt)
        out.append(fem.positions[idx].copy())
    return np.array(out)


def build(scenario: str, seed: int, variant: str):
    dt, steps = SCENARIOS[scenario]
    _, optim, interior, _ = VARIANTS[variant]
    over = [f"problem.scenario={scenario}", f"time.dt={dt}", f"time.steps={steps}", f"seed={seed}"]
    if interior is not None:
        over.append(f"sampling.interior={interior}")
    raw = load_raw(CONFIG, over)
    if optim is not None:
        raw["optim"] = dict(optim)
        if variant.startswith("adam-table"):
            raw["optim"]["max_iters"] = TABLE_ITERS[scenario]
    return build_config(raw)


def run_one(scenario: str, seed: int, variant: str, refs: dict) -> dict:
    cfg = build(scenario, seed, variant)
    env = RunEnv(torch.device("cpu"))
    s = Solver(cfg, env)
    case = s.case
    if scenario not in refs:
        refs[scenario] = fem_reference(case, cfg.problem, cfg.time.dt, cfg.time.steps, refs["fine"])
    ref = refs[scenario]
    reverse = VARIANTS[variant][3]
    secs, its, tips, rels = [], [], [], []
    with reverse_jacobians() if reverse else contextlib.nullcontext():
        t0 = time.perf_counter()
        s.advance(0)
        init_s = time.perf_counter() - t0
        for k in range(1, cfg.time.steps + 1):
            r = s.advance(k)
            secs.append(r["seconds"])
            its.append(sum(r["iterations"].values()))
            pts = case.evaluate(s.models, cfg.output.resolution, env.device)["points"].astype(np.float64)
            rf = ref[k - 1]
            tips.append(float(np.linalg.norm(pts[case.tip] - rf[case.tip])))
            rels.append(float(np.linalg.norm(pts - rf) / np.linalg.norm(rf - case.ref_points)))
    return {"s": float(np.mean(secs)), "init": init_s, "its": its, "tip": tips[-1], "tip_max": max(tips), "rel": rels[-1]}


def spread(values, fmt: str) -> str:
    v = np.asarray(values)
    if len(v) == 1:
        return format(v[0], fmt)
    return f"{format(np.median(v), fmt)} ({format(v.min(), fmt)}–{format(v.max(), fmt)})"


SCENARIO_CONFIGS = {
    "stretch2d": "configs/elasticity_stretch2d.yaml",
    "collide2d": "configs/elasticity_collide2d.yaml",
    "fall3d": "configs/elasticity_3d.yaml",
}
ADAM = {"name": "adam", "lr": 1e-4, "max_iters": 500, "init_lr": 1e-3, "init_max_iters": 1000, "rtol": 1e-4, "window": 50}


def _cpu() -> float:
    return time.process_time()


EXACT_BUILTINS = ("builtin:square", "builtin:bar", "builtin:beam")  # polyhedral bodies: any resolution is the same body


def equal_memory_mesh(mesh, n_params: int):
    """A mesh of the same body with about as many unknowns (nodes × d) as the network has
    weights. A builtin whose body is exactly polyhedral (square, bar, beam) is regenerated
    at the largest resolution within the budget; any other mesh (a curved body such as the
    torus, a file) is refined uniformly — the same polyhedron, so FEM and INSR solve on one
    body — to the level whose unknowns are nearest the budget (by ratio)."""
    from insr_hpc.pde.mesh import load_mesh

    d = mesh.dim
    if mesh.source.split("?")[0] in EXACT_BUILTINS:
        best = None
        for res in range(4, 400):
            m = load_mesh(mesh.source, res)
            if len(m.points) * d > n_params:
                break
            best = m
        return best
    levels = [mesh]
    while len(levels[-1].points) * d < n_params:
        levels.append(levels[-1].refined(1))
    return min(levels[-2:], key=lambda m: abs(np.log(len(m.points) * d / n_params)))


def fine_mesh(mesh, equal, at_least: int):
    """The reference mesh: ``mesh`` refined ``at_least`` times, and further until it has
    at least 4× the nodes of the equal-memory mesh (refinement keeps the vertices first)."""
    fine = mesh.refined(at_least)
    while len(fine.points) < 4 * len(equal.points):
        fine = fine.refined(1)
    return fine


def interpolate_p1(mesh, values: np.ndarray, points: np.ndarray, candidates: int = 12) -> np.ndarray:
    """The P1 interpolant of nodal ``values`` (n, k) of ``mesh`` at ``points`` (q, d): in
    the simplex containing the point, or for a point just outside the polyhedral body (a
    curved body meshed at another resolution) extrapolated from the nearest simplex, the
    one of the ``candidates`` nearest by centroid whose smallest barycentric coordinate is
    largest."""
    from scipy.spatial import cKDTree

    corners_all = mesh.points[mesh.cells]  # (m, d+1, d)
    _, near = cKDTree(corners_all.mean(1)).query(points, k=candidates)
    corners = corners_all[near]  # (q, c, d+1, d)
    T = np.swapaxes(corners[..., 1:, :] - corners[..., :1, :], -1, -2)
    lam = np.linalg.solve(T, (points[:, None, :] - corners[..., 0, :])[..., None])[..., 0]
    bary = np.concatenate([1 - lam.sum(-1, keepdims=True), lam], -1)  # (q, c, d+1)
    best = np.argmax(bary.min(-1), axis=1)
    rows = np.arange(len(points))
    cells = near[rows, best]
    return np.einsum("qc,qck->qk", bary[rows, best], values[mesh.cells[cells]])


def run_scenario(name: str, variant: str, steps: int | None, fine_levels: int, cache: dict) -> dict:
    """One solver on one scenario: per-step CPU/wall seconds, vertex errors, energies."""
    over = [] if steps is None else [f"time.steps={steps}"]
    raw = load_raw(os.path.join(ROOT, SCENARIO_CONFIGS[name]), over + ["device=cpu"])
    if variant == "adam":
        raw["optim"] = dict(ADAM)
    cfg = build_config(raw)
    env = RunEnv(torch.device("cpu"))
    s = Solver(cfg, env)
    case = s.case
    n_steps, dt = cfg.time.steps, cfg.time.dt
    key = (name, n_steps)
    equal = equal_memory_mesh(case.mesh, s.n_params())
    if key not in cache:  # the fine FEM reference at the INSR mesh's vertices
        fine = fine_mesh(case.mesh, equal, fine_levels)
        fem = case._build_fem(fine)
        fem.max_newton = 500  # a 3× stretch from rest on 66 000 nodes takes more than the default 50
        c0, w0 = _cpu(), time.perf_counter()
        ref = [fem.positions[: len(case.ref_points)].copy()]
        en = [fem.total_energy(dt)]
        for _ in range(n_steps):
            info = fem.step(dt)
            assert info.converged, f"{name}: the fine FEM reference did not converge"
            ref.append(fem.positions[: len(case.ref_points)].copy())
            en.append(fem.total_energy(dt))
        cache[key] = {"ref": ref, "energy": en, "cpu": (_cpu() - c0) / n_steps, "wall": (time.perf_counter() - w0) / n_steps,
                      "n": len(fine.points)}
    ref = cache[key]["ref"]
    if variant == "fem-equal":
        mesh = equal
        fem = case._build_fem(mesh)
        cpu, wall, outs, energies, conv = [], [], [], [], True
        for _ in range(n_steps):
            c0, w0 = _cpu(), time.perf_counter()
            info = fem.step(dt)
            cpu.append(_cpu() - c0)
            wall.append(time.perf_counter() - w0)
            conv &= bool(info.converged)
            outs.append(interpolate_p1(mesh, fem.positions, case.ref_points))
            energies.append(fem.total_energy(dt))
        label = f"FEM at equal memory ({len(mesh.points)} nodes, {len(mesh.points) * case.dim} unknowns)"
        init = 0.0
    else:
        c0, w0 = _cpu(), time.perf_counter()
        s.advance(0)
        init = _cpu() - c0
        cpu, wall, outs, energies, capped, conv = [], [], [], [], 0, True
        for k in range(1, n_steps + 1):
            c0, w0 = _cpu(), time.perf_counter()
            r = s.advance(k)
            cpu.append(_cpu() - c0)
            wall.append(time.perf_counter() - w0)
            capped += int(sum(bool(v) for v in r["capped"].values()))
            case.time_now = k * dt
            out = case.evaluate(s.models, cfg.output.resolution, env.device)
            outs.append(out["vertices"].astype(np.float64))
            energies.append(float(out["energy"]))
        what = "Newton–CG, Gauss–Newton curvature (shipped)" if variant == "newton" else \
            f"Adam (lr {ADAM['lr']:g}, ≤ {ADAM['max_iters']} it, rtol {ADAM['rtol']:g})"
        label = f"INSR {what}, {s.n_params()} weights" + (f"; {capped} capped" if capped else "")
    errs = []
    for k, got in enumerate(outs, start=1):
        e = case.errors({"vertices": got}, {"vertices_ref": ref[k]})
        errs.append(e)
    last = errs[-1]
    return {"label": label, "cpu": float(np.mean(cpu)), "wall": float(np.mean(wall)), "init": init,
            "rel": last["rel_l2"], "max": max(e["max_err"] for e in errs), "tip": last["tip_error"],
            "energy": energies[-1], "energy_ref": cache[key]["energy"][-1], "converged": conv,
            "fine": cache[key]}


def scenarios_main(args) -> None:
    torch.set_num_threads(1)
    names = args.scenarios.split(",")
    variants = args.variants_scenario.split(",")
    cache: dict = {}
    parts = []
    for name in names:
        rows = []
        steps = None if args.steps is None or name == "stretch2d" else args.steps
        for v in variants:
            r = run_scenario(name, v, steps, args.fine, cache)
            print(f"  {name} {v}: {r['cpu']:.2f} s CPU/step ({r['wall']:.2f} wall), rel L2 {r['rel']:.3e}, "
                  f"max {r['max']:.3e}, tip {r['tip']:.3e}, energy {r['energy']:.4g} (ref {r['energy_ref']:.4g})", flush=True)
            rows.append([r["label"], f"{r['cpu']:.2f}", f"{r['wall']:.2f}", f"{r['init']:.1f}" if r["init"] else "-",
                         f"{r['rel']:.2e}", f"{r['max']:.2e}", f"{r['tip']:.2e}", f"{r['energy']:.4g}"])
        fine = cache[next(k for k in cache if k[0] == name)]
        rows.append([f"fine FEM reference ({fine['n']} nodes)", f"{fine['cpu']:.2f}", f"{fine['wall']:.2f}", "-",
                     "0", "0", "0", f"{fine['energy'][-1]:.4g}"])
        cfgfile = SCENARIO_CONFIGS[name]
        parts.append(f"### {name} (`{cfgfile}`" + (f", {steps} steps" if steps else "") + ")\n\n" + markdown_table(
            ["solver", "s/step CPU", "s/step wall", "s step 0 (CPU)", "rel. L2 vertices (last step)",
             "max vertex error (worst step)", "tip vertex error (last)", "energy (last)"], rows))
    intro = ("Errors at the INSR mesh's vertices against the fine FEM reference (the INSR mesh refined at least "
             f"{args.fine}× and until it has 4× the nodes of the equal-memory FEM; P1, the same incremental potential), "
             "one thread. CPU seconds are `time.process_time` of this process. The FEM at equal memory: the square "
             "regenerated at the resolution whose unknowns (nodes × d) fit the network's weights; the torus (curved) "
             "refined uniformly, the same polyhedron, to the level nearest the weights; interpolated (P1) to the "
             "INSR vertices. Dynamic scenarios: the first `--steps` steps.")
    cmd = "OMP_NUM_THREADS=1 python benchmarks/elasticity.py " + " ".join(sys.argv[1:])
    publish(args.write, "Elasticity: the paper's scenarios", cmd.strip(), intro + "\n\n" + "\n\n".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bar", action="store_true", help="the bar's Adam-vs-Newton table (the previous benchmark)")
    ap.add_argument("--scenarios", default="stretch2d,collide2d,fall3d")
    ap.add_argument("--variants-scenario", default="newton,adam,fem-equal")
    ap.add_argument("--steps", type=int, default=None, help="steps of the dynamic scenarios (default: the config's)")
    ap.add_argument("--fine", type=int, default=2, help="refinements of the INSR mesh for the fine FEM reference")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--bar-scenarios", default="sag,stretch")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--stretch-variants", default="adam-table,newton")
    ap.add_argument("--quick", action="store_true", help="FEM reference 64×8 instead of 128×16")
    add_write_option(ap)
    args = ap.parse_args()
    if not args.bar:
        return scenarios_main(args)
    torch.set_num_threads(1)
    seeds = [int(x) for x in args.seeds.split(",")]
    scenarios = args.bar_scenarios.split(",")
    variants = args.variants.split(",")
    refs: dict = {"fine": (64, 8) if args.quick else (128, 16)}
    per = {sc: variants if sc == "sag" else args.stretch_variants.split(",") for sc in scenarios}
    results: dict = {(sc, v): [] for sc in scenarios for v in per[sc]}
    for seed in seeds:
        for sc in scenarios:
            for v in (variants if sc == "sag" else args.stretch_variants.split(",")):
                r = run_one(sc, seed, v, refs)
                results[(sc, v)].append(r)
                print(f"  {sc} seed {seed} {v}: {r['s']:.2f} s/step (step 0 {r['init']:.1f} s), iterations {r['its']}, "
                      f"tip {r['tip']:.2e} (max over steps {r['tip_max']:.2e}), rel L2 {r['rel']:.4f}", flush=True)
    parts = []
    for sc in scenarios:
        dt, steps = SCENARIOS[sc]
        base = results[(sc, per[sc][0])]
        rows = []
        for v in per[sc]:
            rs = results[(sc, v)]
            ratio = [b["s"] / r["s"] for b, r in zip(base, rs, strict=True)]  # per seed, same minutes
            rows.append([
                VARIANTS[v][0], spread([r["s"] for r in rs], ".2f"), spread(ratio, ".1f") + "×",
                spread([r["tip"] for r in rs], ".1e"), spread([r["tip_max"] for r in rs], ".1e"),
                spread([r["rel"] for r in rs], ".4f"), "/".join(str(int(np.mean([r["its"][k] for r in rs])))
                                                           for k in range(steps)),
                spread([r["init"] for r in rs], ".1f"),
            ])
        parts.append(
            f"### {sc} (Δt = {dt:g}, {steps} step{'s' if steps > 1 else ''})\n\n"
            + markdown_table(["method", "s/step", f"less time than row 1",
                              "tip error (last step)", "tip error (worst step)", "rel. L2 (last step)",
                              "iterations per step", "s step 0"], rows)
        )
    fine = refs["fine"]
    intro = (
        f"Bar 2 × 0.4, E = 500, ν = 0.3, SIREN 2 sine layers × 32 (1218 parameters), one thread. Errors vs FEM "
        f"{fine[0]}×{fine[1]} on the same incremental potential. Median over seeds {args.seeds} (min–max in "
        "brackets); each seed runs the variants one after the other, and the time ratio is taken per seed. "
        "s/step excludes the step-0 fit (own column). 'reverse-mode ∇φ' is the previous derivative path "
        "(`ops.reverse_jacobians`)."
    )
    cmd = "OMP_NUM_THREADS=1 python benchmarks/elasticity.py " + " ".join(sys.argv[1:])
    body = intro + "\n\n" + "\n\n".join(parts)
    publish(args.write, "Elasticity: the variational step", cmd.strip(), body)


if __name__ == "__main__":
    main()
