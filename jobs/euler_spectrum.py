"""Kinetic-energy spectrum and enstrophy history of every Euler store under a directory.

    python jobs/euler_spectrum.py runs/euler_sweep [--out DIR] [--step N]
    mpiexec -n 4 python jobs/euler_spectrum.py runs/euler_sweep

For each store (``attrs["case"] == "euler"``), from the velocity ``u`` (step, y, x,
component) on the stored uniform grid:

* E(k): ½ h²/N² Σ |û|² over the Fourier modes whose |k| (in units of 2π/L, L the box
  side) rounds to k, at step N (default: the last committed step). Σ_k E(k) equals the
  grid kinetic energy ½ Σ |u|² h² (Parseval), i.e. the store's ``kinetic_energy``.
* Z(t) = ½ Σ ω² h² with ω = ∂v/∂x − ∂u/∂y by second-order differences, per committed step.

Writes OUT/euler_spectrum.csv (run, k, E), OUT/euler_enstrophy.csv (run, step, time, Z)
and OUT/euler_spectrum.png. Stores are dealt round robin to MPI ranks; rank 0 writes.
Uses only xarray and numpy on the stores (see docs/store.md): copy and adapt.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np
import xarray as xr

from insr_hpc.analysis.stores import map_stores
from insr_hpc.grid import vorticity


def spectrum(u: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Shell-summed kinetic-energy spectrum of a (N, N, 2) velocity with spacing h.
    Returns (k = 0..kmax, E(k)); E sums to ½ Σ|u|² h²."""
    n = u.shape[0]
    uhat = np.fft.fft2(u, axes=(0, 1))
    density = 0.5 * h * h / (n * n) * (np.abs(uhat) ** 2).sum(axis=-1)
    freq = np.fft.fftfreq(n) * n  # integer wavenumbers in units of 2π/L
    kx, ky = np.meshgrid(freq, freq)
    shell = np.rint(np.hypot(kx, ky)).astype(int)
    energy = np.bincount(shell.ravel(), weights=density.ravel())
    return np.arange(energy.size), energy


def enstrophy(u: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """½ Σ ω² h² of a (y, x, 2) velocity."""
    w = vorticity(u, x, y)
    return float(0.5 * (w**2).sum() * (x[1] - x[0]) * (y[1] - y[0]))


def analyse(path: str, root: str, step: int | None) -> dict | None:
    ds = xr.open_zarr(path)
    if ds.attrs.get("case") != "euler":
        return None
    done = ds.committed.values.astype(bool)
    n = int(np.argmin(done)) if not done.all() else done.size
    if n == 0:
        return None
    k_step = n - 1 if step is None else min(step, n - 1)
    x, y = ds.x.values, ds.y.values
    u = ds.u.values[:n].astype(np.float64)
    k, e = spectrum(u[k_step], float(x[1] - x[0]))
    z = [enstrophy(u[i], x, y) for i in range(n)]
    return {"run": os.path.relpath(os.path.dirname(path), root), "step": k_step, "k": k, "E": e,
            "time": ds.time.values[:n], "Z": np.array(z)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--out", default=None, help="output directory (default: ROOT/report)")
    ap.add_argument("--step", type=int, default=None, help="step of the spectrum (default: last committed)")
    args = ap.parse_args(argv)
    found, size, n_stores = map_stores(args.root, lambda p: analyse(p, args.root, args.step))
    if not n_stores:
        if found is not None:
            print(f"euler_spectrum: error: no store.zarr under '{args.root}'", file=sys.stderr)
        return 2
    if found is None:  # not rank 0
        return 0
    results = sorted((r for r in found if r), key=lambda r: r["run"])
    out = args.out or os.path.join(args.root, "report")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "euler_spectrum.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "step", "k", "E"])
        for r in results:
            w.writerows([r["run"], r["step"], int(k), repr(float(e))] for k, e in zip(r["k"], r["E"], strict=True))
    with open(os.path.join(out, "euler_enstrophy.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "step", "time", "Z"])
        for r in results:
            w.writerows([r["run"], i, repr(float(t)), repr(float(z))] for i, (t, z) in enumerate(zip(r["time"], r["Z"], strict=True)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for r in results:
        pos = r["k"] > 0
        a.loglog(r["k"][pos], np.maximum(r["E"][pos], 1e-30), lw=1, label=f"{r['run']} (step {r['step']})")
        b.plot(r["time"], r["Z"], "o-", ms=3, lw=1, label=r["run"])
    a.set(xlabel="wavenumber k (units of 2π/L)", ylabel="E(k) (energy per shell)", title="kinetic-energy spectrum")
    b.set(xlabel="time t (simulation units)", ylabel="enstrophy ½∫ω² dx (area/time²)", title="enstrophy history")
    for ax in (a, b):
        ax.grid(alpha=0.3, which="both")
    if len(results) <= 12:  # one entry per run, in both panels
        for ax in (a, b):
            ax.legend(fontsize=6, title="run", title_fontsize=7, loc="best")
    elif results:  # too many runs to name: colour by position in the sorted list, with a colour bar
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        cmap = plt.get_cmap("viridis")
        for ax in (a, b):
            for i, line in enumerate(ax.get_lines()):
                line.set_color(cmap(i / max(1, len(results) - 1)))
        fig.colorbar(ScalarMappable(Normalize(0, len(results) - 1), cmap), ax=[a, b],
                     label="run (index in euler_spectrum.csv order)")
    fig.savefig(os.path.join(out, "euler_spectrum.png"), dpi=110)
    print(f"{len(results)} Euler store(s) by {size} rank(s) → {out}/euler_spectrum.csv, euler_enstrophy.csv, euler_spectrum.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
