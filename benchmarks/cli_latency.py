"""How long ``insr-hpc`` takes to answer: before and after the lazy registries (issue 21).

    python benchmarks/cli_latency.py [--before /tmp/cli-before] [--repeat 5] [--write]

``before`` is a checkout of commit 6acbc2e (made with ``git worktree add --detach
/tmp/cli-before 6acbc2e`` when missing); ``after`` is this tree. Each command runs in a
fresh interpreter (``python -m insr_hpc …``, PYTHONPATH set to the tree) ``--repeat``
times; the table gives the median CPU seconds (the children's user + system time, from
``resource.getrusage(RUSAGE_CHILDREN)`` deltas: robust to a loaded machine) and the
median wall seconds. Commands: ``--help``; ``--version`` (after only); an unknown-key
error; ``submit --dry-run`` of a 100-point sweep (configs/advection.yaml with
``sweep.grid.seed=[0,…,99]``); ``status`` of a 3-run sweep directory (admitted, not run).
With ``--write`` the table replaces its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.report import markdown_table, write_section  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEFORE_COMMIT = "6acbc2e"
SECTION = "insr-hpc start-up: before and after lazy registries"


def ensure_before(path: str) -> str:
    if not os.path.isdir(path):
        subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", path, BEFORE_COMMIT], check=True,
                       capture_output=True)
    return path


def timed(tree: str, args: list[str], repeat: int) -> tuple[float, float, int]:
    """Median CPU seconds, median wall seconds and the exit code of ``insr-hpc ARGS`` in ``tree``."""
    env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
    cpus, walls, rc = [], [], None
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "insr_hpc", *args], cwd=tree, env=env, capture_output=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        rc = res.returncode
    return statistics.median(cpus), statistics.median(walls), rc


def sweep_dir(root: str) -> str:
    """A 3-run advection sweep, admitted (spec.json, run.json pending) by this tree."""
    code = ("from insr_hpc.plan import plan_runs\nfrom insr_hpc.run import admit\n"
            f"p = plan_runs('configs/advection.yaml', ['output.root={root}', 'sweep.grid.seed=[0,1,2]'])\n"
            "admit(p.specs, 'local'); print(p.sweep_dir)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                         capture_output=True, text=True, check=True)
    return res.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default="/tmp/cli-before", help=f"a checkout of {BEFORE_COMMIT} (made when missing)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--write", action="store_true", help="replace the section of docs/benchmarks.md")
    args = p.parse_args(argv)
    before = ensure_before(args.before)
    with tempfile.TemporaryDirectory(prefix="cli-latency-") as tmp:
        runs = sweep_dir(os.path.join(tmp, "runs"))
        seeds = "[" + ",".join(map(str, range(100))) + "]"
        commands = [
            ("`--help`", ["--help"], True),
            ("`--version`", ["--version"], False),
            ("unknown key (`optim.lrr=1`)", ["submit", "configs/advection.yaml", "--dry-run", "optim.lrr=1",
                                            f"output.root={tmp}/out"], True),
            ("`submit --dry-run`, 100 points", ["submit", "configs/advection.yaml", "--dry-run",
                                                f"sweep.grid.seed={seeds}", f"output.root={tmp}/out"], True),
            ("`status` of 3 runs", ["status", runs], True),
        ]
        rows = []
        for label, cmd, has_before in commands:
            b = timed(before, cmd, args.repeat) if has_before else None
            a = timed(REPO, cmd, args.repeat)
            rows.append([label, *(("–", "–") if b is None else (f"{b[0]:.2f}", f"{b[1]:.2f}")),
                         f"{a[0]:.2f}", f"{a[1]:.2f}", a[2]])
            print(rows[-1], flush=True)
    body = markdown_table(["command", f"before ({BEFORE_COMMIT}) CPU s", "before wall s", "after CPU s",
                           "after wall s", "exit"], rows)
    body += ("\n\nCPU seconds: the child process's user + system time (median of "
             f"{args.repeat}); wall seconds include waiting for a core on a shared machine. Before, a config error "
             "and a dry run imported torch (the catalog imported every case, integrator, optimiser and model); "
             "after, none of these commands does (tests/test_cli_fast.py).")
    command = f"python benchmarks/cli_latency.py --repeat {args.repeat}" + (" --write" if args.write else "")
    if args.write:
        write_section(SECTION, command, body)
    else:
        print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
