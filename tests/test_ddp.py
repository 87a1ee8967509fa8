"""Data-parallel equivalence: 2 ranks on one global batch = 1 process, under torchrun
and under mpiexec (real gloo process groups); the Slurm host-list parser."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from conftest import BIN, CONFIG, REPO, tiny

from insr_hpc.launch.ddp import ProcessGroupInfo, detect, expand_nodelist
from insr_hpc.plan import plan_runs
from insr_hpc.run import read_state


GN = ["optim.name=gauss_newton", "optim.gram_dtype=float64", "optim.init_warmup=30", "optim.max_iters=4",
      "optim.init_max_iters=4", "sampling.interior=512"]


def _spec(root: str, *extra: str) -> str:
    # sampling.interior is divisible by 2, so each rank takes exactly half the batch.
    return plan_runs(CONFIG, tiny(root, "sampling.interior=128", *extra)).specs[0].save()


def _weights(spec_path: str) -> np.ndarray:
    return xr.open_zarr(os.path.join(os.path.dirname(spec_path), "store.zarr"))["weights"].values


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> np.ndarray:
    spec = _spec(str(tmp_path_factory.mktemp("single")))
    _run([sys.executable, "-m", "insr_hpc.launch.ddp", spec])
    return _weights(spec)


def _two_ranks(spec: str, launcher: str) -> None:
    if launcher == "torchrun":
        cmd = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "insr_hpc.launch.ddp", spec]
    else:
        mpiexec = os.path.join(BIN, "mpiexec")
        if not os.path.exists(mpiexec):
            pytest.skip("mpiexec not found next to python (pip install mpich)")
        cmd = [mpiexec, "-n", "2", sys.executable, "-m", "insr_hpc.launch.ddp", spec]
    _run(cmd)


def test_gauss_newton_two_ranks_match_one_process(tmp_path):
    """Ranks sum their rows' normal equations: the same Levenberg–Marquardt steps (float
    tolerance: summation order differs)."""
    one = _spec(str(tmp_path / "one"), *GN)
    _run([sys.executable, "-m", "insr_hpc.launch.ddp", one])
    two = _spec(str(tmp_path / "two"), *GN)
    _two_ranks(two, "torchrun")
    w1, w2 = _weights(one), _weights(two)
    assert np.abs(w1[-1] - w1[0]).max() > 1e-3
    np.testing.assert_allclose(w2, w1, rtol=0, atol=1e-4)


@pytest.mark.parametrize("launcher", ["torchrun", "mpiexec"])
def test_two_ranks_match_one_process(single, tmp_path, launcher):
    spec = _spec(str(tmp_path))
    _two_ranks(spec, launcher)
    weights = _weights(spec)
    assert read_state(os.path.dirname(spec))["state"] == "done"
    assert np.abs(weights[-1] - weights[0]).max() > 1e-3  # training moved the weights
    np.testing.assert_allclose(weights, single, rtol=0, atol=1e-5)


def test_detect_reads_slurm_and_torchrun_variables():
    slurm = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "4242",
             "SLURM_JOB_NODELIST": "gpu[07-08]"}
    assert detect(slurm) == ProcessGroupInfo("slurm", 3, 8, 1, "gpu07", 24242)
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29400"}
    assert detect(torchrun) == ProcessGroupInfo("torchrun", 1, 2, 1, "10.0.0.5", 29400)
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).world_size == 1


def test_expand_nodelist_without_scontrol(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # force the built-in parser
    assert expand_nodelist("a[1-3,7],b2,c[009-010]") == ["a1", "a2", "a3", "a7", "b2", "c009", "c010"]


def test_local_backend_runs_ddp_through_torchrun(single, tmp_path):
    """``launch.ddp.nproc_per_node=2`` on the local backend: torchrun, 2 ranks, same weights."""
    from _small import cli

    res = cli("submit", CONFIG, *tiny(str(tmp_path), "sampling.interior=128", "launch.ddp.nproc_per_node=2"))
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir = os.path.join(tmp_path, "advection", "r000")
    np.testing.assert_allclose(_weights(os.path.join(run_dir, "spec.json")), single, rtol=0, atol=1e-5)
    state = read_state(run_dir)
    assert state["state"] == "done" and state["world_size"] == 2


def test_local_backend_refuses_several_nodes(tmp_path):
    from _small import cli

    res = cli("submit", CONFIG, *tiny(str(tmp_path), "launch.ddp.nodes=2"))
    assert res.returncode == 2 and "launch.ddp.nodes: the local backend runs on one machine" in res.stderr
    assert not os.listdir(tmp_path)
