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
