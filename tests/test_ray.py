"""Ray backend on a real local Ray runtime: a sweep of 4 runs, one Ray task each."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import CONFIG, tiny

from insr_hpc.analysis.status import find_runs
from insr_hpc.cli import main
from insr_hpc.run import read_state


def test_sweep_of_four_runs_on_local_ray_runtime(tmp_path, capsys):
    overrides = tiny(str(tmp_path), "sweep.grid.seed=[0,1,2,3]", "launch.ray.num_cpus=1")
    assert main(["submit", CONFIG, *overrides, "--backend", "ray"]) == 0
    sweep = os.path.join(tmp_path, "advection")
    runs = find_runs(sweep)
    states = [read_state(r) for r in runs]
    assert [s["state"] for s in states] == ["done"] * 4
    assert {s["backend"] for s in states} == {"ray"}
    assert len({s["job_id"] for s in states}) == 4  # one Ray task per run
    finals = []
    for run, st in zip(runs, states, strict=True):
        ds = xr.open_zarr(os.path.join(run, "store.zarr"))
        assert ds["committed"].values.tolist() == [1, 1, 1]
        assert ds.attrs["seed"] == st["overrides"]["seed"]
        finals.append(ds["weights"].values[-1])
    assert all(not np.allclose(finals[0], w) for w in finals[1:])
    capsys.readouterr()
    assert main(["status", sweep]) == 0
    assert capsys.readouterr().out.count(" ray/") == 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA for the run to fail")
def test_failing_run_is_retried_by_ray_then_reported(tmp_path):
    # device=cuda passes config validation but fails in the task on a CPU-only machine.
    overrides = tiny(str(tmp_path), "device=cuda", "launch.max_retries=2")
    assert main(["submit", CONFIG, *overrides, "--backend", "ray"]) == 1
    state = read_state(os.path.join(tmp_path, "advection", "r000"))
    assert state["state"] == "failed"
    assert state["attempts"] == 3  # the first try and max_retries retries
    assert "CUDA is not available" in state["reason"]


def test_packed_sweep_on_ray_runs_two_packs_of_two(tmp_path, capsys):
    overrides = tiny(str(tmp_path), "sweep.grid.seed=[0,1,2,3]", "launch.ray.num_cpus=1", "launch.pack=2")
    assert main(["submit", CONFIG, *overrides, "--backend", "ray"]) == 0
    runs = find_runs(os.path.join(tmp_path, "advection"))
    states = [read_state(r) for r in runs]
    assert [s["state"] for s in states] == ["done"] * 4
    assert len({s["job_id"] for s in states}) == 2 and len({s["pid"] for s in states}) == 2  # a task per pack
    assert [len(s["pack"]) for s in states] == [2] * 4
    finals = []
    for run in runs:
        ds = xr.open_zarr(os.path.join(run, "store.zarr"))
        assert ds["committed"].values.tolist() == [1, 1, 1] and np.isfinite(ds["rel_l2"].values).all()
        finals.append(ds["weights"].values[-1])
    assert all(not np.allclose(finals[0], w) for w in finals[1:])  # each run its own seed
    assert capsys.readouterr().out.count("done (ray task") == 4


def test_killed_ray_worker_is_retried_and_the_run_resumes_from_its_store(tmp_path):
    """SIGKILL of the Ray worker computing a run (what a node's death does to it): Ray
    retries the task, the retry resumes after the last committed step, the result equals
    an uninterrupted run's, and ``status`` says what happened to the first attempt."""
    import signal
    import subprocess
    import sys

    from _small import REPO, cli
    from conftest import wait_for

    from insr_hpc.rundir import RunDir

    steps = 16
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    killed = tiny(str(tmp_path / "k"), "launch.ray.num_cpus=1", "launch.max_retries=1", steps=steps)
    proc = subprocess.Popen([sys.executable, "-m", "insr_hpc", "submit", CONFIG, *killed, "--backend", "ray"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    rd = RunDir(str(tmp_path / "k" / "advection" / "r000"))
    try:
        def mid_run():
            st = rd.read_state()
            return st if st.get("state") == "running" and 2 <= rd.committed_steps() < steps - 3 else None

        first = wait_for(mid_run, 180, "the run to commit two steps on Ray", interval=0.02)
        at_kill = rd.committed_steps()
        os.kill(int(first["pid"]), signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    state = rd.read_state()
    assert state["state"] == "done" and state["attempts"] == 2 and state["pid"] != first["pid"], state
    (why,) = state["earlier_attempts"]
    assert why.startswith(f"attempt 1 ended without recording an outcome (its process {first['pid']} on "), why
    resumed_after = int(why.rsplit("after step ", 1)[1])
    assert at_kill <= resumed_after < steps  # nothing committed was recomputed from scratch
    status = cli("status", str(tmp_path / "k" / "advection"))
    assert status.returncode == 0 and "done" in status.stdout and "attempt 1 ended without recording an outcome" in status.stdout

    ref = cli("submit", CONFIG, *tiny(str(tmp_path / "u"), steps=steps), "--backend", "local")
    assert ref.returncode == 0, ref.stderr
    a = xr.open_zarr(os.path.join(rd.path, "store.zarr"))
    b = xr.open_zarr(str(tmp_path / "u" / "advection" / "r000" / "store.zarr"))
    assert int(a.committed.sum()) == steps + 1
    np.testing.assert_array_equal(a.weights.values, b.weights.values)  # resumed = uninterrupted, bitwise
