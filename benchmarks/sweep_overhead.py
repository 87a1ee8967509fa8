"""Sweep overhead of the local, Ray and Slurm backends: 8 jobs of fixed work, side by side.

    python benchmarks/sweep_overhead.py [--jobs 8] [--steps 12] [--backends local,ray,slurm]

Each job is the same advection run (fixed iteration counts: ``optim.rtol=0``), seeds
differ. First one job runs alone through the local worker (a fresh process, as every
backend starts one: interpreter, imports, store creation and the work): its wall time is
T1. With S slots (cores; 1 CPU per job) the ideal sweep time is ceil(jobs / S) * T1;
parallel efficiency = ideal / measured wall time of ``Backend.submit`` (Ray's and
Slurm's start-up, scheduling and polling included). Slurm needs a running controller
(slurm/dev-cluster.sh); it is reported as skipped otherwise. The table goes into
docs/benchmarks.md.
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

from benchmarks.report import markdown_table, write_section  # noqa: E402
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


def one_job_alone(root: str, steps: int, slots: int) -> float:
    spec = plan_runs(CONFIG, overrides(root, steps, 1, slots)).specs[0]
    path = spec.save()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "insr_hpc.launch.worker", path], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t0


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
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    slots = available_cores()
    work = tempfile.mkdtemp(prefix="insr-bench-")
    try:
        t1 = one_job_alone(os.path.join(work, "alone"), args.steps, slots)
        print(f"one job alone: {t1:.1f} s", flush=True)
        rows = []
        for name in args.backends.split(","):
            n_slots = slots
            if name == "slurm":
                n = slurm_slots()
                if n is None:
                    rows.append((name, "-", "-", "-", "-", "skipped: no Slurm controller"))
                    continue
                n_slots = min(n, slots)
            elapsed, done = sweep(name, os.path.join(work, name), args.steps, args.jobs, n_slots)
            ideal = math.ceil(args.jobs / n_slots) * t1
            rows.append((name, n_slots, f"{ideal:.1f}", f"{elapsed:.1f}", f"{100 * ideal / elapsed:.0f} %", f"{done}/{args.jobs} done"))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = (
        f"{args.jobs} jobs of fixed work ({args.steps} advection steps, 100 Adam iterations each); one job alone "
        f"(fresh process, imports included) T1 = {t1:.1f} s; ideal = ceil(jobs / slots) × T1.\n\n"
        + markdown_table(("backend", "slots", "ideal (s)", "measured (s)", "efficiency", "note"), rows)
        + "\n\nThe machine is shared (other jobs compete for its cores), so timings are noisy; compare"
        " the rows of one run with each other."
    )
    command = f"python benchmarks/sweep_overhead.py --jobs {args.jobs} --steps {args.steps} --backends {args.backends}"
    if args.no_write:
        print(body)
    else:
        write_section("Sweep overhead: local vs Ray vs Slurm", command, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
