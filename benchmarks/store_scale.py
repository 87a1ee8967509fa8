"""Stores at sweep scale: files per store (format v1 vs v2), ``xr.open_zarr`` over many
stores, and ``insr-hpc report`` serial vs ``mpiexec -n N``.

    python benchmarks/store_scale.py [--part formats|report|all] [--stores 100] [--report-stores 32] [--ranks 2] [--repeats 3]

Every store has the exact layout of the default advection run (configs/advection.yaml:
240 steps, 512-point grid, 2 × 20 SIREN; the skeleton comes from the PDE workload's own
``store_variables``) filled with synthetic values, written once per format: v1 (one
file per chunk) and v2 (small arrays one chunk, large ones in shards). Measured:

* files and bytes per store;
* wall time to ``xr.open_zarr`` all stores and read one per-step series from each
  (what ``report`` does per store), best of ``--repeats`` (page cache warm: a parallel
  file system's metadata server pays per file, so cold numbers favour v2 more);
* ``insr-hpc report`` (figures included) on ``--report-stores`` v2 run directories,
  serial and under ``mpiexec -n RANKS`` (mpich wheel), best of ``--repeats``; outputs
  are checked identical.

The table is printed; ``--write`` also puts it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from benchmarks.report import add_write_option, markdown_table, publish  # noqa: E402
from insr_hpc.catalog import load_config  # noqa: E402
from insr_hpc.pde.solver import Solver  # noqa: E402
from insr_hpc.pde.workload import store_attrs, store_variables  # noqa: E402
from insr_hpc.runtime import RunEnv  # noqa: E402
from insr_hpc.store import StepStore  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "advection.yaml")


def advection_layout():
    import torch

    cfg = load_config(CONFIG, ["device=cpu"])
    solver = Solver(cfg, RunEnv(device=torch.device("cpu"), progress=False))
    return cfg, store_variables(solver), store_attrs(cfg, solver, "r000")


def write_store(path: str, variables, attrs, version: int, seed: int) -> None:
    """A finished store: every per-step array written whole (same files as step by step)."""
    rng = np.random.default_rng(seed)
    store = StepStore.create(path, variables, attrs, store_version=version)
    g = store.group
    n = variables["weights"].shape[0]
    values = {
        "weights": rng.standard_normal(variables["weights"].shape).astype(np.float32),
        "field": rng.standard_normal(variables["field"].shape).astype(np.float32),
        "field_exact": rng.standard_normal(variables["field_exact"].shape).astype(np.float32),
        "iterations": rng.integers(50, 300, variables["iterations"].shape).astype(np.int32),
        "loss": rng.random(variables["loss"].shape) * 1e-4,
        "seconds": 1 + rng.random(n),
        "rel_l2": np.cumsum(rng.random(n)) * 1e-3 * (1 + seed % 7),
        "max_err": rng.random(n),
    }
    for name, value in values.items():
        g[name][...] = value
    g["committed"][...] = 1
    store.finish({"complete": True})


def count(path: str) -> tuple[int, int]:
    files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    return len(files), sum(os.path.getsize(f) for f in files)


def open_all(paths: list[str]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        ds = xr.open_zarr(p)
        float(ds["rel_l2"].values[-1])
    return time.perf_counter() - t0


def run_dirs(root: str, n: int, variables, attrs) -> None:
    for k in range(n):
        dt, width = (0.05, 0.1)[k % 2], (16, 20, 24, 32)[(k // 2) % 4]
        rid = f"r{k:03d}-dt={dt}_width={width}_seed={k // 8}"
        run_dir = os.path.join(root, rid)
        os.makedirs(run_dir)
        write_store(os.path.join(run_dir, "store.zarr"), variables, {**attrs, "run_id": rid}, 2, k)
        overrides = {"time.dt": dt, "network.width": width, "seed": k // 8}
        with open(os.path.join(run_dir, "spec.json"), "w") as fh:
            json.dump({"run_id": rid, "run_dir": run_dir, "config": {"workload": "pde"}, "overrides": overrides}, fh)
        with open(os.path.join(run_dir, "run.json"), "w") as fh:
            json.dump({"state": "done", "run_id": rid}, fh)


def time_report(cmd: list[str], root: str, *extra: str) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    t0 = time.perf_counter()
    out = subprocess.run(cmd + ["report", root, *extra], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"report failed: {out.stderr[-2000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, default=100)
    ap.add_argument("--report-stores", type=int, default=32)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--part", choices=("formats", "report", "all"), default="all")
    add_write_option(ap)
    args = ap.parse_args()
    cfg, variables, attrs = advection_layout()
    tmp = tempfile.mkdtemp(prefix="insr-store-scale-")
    layout = (f"Stores with the layout of the default advection run ({cfg.time.steps} steps, "
              f"{cfg.output.resolution}-point grid, {variables['weights'].shape[1]} parameters), synthetic values; "
              f"page cache warm; best of {args.repeats}. Load average during the run: see below.")
    try:
        if args.part in ("formats", "all"):
            rows = []
            for version in (1, 2):
                paths = [os.path.join(tmp, f"v{version}", f"s{k:03d}.zarr") for k in range(args.stores)]
                for k, p in enumerate(paths):
                    write_store(p, variables, attrs, version, k)
                files, size = count(paths[0])
                opened = min(open_all(paths) for _ in range(args.repeats))
                rows.append((f"v{version}" + (" (one file per chunk)" if version == 1 else " (one data file per array: a chunk or shards)"),
                             files, f"{size / 1024:.0f} KiB", files * 1000,
                             f"{opened:.2f} s", f"{1000 * opened / args.stores:.1f} ms"))
            table = markdown_table(
                ("format", "files per store", "bytes per store", "files for 1 000 runs",
                 f"open_zarr + read rel_l2, {args.stores} stores", "per store"), rows)
            body = (f"{layout}\n\nA parallel file system pays its metadata server per file, so cold reads favour "
                    f"v2 further.\n\n{table}\n\nLoad average at the end: {os.getloadavg()[0]:.1f} "
                    f"on {os.cpu_count()} cores.\n")
            emit(args, "Stores at sweep scale: files per store and open time (v1 vs v2)",
                 f"python benchmarks/store_scale.py --part formats --stores {args.stores} --repeats {args.repeats}", body)
        if args.part in ("report", "all"):
            root = os.path.join(tmp, "sweep")
            run_dirs(root, args.report_stores, variables, attrs)
            py = [sys.executable, "-m", "insr_hpc"]
            mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
            rows = []
            for extra in ((), ("--no-figures",)):
                serial = min(time_report(py, root, *extra) for _ in range(args.repeats))
                keep = os.path.join(tmp, "serial_report")
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(os.path.join(root, "report"), keep)
                parallel = min(time_report([mpiexec, "-n", str(args.ranks), *py], root, *extra) for _ in range(args.repeats))
                same = filecmp.cmp(os.path.join(keep, "summary.csv"), os.path.join(root, "report", "summary.csv"), shallow=False)
                a = xr.open_zarr(os.path.join(keep, "sweep.zarr")).load()
                b = xr.open_zarr(os.path.join(root, "report", "sweep.zarr")).load()
                same = same and a.identical(b)
                what = "with figures" if not extra else "--no-figures"
                rows.append((what, f"{serial:.2f} s", f"{parallel:.2f} s", f"{serial / parallel:.2f}", "yes" if same else "NO"))
            table = markdown_table(("report", "serial", f"mpiexec -n {args.ranks}", "speed-up",
                                    "CSV byte-identical, sweep.zarr identical"), rows)
            body = (f"`insr-hpc report` on {args.report_stores} run directories. {layout}\n\n"
                    "Wall time of the whole command: interpreter start-up and imports on every rank, reading the "
                    "stores (split over ranks), then on rank 0 the sweep dataset, tables, HParams and figures.\n\n"
                    f"{table}\n\nLoad average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n")
            emit(args, "insr-hpc report: serial vs mpiexec",
                 f"python benchmarks/store_scale.py --part report --report-stores {args.report_stores} "
                 f"--ranks {args.ranks} --repeats {args.repeats}", body)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def emit(args, name: str, command: str, body: str) -> None:
    publish(args.write, name, command, body)


if __name__ == "__main__":
    raise SystemExit(main())
