"""Slurm backend on a real cluster (the dev cluster in CI): job arrays, status, sbatch text."""

from __future__ import annotations

import glob
import os

import numpy as np
import xarray as xr
from conftest import CONFIG, tiny

from insr_hpc.analysis.status import find_runs
from insr_hpc.cli import main
from insr_hpc.config.schema import LaunchConfig, SlurmConfig
from insr_hpc.launch.slurm import sbatch_text
from insr_hpc.run import read_state

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "sbatch_array.txt")


def _golden_config() -> LaunchConfig:
    launch = LaunchConfig()
    launch.slurm = SlurmConfig(
        partition="gpu", time_min=120, cpus_per_task=4, gpus_per_node=2, mem_gb=16, account="proj1", qos="normal",
        array_parallelism=8, extra_sbatch=["constraint=a100", "--exclusive"], setup=["module load cuda/12.4"],
    )
    launch.ddp.nproc_per_node = 2  # one task per GPU
    return launch


def test_sbatch_text_matches_golden_file():
    text = sbatch_text(_golden_config(), "/scratch/sweep/slurm", n_runs=12)
    if os.environ.get("INSR_UPDATE_GOLDEN") == "1":
        with open(GOLDEN, "w", encoding="utf-8") as fh:
            fh.write(text)
    with open(GOLDEN, encoding="utf-8") as fh:
        expected = fh.read()
    assert text == expected, "sbatch text changed; review the diff, then rerun with INSR_UPDATE_GOLDEN=1"


def test_sweep_is_one_job_array_and_resubmit_skips_done(slurm_cluster, tmp_path, capsys):
    overrides = tiny(str(tmp_path), "sweep.grid.seed=[0,1,2,3]", "launch.slurm.array_parallelism=2")
    assert main(["submit", CONFIG, *overrides, "--backend", "slurm"]) == 0
    sweep = os.path.join(tmp_path, "advection")
    runs = find_runs(sweep)
    states = [read_state(r) for r in runs]
    assert [s["state"] for s in states] == ["done"] * 4
    assert {s["backend"] for s in states} == {"slurm"}
    array_ids = {s["job_id"].split("_")[0] for s in states}
    assert len(array_ids) == 1, f"expected one job array, got {array_ids}"
    assert sorted(s["job_id"].split("_")[1] for s in states) == ["0", "1", "2", "3"]
    weights = []
    for run in runs:
        ds = xr.open_zarr(os.path.join(run, "store.zarr"))
        assert ds["committed"].values.tolist() == [1, 1, 1]
        assert np.isfinite(ds["weights"].values).all()
        weights.append(ds["weights"].values[-1])
    assert all(not np.allclose(weights[0], w) for w in weights[1:]), "different seeds gave equal weights"
    assert len(glob.glob(os.path.join(sweep, "slurm", "*_log.out"))) >= 4  # logs live with the sweep
    (array_id,) = array_ids
    with open(os.path.join(sweep, "slurm", f"{array_id}_submission.sh"), encoding="utf-8") as fh:
        script = fh.read()  # arrays get the same script as single jobs: USR2 caught early, passed on by bash
    assert "-m insr_hpc.slurm_entry" in script and "trap 'kill -USR2 \"$SRUN_PID\"" in script, script

    capsys.readouterr()
    assert main(["status", sweep]) == 0
    table = capsys.readouterr().out
    assert f"slurm/{array_id}_0 (COMPLETED)" in table  # squeue's state beside run.json's

    assert main(["submit", CONFIG, *overrides, "--backend", "slurm"]) == 0
    assert "4 run(s) already done, skipped" in capsys.readouterr().out
    assert [read_state(r)["job_id"] for r in runs] == [s["job_id"] for s in states]  # nothing resubmitted
