"""Advection: INSR with each integrator vs the analytic solution, and a classical
finite-difference baseline (Lax–Wendroff) with as many grid points as the network has
parameters (the equal-memory comparison of the INSR paper). One process, side by side.

    python benchmarks/advection.py [--steps 40] [--samples 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import xarray as xr

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.report import markdown_table, write_section  # noqa: E402
from insr_hpc.catalog import build_config  # noqa: E402
from insr_hpc.config import config_to_dict, load_raw  # noqa: E402
from insr_hpc.pde.cases.advection import initial_profile  # noqa: E402
from insr_hpc.run import RunSpec, execute  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "advection.yaml")


def lax_wendroff(n_points: int, length: float, speed: float, t_end: float, mu: float, sigma: float):
    """u_t + a u_x = 0 on a uniform grid with u = 0 at both ends; CFL 0.9."""
    x = np.linspace(-length / 2, length / 2, n_points)
    dx = x[1] - x[0]
    n_sub = int(np.ceil(speed * t_end / (0.9 * dx)))
    c = speed * (t_end / n_sub) / dx
    u = initial_profile("gaussian", x, mu, sigma, 0.0)
    for _ in range(n_sub):
        un = u.copy()
        u[1:-1] = un[1:-1] - 0.5 * c * (un[2:] - un[:-2]) + 0.5 * c**2 * (un[2:] - 2 * un[1:-1] + un[:-2])
        u[0] = u[-1] = 0.0
    exact = initial_profile("gaussian", x - speed * t_end, mu, sigma, 0.0)
    return float(np.linalg.norm(u - exact) / np.linalg.norm(exact))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--samples", type=int, default=5000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    n_params = None
    with tempfile.TemporaryDirectory() as tmp:
        for integ in ("explicit_euler", "implicit_euler", "midpoint"):
            raw = load_raw(CONFIG, [f"integrator.name={integ}", f"time.steps={args.steps}",
                                    f"sampling.interior={args.samples}", f"output.root={tmp}", "output.figure_every=0",
                                    "device=cpu"])
            cfg = build_config(raw)
            spec = RunSpec(integ, os.path.join(tmp, integ), config_to_dict(cfg))
            t0 = time.perf_counter()
            execute(spec, threads=1)
            wall = time.perf_counter() - t0
            ds = xr.open_zarr(os.path.join(tmp, integ, "store.zarr"))
            n_params = ds.sizes["parameter"]
            steps = ds.iterations.values[1:, 1]
            rows.append([f"INSR {integ}", n_params, f"{float(ds.seconds[1:].mean()):.2f}", f"{steps.mean():.0f}",
                         f"{float(ds.rel_l2[0]):.4f}", f"{float(ds.rel_l2[-1]):.4f}", f"{wall:.0f}"])
        t_end = args.steps * cfg.time.dt
        p = cfg.problem
        for n in (n_params, 4 * n_params):
            t0 = time.perf_counter()
            err = lax_wendroff(n, p.length, p.speed, t_end, p.mu, p.sigma)
            rows.append([f"Lax–Wendroff, {n} points", n, "-", "-", "0", f"{err:.4f}", f"{time.perf_counter() - t0:.2f}"])
    table = markdown_table(
        ["method", "memory (params / grid values)", "s/step", "Adam iters/step", "rel L2 at t=0", f"rel L2 at t={t_end:g}", "total s"],
        rows,
    )
    body = (
        f"1D advection, paper setting (Gaussian pulse σ = 0.1, a = 0.25, 2×20 SIREN, {args.samples} samples/iteration, "
        f"dt = 0.05), first {args.steps} steps, 1 thread.\n\n{table}\n"
    )
    write_section("Advection: integrators and equal-memory finite differences", f"python benchmarks/advection.py --steps {args.steps} --samples {args.samples}", body)


if __name__ == "__main__":
    main()
