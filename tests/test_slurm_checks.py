"""The Slurm backend refuses, before anything is written, what cannot run here: no Slurm
commands, a partition that does not exist, GPUs on a cluster without any."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import CONFIG, REPO, tiny

from insr_hpc.cli import main


def _refused(capsys, tmp_path, *extra: str) -> str:
    assert main(["submit", CONFIG, *tiny(str(tmp_path / "out"), *extra), "--backend", "slurm"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("insr-hpc: error: "), err
    assert not os.path.exists(tmp_path / "out"), os.listdir(tmp_path / "out")
    return err


def test_no_slurm_commands_is_one_line_and_creates_nothing(tmp_path):
    env = dict(os.environ, PATH="/nonexistent", PYTHONPATH=REPO)  # no sbatch, squeue, …
    out = subprocess.run([sys.executable, "-m", "insr_hpc", "submit", CONFIG, *tiny(str(tmp_path / "out")),
                          "--backend", "slurm"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        "insr-hpc: error: launch.backend: 'slurm' needs sbatch, squeue, scontrol, sinfo on PATH (run on a Slurm "
        "login node, or install the client: apt-get install slurm-client; a test cluster: slurm/dev-cluster.sh start)"
    )
    assert not os.path.exists(tmp_path / "out")


def test_unknown_partition_lists_the_existing_ones(slurm_cluster, tmp_path, capsys):
    names = sorted(set(subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True).stdout.split()))
    err = _refused(capsys, tmp_path, "launch.slurm.partition=gpux")
    assert err == f"insr-hpc: error: launch.slurm.partition: no partition 'gpux' on this cluster (partitions: {', '.join(names)})"


def test_gpus_on_a_cluster_without_gpus(slurm_cluster, tmp_path, capsys):
    gres = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True).stdout.split()
    assert gres and all("gpu" not in g for g in gres), f"the dev cluster has no GPUs configured: {gres}"
    err = _refused(capsys, tmp_path, "launch.slurm.gpus_per_node=2")
    assert "launch.slurm.gpus_per_node: 2 requested but the nodes of this cluster have no GPUs" in err
    err = _refused(capsys, tmp_path, "launch.slurm.gpus_per_node=1", "launch.slurm.partition=debug")
    assert "nodes of partition 'debug' have no GPUs" in err
