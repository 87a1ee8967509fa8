"""Stores at sweep scale: files per store (format v1 vs v2), ``xr.open_zarr`` over many
stores, and ``insr-hpc report`` serial vs ``mpiexec -n N``.

    python benchmarks/store_scale.py [--stores 100] [--report-stores 32] [--ranks 2] [--repeats 3]

Every store has the exact layout of the default advection run (configs/advection.yaml:
240 steps, 512-point grid, 2 × 20 SIREN; the skeleton comes from the PDE workload's own
``store_variables``) filled with synthetic values, written once per format: v1 (one
file per chunk) and v2 (zarr 3 shards). Measured:

* files and bytes per store;
* wall time to ``xr.open_zarr`` all stores and read one per-step series from each
  (what ``report`` does per store), best of ``--repeats`` (page cache warm: a parallel
  file system's metadata server pays per file, so cold numbers favour v2 more);
* ``insr-hpc report`` (figures included) on ``--report-stores`` v2 run directories,
  serial and under ``mpiexec -n RANKS`` (mpich wheel), best of ``--repeats``; outputs
  are checked identical.

The table goes into docs/benchmarks.md.
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

from benchmarks.report import markdown_table, write_section  # noqa: E402
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


def time_report(cmd: list[str], root: str) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    t0 = time.perf_counter()
    out = subprocess.run(cmd + ["report", root], capture_output=True, text=True, env=env)
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
    ap.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    args = ap.parse_args()
    cfg, variables, attrs = advection_layout()
    tmp = tempfile.mkdtemp(prefix="insr-store-scale-")
    try:
        rows = []
        opened = {}
        for version in (1, 2):
            paths = [os.path.join(tmp, f"v{version}", f"s{k:03d}.zarr") for k in range(args.stores)]
            for k, p in enumerate(paths):
                write_store(p, variables, attrs, version, k)
            files, size = count(paths[0])
            opened[version] = min(open_all(paths) for _ in range(args.repeats))
            rows.append((f"v{version}" + (" (one file per chunk)" if version == 1 else " (zarr 3 shards)"),
                         files, f"{size / 1024:.0f} KiB", files * 1000,
                         f"{opened[version]:.2f} s", f"{1000 * opened[version] / args.stores:.1f} ms"))
        table1 = markdown_table(
            ("format", "files per store", "bytes per store", "files for 1 000 runs",
             f"open_zarr + read rel_l2, {args.stores} stores", "per store"), rows)

        root = os.path.join(tmp, "sweep")
        run_dirs(root, args.report_stores, variables, attrs)
        py = [sys.executable, "-m", "insr_hpc"]
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        serial = min(time_report(py, root) for _ in range(args.repeats))
        keep = os.path.join(tmp, "serial_report")
        shutil.copytree(os.path.join(root, "report"), keep)
        parallel = min(time_report([mpiexec, "-n", str(args.ranks), *py], root) for _ in range(args.repeats))
        same = filecmp.cmp(os.path.join(keep, "summary.csv"), os.path.join(root, "report", "summary.csv"), shallow=False)
        a = xr.open_zarr(os.path.join(keep, "sweep.zarr")).load()
        b = xr.open_zarr(os.path.join(root, "report", "sweep.zarr")).load()
        same = same and a.identical(b)
        table2 = markdown_table(
            ("command", f"wall time, {args.report_stores} stores", "speed-up", "output identical to serial"),
            [("insr-hpc report", f"{serial:.2f} s", "1.00", "-"),
             (f"mpiexec -n {args.ranks} insr-hpc report", f"{parallel:.2f} s", f"{serial / parallel:.2f}", "yes" if same else "NO")],
        )
        body = (
            f"Stores with the layout of the default advection run ({cfg.time.steps} steps, "
            f"{cfg.output.resolution}-point grid, {variables['weights'].shape[1]} parameters), synthetic values. "
            "Page cache warm (a parallel file system pays its metadata server per file, so cold reads favour "
            "v2 further). Report times include interpreter start-up, figures (rank 0) and writing sweep.zarr; "
            f"best of {args.repeats}.\n\n{table1}\n\n{table2}\n"
        )
        if args.no_write:
            print(body)
        else:
            write_section("Stores at sweep scale: sharding and parallel report",
                          f"python benchmarks/store_scale.py --stores {args.stores} --report-stores "
                          f"{args.report_stores} --ranks {args.ranks} --repeats {args.repeats}", body)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
