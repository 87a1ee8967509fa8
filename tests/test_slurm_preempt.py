"""Preemption on a real Slurm cluster: USR2 mid-run → checkpoint + requeue → the requeued
job resumes from the store; every step committed exactly once, weights as uninterrupted."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import xarray as xr
from conftest import CONFIG, tiny, wait_for
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insr_hpc.cli import main
from insr_hpc.launch.slurm import squeue_states
from insr_hpc.run import read_state
from insr_hpc.store import StepStore

STEPS = 8
# Slow enough per step (~0.5 s) to be caught between steps, small enough for CI.
WORK = ("sampling.interior=512", "optim.max_iters=60")


def test_preempted_job_requeues_and_matches_uninterrupted(slurm_cluster, tmp_path):
    ref_root, pre_root = str(tmp_path / "ref"), str(tmp_path / "pre")
    assert main(["submit", CONFIG, *tiny(pre_root, *WORK, steps=STEPS), "--backend", "slurm", "--no-wait"]) == 0
    run_dir = os.path.join(pre_root, "advection", "r000")
    store_path = os.path.join(run_dir, "store.zarr")

    def mid_run():
        if not StepStore.exists(store_path):
            return 0
        n = StepStore.open(store_path).completed_steps()
        return n if n >= 2 else 0

    steps_before = wait_for(mid_run, 120, "the Slurm job to commit 2 steps")
    job_id = read_state(run_dir)["job_id"]
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)

    # submitit's handler checkpoints and requeues; Slurm holds the requeued job until its
    # begin time (~2 min): release it now, as an operator (or the next slot) would.
    wait_for(lambda: squeue_states([job_id]).get(job_id) == "PENDING", 60, "the job to be requeued")
    # squeue says PENDING while scontrol still says COMPLETING (old instance cleaning up);
    # slurmd rejects a credential issued in the same second as the revoked one, so release
    # only once the old instance is gone, a couple of seconds later.
    wait_for(lambda: "JobState=PENDING" in _scontrol_job(job_id), 60, "the old instance to finish completing")
    time.sleep(2)
    assert read_state(run_dir)["state"] == "pending"  # not recorded as failed
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=30)
    wait_for(lambda: read_state(run_dir).get("state") == "done", 180, "the requeued job to finish")

    # The same run without interruption, in this process.
    assert main(["run", CONFIG, *tiny(ref_root, *WORK, steps=STEPS)]) == 0
    pre = xr.open_zarr(store_path)
    ref = xr.open_zarr(os.path.join(ref_root, "advection", "r000", "store.zarr"))
    assert steps_before < STEPS + 1
    assert pre["committed"].values.tolist() == [1] * (STEPS + 1)
    np.testing.assert_allclose(pre["weights"].values, ref["weights"].values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(pre["field"].values, ref["field"].values, rtol=0, atol=1e-5)

    log = open(next(p for p in _logs(pre_root)), encoding="utf-8").read()
    assert "Requeued job" in log  # it really went through submitit's preemption path

    # Every step logged exactly once to TensorBoard, across both attempts.
    acc = EventAccumulator(os.path.join(run_dir, "tb", "steps"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("error/rel_l2")]
    assert steps == list(range(STEPS + 1))


def _scontrol_job(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout


def _logs(root: str):
    folder = os.path.join(root, "advection", "slurm")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith("_log.out"))
