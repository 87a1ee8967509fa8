"""Ray inside a Slurm allocation: ``slurm/ray-cluster.sbatch`` on the dev cluster's two
nodes: the head on the first, one worker joining it from the second (``srun``), a
data-parallel run whose two ranks are a gang spread over both Ray nodes, Ray stopped
afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import xarray as xr
from _small import cli
from conftest import CONFIG, REPO, tiny

from insr_hpc.analysis.status import find_runs
from insr_hpc.launch.ray_cluster import RayPorts, processes_using
from insr_hpc.run import read_state


RUN = ("sampling.interior=128", "seed=0")  # a batch that two ranks split evenly


def test_ray_cluster_template_runs_a_sweep_and_stops_ray(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    cmd = ["sbatch", "--wait", "--parsable", "--nodes=2", "--cpus-per-task=1", "--time=15", f"--output={out}",
           f"--chdir={tmp_path}", os.path.join(REPO, "slurm", "ray-cluster.sbatch"),
           CONFIG, *tiny(str(tmp_path / "runs"), *RUN, "launch.ddp.nodes=2", "launch.ray.num_cpus=1")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHON=sys.executable))
    log = out.read_text() if out.exists() else ""
    assert res.returncode == 0, res.stdout + res.stderr + log[-4000:]
    job = int(res.stdout.strip().split(";")[0])
    ports, temp_dir = RayPorts.for_job(job), f"/tmp/ray-insr-{job}"
    assert f"ray cluster: job {job}, head " in log and f":{ports.gcs}, dashboard {ports.dashboard}), 1 worker node(s)" in log
    joined = re.search(r"ray cluster: (\d+) node\(s\) joined: (\S+), (\S+)", log)
    assert joined and joined.group(1) == "2", log[-4000:]  # the head node and the worker, by their Slurm names
    assert re.search(rf"ray cluster: insr-hpc submit .* launch\.ray\.address=\S+:{ports.gcs} --backend ray", log)
    runs = find_runs(str(tmp_path / "runs" / "advection"))
    states = [read_state(r) for r in runs]
    assert [s["state"] for s in states] == ["done"], states
    # one data-parallel run: two ranks of one CPU each, and each Ray node offers one CPU
    # (--cpus-per-task=1), so the PACK gang had to put one rank on each node
    (state,) = states
    assert state["backend"] == "ray" and state["world_size"] == 2 and state["ray_gang"] == "2 ranks, PACK", state
    assert state["summary"]["steps_done"] == 3
    ref = cli("run", CONFIG, *tiny(str(tmp_path / "ref"), *RUN))  # one process, no Ray
    assert ref.returncode == 0, ref.stderr
    two = xr.open_zarr(os.path.join(runs[0], "store.zarr")).weights.values
    one = xr.open_zarr(str(tmp_path / "ref" / "advection" / "r000" / "store.zarr")).weights.values
    assert np.abs(one[-1] - one[0]).max() > 1e-3  # training moved the weights
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5)  # 2 ranks on 2 nodes = 1 process
    assert f"ray cluster: stopped (0 Ray process(es) left under {temp_dir})" in log
    assert processes_using(temp_dir) == []  # no raylet, gcs_server or worker of that job survives it
