"""Sweep overhead of the local, Ray and Slurm backends: 8 jobs of fixed work, side by side.

    python benchmarks/sweep_overhead.py [--jobs 8] [--steps 12] [--backends local,ray,slurm] [--rounds 2]

Each job is the same advection run (fixed iteration counts: ``optim.rtol=0``), seeds
differ. Right before each backend's sweep one job runs alone through the local worker
(a fresh process, as local and Slurm start one per run: interpreter, imports, store
creation and the work): its wall time is T1 (its compute alone, from the store's step
times, is reported too). With S slots (cores; 1 CPU per job) the ideal sweep time is
ceil(jobs / S) * T1; parallel efficiency = ideal / measured wall time of
``Backend.submit`` (Ray's and Slurm's start-up, scheduling and polling included).
Slurm needs a running controller (slurm/dev-cluster.sh); it is reported as skipped
otherwise. The table is printed; ``--write`` also puts it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
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
from insr_hpc.launch import BACKENDS  # noqa: E402
from insr_hpc.launch.local import available_cores  # noqa: E402
from insr_hpc.plan import plan_runs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "advection.yaml")


def overrides(root: str, steps: int, jobs: int, slots: int) -> list[str]:
    return [
        f"output.root={root}",
        f"time.steps={steps}",
        "optim.max_iters=100",
        "optim.init_max_iters=100",
        "optim.rtol=0",
        "optim.init_rtol=0",
        "sampling.interior=256",
        "output.resolution=64",
        "output.figure_every=0",
        "network.width=16",
        "device=cpu",
        f"sweep.grid.seed=[{','.join(str(i) for i in range(jobs))}]",
        "launch.threads_per_job=1",
        f"launch.workers={slots}",
        "launch.ray.num_cpus=1",
        "launch.slurm.cpus_per_task=1",
        f"launch.slurm.array_parallelism={jobs}",
    ]


def slurm_slots() -> int | None:
    if shutil.which("sinfo") is None:
        return None
    out = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, timeout=20)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return int(out.stdout.split()[0].split("/")[-1])  # allocated/idle/other/total CPUs


def one_job_alone(root: str, steps: int, slots: int) -> tuple[float, float]:
    """(wall time of a fresh worker process running the job, its compute: the store's step seconds)."""
    spec = plan_runs(CONFIG, overrides(root, steps, 1, slots)).specs[0]
    path = spec.save()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "insr_hpc.launch.worker", path], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    compute = float(np.nansum(xr.open_zarr(os.path.join(spec.run_dir, "store.zarr"))["seconds"].values))
    return wall, compute


def sweep(backend: str, root: str, steps: int, jobs: int, slots: int) -> tuple[float, int]:
    plan = plan_runs(CONFIG, overrides(root, steps, jobs, slots))
    impl = BACKENDS.get(backend)(plan.launch)
    t0 = time.perf_counter()
    results = impl.submit(plan.specs, plan.sweep_dir, progress=False)
    elapsed = time.perf_counter() - t0
    return elapsed, sum(state == "done" for state in results.values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--steps", type=int, default=12, help="time steps per job (sets the work, ~10 s here)")
    p.add_argument("--backends", default="local,ray,slurm")
    p.add_argument("--rounds", type=int, default=1, help="repeat local, ray, slurm this many times (interleaved)")
    add_write_option(p)
    args = p.parse_args()
    slots = available_cores()
    work_dir = tempfile.mkdtemp(prefix="insr-bench-")
    try:
        rows = []
        for rnd in range(args.rounds):
            for name in args.backends.split(","):
                n_slots = slots
                if name == "slurm":
                    n = slurm_slots()
                    if n is None:
                        rows.append((name, "-", "-", "-", "-", "-", "-", "skipped: no Slurm controller"))
                        continue
                    n_slots = min(n, slots)
                # T1 right before each sweep: the machine's load drifts (it is shared).
                t1, work = one_job_alone(os.path.join(work_dir, f"alone-{name}-{rnd}"), args.steps, slots)
                load = os.getloadavg()[0]
                elapsed, done = sweep(name, os.path.join(work_dir, f"{name}-{rnd}"), args.steps, args.jobs, n_slots)
                waves = math.ceil(args.jobs / n_slots)
                rows.append((
                    name, n_slots, f"{t1:.1f} / {work:.1f}", f"{waves * t1:.1f}", f"{elapsed:.1f}",
                    f"{100 * waves * t1 / elapsed:.0f} %", f"{100 * waves * work / elapsed:.0f} %",
                    f"{done}/{args.jobs} done, load {load:.1f}",
                ))
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    body = (
        f"{args.jobs} jobs of fixed work ({args.steps} advection steps, 100 Adam iterations each). Before each sweep "
        "one job runs alone in a fresh process: T1 = its wall time / its compute (the store's step times). "
        "ideal = ceil(jobs / slots) × T1; efficiency = ideal / measured wall time of the submit. The compute "
        "column charges each backend for starting Python + torch per run as well (Ray's workers start once and "
        "are reused, which is why Ray comes out ahead).\n\n"
        + markdown_table(
            ("backend", "slots", "T1 wall / compute (s)", "ideal (s)", "measured (s)", "efficiency vs T1",
             "efficiency vs compute", "note"),
            rows,
        )
        + "\n\nThe machine is shared with other jobs (load = 1-minute load average when the sweep started, on "
        "2 cores), so timings are noisy; compare rows of one run, taken minutes apart."
    )
    command = (
        f"python benchmarks/sweep_overhead.py --jobs {args.jobs} --steps {args.steps} --backends {args.backends}"
        f" --rounds {args.rounds}"
    )
    publish(args.write, "Sweep overhead: local vs Ray vs Slurm", command, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
