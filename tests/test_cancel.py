"""`insr-hpc cancel` through the engines: scancel on Slurm, ray.cancel on Ray; a
cancelled Slurm run resumes on the next submit without redoing its committed steps."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import xarray as xr
from conftest import CONFIG, REPO, tiny, wait_for

from insr_hpc.cli import main
from insr_hpc.launch.slurm import squeue_states
from insr_hpc.run import read_state
from insr_hpc.store import StepStore

WORK = ("sampling.interior=512", "optim.max_iters=60")


def _committed(run_dir: str) -> int:
    path = os.path.join(run_dir, "store.zarr")
    return StepStore.open(path).completed_steps() if StepStore.exists(path) else 0


def test_cancel_slurm_run_then_resubmit_resumes(slurm_cluster, tmp_path):
    overrides = tiny(str(tmp_path), *WORK, steps=8)
    assert main(["submit", CONFIG, *overrides, "--backend", "slurm", "--no-wait"]) == 0
    run_dir = os.path.join(tmp_path, "advection", "r000")
    wait_for(lambda: _committed(run_dir) >= 1, 120, "the job to commit a step")
    job_id = read_state(run_dir)["job_id"]
    assert main(["cancel", os.path.join(tmp_path, "advection")]) == 0
    assert read_state(run_dir)["state"] == "cancelled"
    wait_for(lambda: squeue_states([job_id]).get(job_id) in (None, "CANCELLED"), 60, "scancel to end the job")
    kept = _committed(run_dir)
    assert 1 <= kept < 9
    seconds_before = xr.open_zarr(os.path.join(run_dir, "store.zarr"))["seconds"].values[:kept]

    assert main(["submit", CONFIG, *overrides, "--backend", "slurm"]) == 0  # resumes the partial run
    state = read_state(run_dir)
    assert state["state"] == "done" and state["job_id"] != job_id
    ds = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    assert ds["committed"].values.tolist() == [1] * 9
    np.testing.assert_array_equal(ds["seconds"].values[:kept], seconds_before)  # not recomputed


def test_cancel_ray_run_through_its_driver(tmp_path):
    overrides = tiny(str(tmp_path), *WORK, steps=40)
    driver = subprocess.Popen(
        [sys.executable, "-m", "insr_hpc", "submit", CONFIG, *overrides, "--backend", "ray"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        run_dir = os.path.join(tmp_path, "advection", "r000")
        wait_for(lambda: _committed(run_dir) >= 1, 120, "the Ray task to commit a step")
        assert main(["cancel", os.path.join(tmp_path, "advection")]) == 0
        out, _ = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, out  # the submit reports the run as not done
    state = read_state(run_dir)
    assert state["state"] == "cancelled" and "ray.cancel" in state["reason"]
    assert _committed(run_dir) < 41


def test_status_shows_a_slurm_job_cancelled_before_it_started_as_failed(slurm_cluster, tmp_path, capsys):
    # held by --begin, the job cannot start; a plain scancel (not insr-hpc cancel) ends it
    # before anything could write run.json, which still says pending
    overrides = tiny(str(tmp_path), *WORK, "launch.slurm.extra_sbatch=[begin=now+3600]")
    assert main(["submit", CONFIG, *overrides, "--backend", "slurm", "--no-wait"]) == 0
    run_dir = os.path.join(tmp_path, "advection", "r000")
    job_id = read_state(run_dir)["job_id"]
    assert squeue_states([job_id]).get(job_id) == "PENDING"
    subprocess.run(["scancel", job_id], check=True, timeout=30)
    wait_for(lambda: squeue_states([job_id]).get(job_id) in (None, "CANCELLED"), 60, "scancel to end the job")
    assert read_state(run_dir)["state"] == "pending"  # nobody recorded it
    capsys.readouterr()
    assert main(["status", os.path.join(tmp_path, "advection")]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("r000"))
    assert row.split()[1] == "failed" and f"slurm job {job_id}" in row and "without recording an end" in row, row
    assert read_state(run_dir)["state"] == "pending"  # status only reads


def test_cancel_keeps_the_outcome_of_a_run_that_ended_meanwhile(slurm_cluster, tmp_path):
    """``cancel`` reads every run's state, scancels, then records ``cancelled``: a job
    that finished in between keeps its outcome, and the other runs are still cancelled.
    (Seen in a 2 000-run sweep: a run turning ``done`` there raised StateError, which
    aborted the command with the later runs' jobs scancelled and their run.json still
    ``pending``.)"""
    from insr_hpc.config.schema import LaunchConfig
    from insr_hpc.launch import BACKENDS
    from insr_hpc.rundir import RunDir

    snapshot, ends = [], ["done", None, "suspect", None]
    for i, end in enumerate(ends):
        rd = RunDir(str(tmp_path / f"r{i}"))
        rd.update(run_id=f"r{i}", backend="slurm", job_id=f"99999{i}", state="pending")
        rd.transition("running")
        snapshot.append(dict(rd.read_state(), run_dir=rd.path))  # what cancel read
        if end:
            rd.transition(end)  # the job ends while cancel is at work
    cancelled = BACKENDS.get("slurm")(LaunchConfig()).cancel(snapshot)
    assert cancelled == ["r1", "r3"]
    assert [read_state(str(tmp_path / f"r{i}"))["state"] for i in range(4)] == ["done", "cancelled", "suspect", "cancelled"]
