"""A sweep of thousands of tiny runs on a Slurm cluster (the dev cluster): array splitting,
submission, status, a fault, cancel of a partly finished sweep, resubmission of the rest.

    python benchmarks/slurm_scale.py [--runs 2000] [--finish 20] [--kill 5] [--write]

Each run is as small as a run gets (``time.steps=1``, a width-4 SIREN, 5 iterations): what
is measured is orchestration, not numerics. Phases, each timed from this process:

1. submit without waiting, timed in parts (in this process, the steps of ``insr-hpc
   submit --no-wait``): plan and validate the sweep, write every run directory
   (spec.json, run.json), split into arrays of at most MaxArraySize tasks (``scontrol
   show config``) and sbatch them (submitit's pickles included);
2. wait until ``--finish`` runs are done (the cluster runs them ``array_parallelism`` at once);
3. a fault: ``scancel`` (plain, not ``insr-hpc cancel``) of ``--kill`` running tasks: those
   runs end ``failed`` (SIGTERM);
4. ``insr-hpc status`` over the whole sweep directory (run.json + store markers of every run);
5. ``insr-hpc cancel`` of the rest;
6. submit again (as in 1): only the runs not done (failed + cancelled) are resubmitted;
   then they are cancelled again so the benchmark leaves nothing queued.

Needs a running controller (``slurm/dev-cluster.sh start``; source its env.sh). The table
is printed; ``--write`` also puts it into docs/benchmarks.md ("Slurm at scale").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.report import add_write_option, markdown_table, publish  # noqa: E402
from insr_hpc.analysis.status import find_runs  # noqa: E402
from insr_hpc.launch.slurm import cluster_max_array_size, plan_arrays  # noqa: E402
from insr_hpc.run import read_state  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "advection.yaml")


def overrides(root: str, runs: int, parallelism: int) -> list[str]:
    return [
        f"output.root={root}", "time.steps=1", "optim.name=adam", "optim.max_iters=5", "optim.init_max_iters=5",
        "optim.rtol=0", "optim.init_rtol=0", "sampling.interior=32", "output.resolution=8", "output.figure_every=0",
        "network.width=4", "device=cpu", f"sweep.grid.seed=[{','.join(str(i) for i in range(runs))}]",
        f"launch.slurm.array_parallelism={parallelism}", "launch.slurm.time_min=10",
    ]


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "insr_hpc", *args], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO))
    return time.perf_counter() - t0, out


def submit(ov: list[str]) -> tuple[list, dict[str, float], list[str]]:
    """What ``insr-hpc submit --no-wait`` does, timed per part: (runs submitted, seconds, array ids)."""
    from insr_hpc.launch.slurm import SlurmBackend
    from insr_hpc.plan import plan_runs
    from insr_hpc.run import admit

    t0 = time.perf_counter()
    plan = plan_runs(CONFIG, ov)
    t1 = time.perf_counter()
    backend = SlurmBackend(plan.launch)
    backend.available()
    todo = admit(plan.specs, "slurm").todo
    t2 = time.perf_counter()
    backend.submit(todo, plan.sweep_dir, progress=False, wait=False)
    t3 = time.perf_counter()
    return todo, {"plan": t1 - t0, "write": t2 - t1, "sbatch": t3 - t2}, backend.arrays


def states(runs: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in runs:
        s = read_state(r).get("state", "?")
        counts[s] = counts.get(s, 0) + 1
    return counts


def slurm_nodes() -> str:
    out = subprocess.run(["sinfo", "-h", "-o", "%D nodes, %C CPUs (A/I/O/T)"], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "?"


def files_under(path: str) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--finish", type=int, default=20, help="runs to let finish before the fault and the cancel")
    ap.add_argument("--kill", type=int, default=5, help="running tasks to scancel (a fault: they end failed)")
    ap.add_argument("--parallelism", type=int, default=64)
    ap.add_argument("--root", default=None, help="output root (default: a temporary directory, removed)")
    add_write_option(ap)
    args = ap.parse_args(argv)
    if shutil.which("sbatch") is None:
        print("no sbatch on PATH: start slurm/dev-cluster.sh and source its env.sh", file=sys.stderr)
        return 2
    root = args.root or tempfile.mkdtemp(prefix="insr-slurm-scale-")
    sweep = os.path.join(root, "advection")
    ov = overrides(root, args.runs, args.parallelism)
    max_size = cluster_max_array_size()
    n_arrays = len(plan_arrays(args.runs, max_size, args.parallelism))
    rows = []

    todo, t, arrays = submit(ov)
    runs = find_runs(sweep)
    rows.append(("submit: plan + validate", f"{t['plan']:.1f}", f"{len(todo)} runs"))
    rows.append(("submit: write run dirs", f"{t['write']:.1f}", "spec.json + run.json per run"))
    rows.append(("submit: sbatch", f"{t['sbatch']:.1f}", f"{len(arrays)} arrays (MaxArraySize {max_size}, "
                 f"planned {n_arrays}), %{args.parallelism} over the sweep"))

    t0 = time.perf_counter()
    while states(runs).get("done", 0) < args.finish:
        time.sleep(2)
    t_finish = time.perf_counter() - t0
    rows.append((f"until {args.finish} runs done", f"{t_finish:.1f}", "tiny runs: interpreter + imports dominate"))

    from insr_hpc.launch.slurm import squeue_states

    ids = [read_state(r)["job_id"] for r in runs]
    deadline = time.time() + 60
    running: list[str] = []
    while time.time() < deadline and not running:  # tasks Slurm runs now (run.json may still say pending)
        live = squeue_states(ids)
        running = [j for j in ids if live.get(j) == "RUNNING"][: args.kill]
    if running:
        subprocess.run(["scancel", *running], check=False, timeout=60)
        deadline = time.time() + 60
        while time.time() < deadline and sum(read_state(r).get("state") == "failed" for r in runs) < len(running):
            time.sleep(1)

    t_status, out = cli("status", sweep)
    rows.append(("status (whole sweep)", f"{t_status:.1f}", f"{len(out.stdout.splitlines()) - 1} rows; {states(runs)}"))

    t_cancel, out = cli("cancel", sweep)
    counts = states(runs)
    said = out.stdout.strip().split(":")[0] if out.returncode == 0 else f"exit {out.returncode}: {out.stderr.strip()[-300:]}"
    rows.append(("cancel (partly finished sweep)", f"{t_cancel:.1f}", said + f"; {counts}"))

    todo, t, arrays = submit(ov)
    rows.append(("resubmit (only runs not done)", f"{sum(t.values()):.1f}",
                 f"{len(todo)} resubmitted in {len(arrays)} arrays, {len(runs) - len(todo)} done skipped "
                 f"(plan {t['plan']:.1f} s, sbatch {t['sbatch']:.1f} s)"))
    t_cancel2, out = cli("cancel", sweep)
    said = "" if out.returncode == 0 else f"exit {out.returncode}: {out.stderr.strip()[-300:]}; "
    rows.append(("cancel (resubmitted)", f"{t_cancel2:.1f}", f"{said}{states(runs)}"))
    rows.append(("files under the sweep", files_under(sweep), f"{files_under(sweep) / len(runs):.1f} per run"))

    body = (
        markdown_table(("phase", "seconds", "what"), rows)
        + f"\n\n{args.runs} runs of `time.steps=1` (width-4 SIREN) on the dev cluster ({slurm_nodes()}), "
        f"{len(running)} running tasks killed with a plain `scancel` as the fault "
        f"(their run.json states after: {[read_state(r).get('state') for r in runs if read_state(r).get('job_id') in running]}); `status` and `cancel` are timed as "
        "CLI commands (a fresh interpreter, imports included; `status` asks squeue for the live job states). "
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the dev cluster's own tiny runs included)."
    )
    command = f"python benchmarks/slurm_scale.py --runs {args.runs} --finish {args.finish} --kill {args.kill}"
    publish(args.write, "Slurm at scale: a 2 000-run sweep", command, body)
    if args.root is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
