"""The elastic step: the previous default (Adam) against the shipped one (Gauss–Newton
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

Run: ``OMP_NUM_THREADS=1 python benchmarks/elasticity.py [--seeds 0,1,2] [--quick]``.
Prints the section "Elasticity: the variational step"; ``--write`` also puts it into docs/benchmarks.md.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--scenarios", default="sag,stretch")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--stretch-variants", default="adam-table,newton")
    ap.add_argument("--quick", action="store_true", help="FEM reference 64×8 instead of 128×16")
    add_write_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(x) for x in args.seeds.split(",")]
    scenarios = args.scenarios.split(",")
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
