"""Sweep expansion and ``insr-hpc status`` at scale.

    python benchmarks/sweep_expand.py [--points 100,1000,10000] [--status-runs 2000] [--part expand|status|all]

* expand: ``insr-hpc submit CONFIG --dry-run`` on an advection grid of N points
  (time.dt × network.width, plus a zip over the initial condition for N ≥ 1000), each in
  a fresh interpreter: wall time of the whole command (interpreter start and imports
  included), the time of ``plan_runs`` alone, and the process's peak RSS.
* status: ``insr-hpc status DIR`` over R run directories, made by running one tiny real
  advection run and copying its directory (run.json with its own run id, spec.json, the
  real store) R times: wall time of the command in a fresh interpreter and its peak RSS.

Both tables are printed; ``--write`` also puts them into docs/benchmarks.md (a section each).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.report import add_write_option, markdown_table, publish  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}

# Runs the CLI in this interpreter and reports its own figures on the last stdout line.
PROBE = """
import contextlib, io, json, resource, sys, time
t0 = time.perf_counter()
import insr_hpc.cli as cli
spent = {}
if sys.argv[1] == "submit":
    import insr_hpc.launch, insr_hpc.plan as plan  # what submit imports, timed apart
    spent["imports"] = time.perf_counter() - t0
    real = plan.plan_runs
    def timed(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        out = real(*a, **k)
        spent["plan"], spent["plan_cpu"] = time.perf_counter() - t, time.process_time() - c
        return out
    plan.plan_runs = timed
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = cli.main(sys.argv[1:])
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rc": rc, "lines": out.getvalue().count("\\n"), "seconds": time.perf_counter() - t0,
                  "cpu": use.ru_utime + use.ru_stime, "rss_mb": use.ru_maxrss / 1024, **spent}))
"""


def probe(*args: str) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall"] = wall
    return out


def grid_config(path: str, root: str, points: int) -> None:
    """An advection sweep of ``points`` runs: dt × width (× a 2-row zip from 1 000 up)."""
    zipped = points >= 1000
    per = points // 2 if zipped else points
    a = 100 if per >= 1000 else 10 if per >= 100 else 1
    b = per // a
    data = {
        "name": "expand", "device": "cpu",
        "problem": {"case": "advection"}, "network": {"model": "siren", "depth": 2, "width": 20},
        "output": {"root": root},
        "sweep": {"grid": {"time.dt": [round(0.001 * (i + 1), 6) for i in range(a)],
                           "network.width": [8 + i for i in range(b)]}},
    }
    if zipped:
        data["sweep"]["zip"] = {"problem.initial": ["gaussian", "wavepacket"], "problem.mu": [-1.5, -1.0]}
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh)


def bench_expand(counts: list[int], work: str) -> str:
    rows = []
    for n in counts:
        cfg = os.path.join(work, f"grid{n}.yaml")
        grid_config(cfg, os.path.join(work, "out"), n)
        r = probe("submit", cfg, "--dry-run")
        assert r["rc"] == 0 and r["lines"] == n + 1, r
        assert not os.path.exists(os.path.join(work, "out")), "a dry run created the output root"
        rows.append((n, f"{r['wall']:.2f}", f"{r['cpu']:.2f}", f"{r['imports']:.2f}", f"{r['plan']:.2f}",
                     f"{r['plan_cpu']:.2f}", f"{r['rss_mb']:.0f}"))
        print(rows[-1], flush=True)
    table = markdown_table(("points", "seconds (whole command)", "CPU seconds (whole command)", "seconds (imports)",
                            "seconds (plan_runs)", "CPU seconds (plan_runs)", "peak RSS MB"), rows)
    return (
        "`insr-hpc submit CONFIG --dry-run` on an advection grid (time.dt × network.width, "
        "× a 2-row zip of problem.initial and problem.mu from 1 000 points up), each in a fresh "
        "interpreter; the whole command includes interpreter start, imports (torch, every "
        "registry) and printing the runs; `plan_runs` is expansion, validation and the RunSpecs. "
        "Before the incremental expansion, 100 points took 13 s here and 10 000 points had printed "
        "nothing after 15 minutes (a full OmegaConf build and round trip per point, ~80 ms each). "
        "On a loaded machine the wall time of the whole command is mostly the import of torch "
        "(the registries' modules need it); CPU seconds are the steadier figure.\n\n"
        f"{table}\n\nLoad average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(the machine is shared: figures are upper bounds)."
    )


def make_runs(root: str, n: int, work: str) -> None:
    """One tiny real run, copied ``n`` times under ``root`` (each run.json with its own id)."""
    seed = os.path.join(work, "seed")
    overrides = [f"output.root={seed}", "optim.name=adam", "time.steps=2", "optim.max_iters=5",
                 "optim.init_max_iters=5", "sampling.interior=64", "output.resolution=32",
                 "output.figure_every=0", "network.width=8", "device=cpu", "name=one"]
    subprocess.run([sys.executable, "-m", "insr_hpc", "run", os.path.join(REPO, "configs", "advection.yaml"),
                    *overrides], check=True, env=ENV, capture_output=True)
    src = os.path.join(seed, "one", "r000")
    for i in range(n):
        dst = os.path.join(root, f"r{i:05d}")
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tb"))
        state_path = os.path.join(dst, "run.json")
        with open(state_path, encoding="utf-8") as fh:
            state = json.load(fh)
        state["run_id"] = f"r{i:05d}"
        with open(state_path, "w", encoding="utf-8") as fh:
            json.dump(state, fh)


def bench_status(n: int, work: str) -> str:
    root = os.path.join(work, "runs")
    make_runs(root, n, work)
    files = sum(len(f) for _, _, f in os.walk(root))
    best = None
    for _ in range(2):  # the first pass warms the page cache
        r = probe("status", root)
        assert r["rc"] == 0 and r["lines"] == n + 1, r
        best = r if best is None or r["wall"] < best["wall"] else best
    table = markdown_table(("run directories", "files", "seconds (whole command)", "CPU seconds", "peak RSS MB"),
                           [(n, files, f"{best['wall']:.2f}", f"{best['cpu']:.2f}", f"{best['rss_mb']:.0f}")])
    return (
        f"`insr-hpc status DIR` over {n} run directories: copies of one real tiny advection run "
        "(2 steps; run.json, spec.json and its store of 16 arrays, TensorBoard logs left out), "
        "page cache warm, best of 2, in a fresh interpreter (start and imports included). Before: "
        "59 s and 286 MB (zarr group opened per store, torch imported through run.py).\n\n"
        f"{table}\n\nLoad average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(the machine is shared: figures are upper bounds)."
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", default="100,1000,10000")
    p.add_argument("--status-runs", type=int, default=2000)
    p.add_argument("--part", choices=("expand", "status", "all"), default="all")
    add_write_option(p)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="insr-expand-")
    try:
        if args.part in ("expand", "all"):
            body = bench_expand([int(x) for x in args.points.split(",")], work)
            command = f"python benchmarks/sweep_expand.py --part expand --points {args.points}"
            publish(args.write, "Sweep expansion at scale", command, body)
        if args.part in ("status", "all"):
            body = bench_status(args.status_runs, work)
            command = f"python benchmarks/sweep_expand.py --part status --status-runs {args.status_runs}"
            publish(args.write, "insr-hpc status over many runs", command, body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
