"""Ray backend on a real local Ray runtime: a sweep of 4 runs, one Ray task each."""

from __future__ import annotations

import os

import numpy as np
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
