"""Summarise many run stores in parallel with MPI: one row per store, written by rank 0.

    mpiexec -n 4 python jobs/summarize_stores.py SWEEP_DIR [-o summary.csv]
    srun python jobs/summarize_stores.py SWEEP_DIR          # inside an sbatch job

Each rank opens its share of the runs' ``store.zarr`` directories under SWEEP_DIR
(round robin; a sweep's ``report/``, written by ``insr-hpc report``, is not a run) with xarray and computes, per store: committed steps, final and worst-over-time
error, total Adam iterations and wall time; rank 0 gathers the rows and writes a CSV
sorted by run. Runs with one rank without MPI too (plain ``python``).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np
import xarray as xr

from insr_hpc.analysis.stores import find_stores, mpi_comm  # find_stores skips a sweep's report/

COLUMNS = ("run", "steps_done", "steps_total", "complete", "final_error", "max_error", "iterations", "seconds", "rank")


def summarize(path: str, root: str) -> dict:
    """One store's row. Error = the first of rel_l2 / mse / error the store holds."""
    ds = xr.open_zarr(path)
    committed = ds["committed"].values.astype(bool)
    n = int(np.argmin(committed)) if not committed.all() else committed.size
    err_name = next((v for v in ("rel_l2", "mse", "error") if v in ds), None)
    err = ds[err_name].values[:n].astype(float) if err_name and n else np.array([np.nan])
    iters = ds["iterations"].values[:n] if "iterations" in ds else np.zeros(0)
    secs = ds["seconds"].values[:n] if "seconds" in ds else np.zeros(0)
    return {
        "run": os.path.relpath(os.path.dirname(path), root),
        "steps_done": n,
        "steps_total": int(committed.size),
        "complete": bool(ds.attrs.get("complete", False)),
        "final_error": float(err[-1]),
        "max_error": float(np.nanmax(err)),
        "iterations": int(np.clip(iters, 0, None).sum()),
        "seconds": float(np.nansum(secs)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", help="a sweep directory (output.root/name) or any tree holding stores")
    p.add_argument("-o", "--output", default=None, help="CSV path (default: ROOT/summary.csv)")
    args = p.parse_args(argv)
    comm = mpi_comm()  # None under a plain python: one rank
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm else (0, 1)
    if not os.path.isdir(args.root):
        if rank == 0:
            print(f"summarize_stores: error: '{args.root}' is not a directory", file=sys.stderr)
        return 2
    stores = find_stores(args.root)  # every rank lists the same tree: no need to scatter names
    rows = [{**summarize(s, args.root), "rank": rank} for s in stores[rank::size]]
    gathered = comm.gather(rows, root=0) if comm else [rows]
    if rank != 0:
        return 0
    table = sorted((r for part in gathered for r in part), key=lambda r: r["run"])
    out = args.output or os.path.join(args.root, "summary.csv")
    tmp = f"{out}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    os.replace(tmp, out)
    print(f"{len(table)} store(s) summarised by {size} rank(s) → {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
