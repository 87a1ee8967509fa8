"""Reconstruction data-parallel: 2 ranks under torchrun (real gloo process group) train
the same weights as 1 process, within float tolerance."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from _small import write_config
from conftest import BIN, REPO

from insr_hpc.plan import plan_runs
from insr_hpc.run import read_state

SMALL = {
    "workload": "recon", "name": "ddp", "seed": 3407, "device": "cpu",
    "data": {"path": "sample:A1B_north_america.nc", "variable": "air_temperature"},
    "task": {"name": "task3", "ratio": 0.05},
    # 240 steps in batches of 40: each rank takes 20 time steps of every batch
    "train": {"epochs": 2, "batch_steps": 40, "eval_every": 2, "validation": 0.1},
    "network": {"model": "mmgn", "width": 24, "layers": 2, "latent": 8, "input_scale": 64.0},
    "output": {"figure_every": 0},
}


def _spec(tmp_path) -> str:
    cfg = write_config(tmp_path, {**SMALL, "output": {**SMALL["output"], "root": str(tmp_path / "runs")}})
    return plan_runs(cfg).specs[0].save()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]


def _store(spec: str) -> xr.Dataset:
    return xr.open_zarr(os.path.join(os.path.dirname(spec), "store.zarr"))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    spec = _spec(tmp_path_factory.mktemp("single"))
    _run([sys.executable, "-m", "insr_hpc.launch.ddp", spec])
    return _store(spec)


def test_two_ranks_train_the_same_weights_as_one_process(single, tmp_path):
    spec = _spec(tmp_path)
    _run([os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(_free_port()), "-m", "insr_hpc.launch.ddp", spec])
    two = _store(spec)
    state = read_state(os.path.dirname(spec))
    assert state["state"] == "done" and state["world_size"] == 2
    np.testing.assert_allclose(two.weights.values, single.weights.values, rtol=0, atol=1e-5)
    np.testing.assert_allclose(two.latent_code.values, single.latent_code.values, rtol=0, atol=1e-5)
    np.testing.assert_allclose(two.loss.values, single.loss.values, rtol=1e-5)
    np.testing.assert_allclose(two.val_mse.values, single.val_mse.values, rtol=1e-4)
    assert np.abs(single.latent_code.values).max() > 1e-3  # training moved the codes from zero
