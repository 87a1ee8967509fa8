"""Sweeps larger than one job array on the dev cluster: split at MaxArraySize, the arrays
chained so that array_parallelism caps the whole sweep; cancel and resubmit of a split
sweep; the split plan itself."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
from _slurm import scontrol_job
from conftest import CONFIG, tiny, wait_for

from insr_hpc.analysis.status import find_runs
from insr_hpc.cli import main
from insr_hpc.launch.slurm import ArrayPlan, cluster_max_array_size, compress_job_ids, plan_arrays
from insr_hpc.run import read_state

TINY = ("time.steps=1", "optim.max_iters=5", "optim.init_max_iters=5", "network.width=4", "output.resolution=8")


def test_plan_arrays_caps_the_whole_sweep():
    assert plan_arrays(40, 16, 2) == [ArrayPlan(0, 16, 2, None), ArrayPlan(16, 32, 2, 0), ArrayPlan(32, 40, 2, 1)]
    # parallelism above the array size: lanes of chained arrays, shares summing to ≤ 64
    plans = plan_arrays(2000, 16, 64)
    assert len(plans) == 125 and sum(p.stop - p.start for p in plans) == 2000
    assert [p.throttle for p in plans[:4]] == [16, 16, 16, 16] and plans[4].after == 0
    running_at_once = sum(p.throttle for p in plans if p.after is None)
    assert running_at_once == 64
    assert plan_arrays(5, 1001, 64) == [ArrayPlan(0, 5, 5, None)]
    assert compress_job_ids(["7_0", "7_1", "7_2", "7_5", "9", "8_3"]) == ["7_[0-2,5]", "8_[3]", "9"]


def _sweep_tasks(array_ids: set[str]) -> list[tuple[str, str]]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(sorted(array_ids))],
                         capture_output=True, text=True, timeout=30).stdout
    return [tuple(line.split()) for line in out.splitlines() if len(line.split()) == 2]


def test_sweep_split_into_chained_arrays_respects_parallelism(slurm_cluster, tmp_path):
    """5 runs, arrays of at most 2 (launch.slurm.max_array_size below the cluster's
    MaxArraySize), at most 2 running at once over the whole sweep."""
    overrides = tiny(str(tmp_path), *TINY, "sweep.grid.seed=[0,1,2,3,4]", "launch.slurm.max_array_size=2",
                     "launch.slurm.array_parallelism=2")
    seen: list[int] = []
    ids: set[str] = set()
    stop = threading.Event()

    def sample():  # how many of the sweep's tasks Slurm runs at once
        while not stop.is_set():
            runs = find_runs(os.path.join(tmp_path, "advection")) if os.path.isdir(tmp_path / "advection") else []
            ids.update(str(read_state(r).get("job_id", "")).split("_")[0] for r in runs if read_state(r).get("job_id"))
            if ids:
                seen.append(sum(1 for _, st in _sweep_tasks(ids) if st == "RUNNING"))
            time.sleep(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert main(["submit", CONFIG, *overrides, "--backend", "slurm"]) == 0
    finally:
        stop.set()
        sampler.join(timeout=10)
    states = [read_state(r) for r in find_runs(os.path.join(tmp_path, "advection"))]
    assert [s["state"] for s in states] == ["done"] * 5
    arrays: dict[str, list[str]] = {}
    for s in states:  # a 1-run chunk is a plain job (submitit), not an array
        arrays.setdefault(s["job_id"].split("_")[0], []).append(s["job_id"])
    heads = sorted(arrays, key=int)
    assert [sorted(arrays[h]) for h in heads] == [[f"{heads[0]}_{i}" for i in range(2)],
                                                   [f"{heads[1]}_{i}" for i in range(2)], [heads[2]]]
    for prev, nxt in zip(heads, heads[1:]):  # each array started only after the one before it ended
        started = scontrol_job(arrays[nxt][0])["StartTime"]
        ended = max(scontrol_job(j)["EndTime"] for j in arrays[prev])
        assert started >= ended, (prev, nxt, started, ended)
    assert seen and max(seen) <= 2, seen


def test_sweep_above_max_array_size_is_split_cancelled_and_resubmitted(slurm_cluster, tmp_path, capsys):
    size = cluster_max_array_size()
    if size > 64:
        pytest.skip(f"the cluster's MaxArraySize is {size}: slurm/dev-cluster.sh sets 16 (INSR_SLURM_MAX_ARRAY_SIZE)")
    n = size + 2
    seeds = ",".join(str(i) for i in range(n))
    overrides = tiny(str(tmp_path), *TINY, f"sweep.grid.seed=[{seeds}]", "launch.slurm.array_parallelism=1")
    assert main(["submit", CONFIG, *overrides, "--backend", "slurm", "--no-wait"]) == 0
    sweep = os.path.join(tmp_path, "advection")
    runs = find_runs(sweep)
    job_ids = [read_state(r)["job_id"] for r in runs]
    heads = sorted({j.split("_")[0] for j in job_ids}, key=int)
    assert len(heads) == 2  # MaxArraySize tasks, then the rest
    assert sorted(j for j in job_ids if j.startswith(heads[1] + "_")) == [f"{heads[1]}_0", f"{heads[1]}_1"]
    assert scontrol_job(f"{heads[1]}_0").get("Dependency", "").startswith(f"afterany:{heads[0]}")
    # Let the first run finish, then cancel the rest of the sweep.
    wait_for(lambda: read_state(runs[0]).get("state") == "done", 120, "the first run to finish")
    capsys.readouterr()
    assert main(["cancel", sweep]) == 0
    out = capsys.readouterr().out
    states = [read_state(r)["state"] for r in runs]
    assert states[0] == "done" and set(states[1:]) <= {"cancelled", "done"} and "cancelled" in states
    n_cancelled = states.count("cancelled")
    assert f"cancelled {n_cancelled} run(s)" in out
    wait_for(lambda: not [t for t in _sweep_tasks(set(heads)) if t[1] in ("RUNNING", "PENDING")], 60,
             "scancel to end the arrays")
    # Resubmitting runs only what is not done, as a new split plan.
    assert main(["submit", CONFIG, *overrides, "--backend", "slurm", "--no-wait"]) == 0
    assert f"{n - n_cancelled} run(s) already done, skipped" in capsys.readouterr().out
    new_ids = [read_state(r)["job_id"] for r in runs]
    assert [a == b for a, b in zip(job_ids, new_ids)] == [s == "done" for s in states]
    assert main(["cancel", sweep]) == 0  # do not leave the resubmitted sweep running
