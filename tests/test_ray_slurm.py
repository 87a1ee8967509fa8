"""Ray inside a Slurm allocation: ``slurm/ray-cluster.sbatch`` on the dev cluster's two
nodes: the head on the first, one worker joining it from the second (``srun``), the
sweep on both, Ray stopped afterwards."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from conftest import CONFIG, REPO, tiny

from insr_hpc.analysis.status import find_runs
from insr_hpc.launch.ray_cluster import RayPorts, processes_using
from insr_hpc.run import read_state


def test_ray_cluster_template_runs_a_sweep_and_stops_ray(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    cmd = ["sbatch", "--wait", "--parsable", "--nodes=2", "--cpus-per-task=1", "--time=15", f"--output={out}",
           f"--chdir={tmp_path}", os.path.join(REPO, "slurm", "ray-cluster.sbatch"),
           CONFIG, *tiny(str(tmp_path / "runs"), "launch.ray.num_cpus=1")]
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
    # the run ran on the head node: its Slurm name, or the machine's host name where the
    # dev cluster's node names are not host names (several nodes on one machine)
    assert {s["backend"] for s in states} == {"ray"}
    assert {s["host"] for s in states} <= {joined.group(2), joined.group(3), socket.gethostname()}, (states, joined.groups())
    assert all(s["summary"]["steps_done"] == 3 for s in states)
    assert f"ray cluster: stopped (0 Ray process(es) left under {temp_dir})" in log
    assert processes_using(temp_dir) == []  # no raylet, gcs_server or worker of that job survives it
