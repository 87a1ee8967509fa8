"""Helpers for tests on the dev Slurm cluster: submit, wait for steps, interrupt, release a
requeued job, assert that nothing was lost or done twice.

Shared by tests/test_slurm_preempt.py (every way Slurm interrupts a job) and the other
Slurm tests, so that each test says only what it does differently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from conftest import CONFIG, tiny, wait_for

from insr_hpc.cli import main
from insr_hpc.launch.slurm import squeue_states
from insr_hpc.run import read_state
from insr_hpc.store import StepStore

STEPS = 16  # a window wide enough to interrupt mid-run on a quiet machine too (8 steps of ~0.3 s were once all
# committed between two polls)
# Slow enough per step (~0.5 s) to be caught between steps, small enough for CI.
WORK = ("sampling.interior=512", "optim.max_iters=60")


def overrides(root: str, *extra: str, steps: int = STEPS) -> list[str]:
    return tiny(root, *WORK, *extra, steps=steps)


def scontrol_job(job_id: str) -> dict[str, str]:
    """``scontrol show job -o`` as key → value ({} once Slurm has forgotten the job)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def partitions() -> set[str]:
    out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30).stdout
    return set(out.split())


def require_partitions(*names: str) -> None:
    """Skip (fail under INSR_REQUIRE_SLURM=1) on a cluster started before these partitions existed."""
    missing = [n for n in names if n not in partitions()]
    if missing:
        msg = f"the Slurm cluster has no partition(s) {missing}; restart it with slurm/dev-cluster.sh"
        if os.environ.get("INSR_REQUIRE_SLURM") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def submit_no_wait(root: str, *extra: str, steps: int = STEPS) -> str:
    """Queue the one-run sweep on Slurm; return its run directory."""
    assert main(["submit", CONFIG, *overrides(root, *extra, steps=steps), "--backend", "slurm", "--no-wait"]) == 0
    return os.path.join(root, "advection", "r000")


def committed_steps(run_dir: str) -> int:
    path = os.path.join(run_dir, "store.zarr")
    return StepStore.open(path).completed_steps() if StepStore.exists(path) else 0


def wait_mid_run(run_dir: str, steps: int = 2, timeout: float = 180) -> tuple[str, int]:
    """Wait until the job has committed ``steps`` steps (and no more than all); return (job id, steps)."""
    n = wait_for(lambda: (committed_steps(run_dir) >= steps) and committed_steps(run_dir), timeout,
                 f"the Slurm job to commit {steps} steps")
    assert n < STEPS + 1, "the run finished before it could be interrupted"
    return read_state(run_dir)["job_id"], n


def wait_requeued_and_release(job_id: str, run_dir: str, capsys, *, time_limit_min: int | None = None) -> dict:
    """Wait until Slurm holds the requeued job, check run.json and ``insr-hpc status``
    say pending/preempted, then release it. Returns run.json as seen while held."""
    seen: list[str] = []

    def requeued():
        job = scontrol_job(job_id)
        state = f"{job.get('JobState')}/Restarts={job.get('Restarts')}/Reason={job.get('Reason')}"
        if not seen or seen[-1] != state:
            seen.append(state)  # the states passed through, for the failure message
        return job.get("JobState") == "PENDING" and int(job.get("Restarts", "0")) >= 1

    # squeue says PENDING while scontrol still says COMPLETING (old instance cleaning up);
    # slurmd rejects a credential issued in the same second as the revoked one, so release
    # only once scontrol says PENDING (the old instance is gone), a couple of seconds later.
    try:
        wait_for(requeued, 120, "the job to be requeued (scontrol: PENDING, Restarts >= 1)")
    except BaseException:
        print(f"job {job_id} went through: {' -> '.join(seen[-12:])}")
        raise
    time.sleep(2)
    assert squeue_states([job_id]).get(job_id) == "PENDING"
    held = read_state(run_dir)
    assert held["state"] == "pending", held
    assert str(held.get("reason", "")).startswith("preempted"), held
    capsys.readouterr()
    assert main(["status", os.path.dirname(run_dir)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("r000"))
    assert row.split()[1] == "pending" and "(PENDING)" in row and "preempted" in row, row
    if time_limit_min:  # the requeued instance would hit the same short limit again
        subprocess.run(["scontrol", "update", f"JobId={job_id}", f"TimeLimit={time_limit_min}"], check=True, timeout=30)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=30)
    return held


def wait_done(run_dir: str, timeout: float = 240) -> None:
    def done():
        st = read_state(run_dir)
        if st.get("state") in ("failed", "cancelled", "suspect"):
            pytest.fail(f"run ended {st.get('state')}: {st.get('reason')}")
        return st.get("state") == "done"

    wait_for(done, timeout, "the requeued job to finish")


def reference_weights(root: str, steps: int = STEPS) -> xr.Dataset:
    """The same run uninterrupted, in this process."""
    assert main(["run", CONFIG, *overrides(root, steps=steps)]) == 0
    return xr.open_zarr(os.path.join(root, "advection", "r000", "store.zarr"))


def start_reference(root: str, steps: int = STEPS) -> subprocess.Popen:
    """The uninterrupted run in a background process (overlapping a Slurm job's wait);
    :func:`finish_reference` collects it."""
    return subprocess.Popen([sys.executable, "-m", "insr_hpc", "run", CONFIG, *overrides(root, steps=steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_reference(proc: subprocess.Popen, root: str, timeout: float = 600) -> xr.Dataset:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return xr.open_zarr(os.path.join(root, "advection", "r000", "store.zarr"))


def assert_resumed_exactly(run_dir: str, ref: xr.Dataset, steps: int = STEPS) -> None:
    """Every step committed once, weights as uninterrupted, every step logged once to TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ds = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    assert ds["committed"].values.tolist() == [1] * (steps + 1)
    np.testing.assert_allclose(ds["weights"].values, ref["weights"].values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ds["field"].values, ref["field"].values, rtol=0, atol=1e-5)
    acc = EventAccumulator(os.path.join(run_dir, "tb", "steps"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("error/rel_l2")] == list(range(steps + 1))


def job_log(run_dir: str) -> str:
    folder = os.path.join(os.path.dirname(run_dir), "slurm")
    return "".join(open(os.path.join(folder, f), encoding="utf-8", errors="replace").read()
                   for f in sorted(os.listdir(folder)) if f.endswith("_log.out"))
