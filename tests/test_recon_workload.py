"""End to end on real data: store, TensorBoard, resume, and an error that beats the
mean-field predictor."""

import os

import numpy as np
import pytest
import xarray as xr
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insr_hpc.catalog import build_config
from insr_hpc.config import config_to_dict
from insr_hpc.recon import trainer as trainer_mod
from insr_hpc.recon.workload import run_recon
from insr_hpc.run import RunSpec, execute
from insr_hpc.runtime import RunEnv

import torch

SMALL = {
    "workload": "recon", "name": "t", "seed": 3407, "device": "cpu",
    "data": {"path": "sample:A1B_north_america.nc", "variable": "air_temperature"},
    "task": {"name": "task3", "ratio": 0.05},
    "train": {"epochs": 6, "batch_steps": 40, "eval_every": 3, "checkpoint_every": 2},
    "network": {"model": "mmgn", "width": 32, "layers": 2, "latent": 8, "input_scale": 64.0},
    "output": {"figure_every": 3},
}


def env():
    return RunEnv(device=torch.device("cpu"), progress=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("recon") / "r000")
    spec = RunSpec("r000", run_dir, config_to_dict(build_config(SMALL)))
    spec.save()
    summary = execute(spec, env(), threads=1)
    return run_dir, summary


def test_store_opens_with_xarray_and_beats_the_mean_field(finished):
    run_dir, summary = finished
    ds = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    assert ds.attrs["complete"] and ds.attrs["store_kind"] == "recon" and ds.attrs["store_version"] == 3
    assert ds.reconstruction.dims == ("time", "latitude", "longitude") and ds.reconstruction.shape == (240, 37, 49)
    assert ds.reconstruction.attrs["units"] == "K" and ds.latitude.attrs["units"] == "degrees_north"
    assert ds.time.dt.year[0] == 1860  # CF time decoded from the source's units and calendar
    assert ds.committed.values.all() and ds.latent_code.shape == (240, 8)
    truth, rec, obs = ds.target.values, ds.reconstruction.values, ds.observed.values.astype(bool)
    np.testing.assert_allclose(ds.error.values, rec - truth, atol=1e-3)
    # the mean-field predictor: each time step's mean of its observed values, everywhere
    mean_field = np.stack([np.full(truth.shape[1:], truth[t][obs[t]].mean()) for t in range(truth.shape[0])])
    lo, hi = np.nanmin(truth), np.nanmax(truth)
    mse_mean = ((mean_field - truth) ** 2).mean() / (hi - lo) ** 2
    mse = ((rec - truth) ** 2).mean() / (hi - lo) ** 2
    assert mse == pytest.approx(summary["mse"], rel=1e-4)
    assert mse < 0.5 * mse_mean, (mse, mse_mean)
    assert np.isfinite(ds.mse.values[[2, 5]]).all() and np.isnan(ds.mse.values[[0, 1, 3, 4]]).all()


def test_tensorboard_holds_scalars_and_maps(finished):
    run_dir, _ = finished
    acc = EventAccumulator(os.path.join(run_dir, "tb", "steps"), size_guidance={"images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("mse")] == [3, 6]
    assert len(acc.Scalars("train/loss")) == 6
    assert [e.step for e in acc.Images("maps")] == [3, 6]


def test_resume_after_a_crash_matches_uninterrupted(finished, tmp_path, monkeypatch):
    run_dir_ref, _ = finished
    cfg = build_config(SMALL)
    original = trainer_mod.Trainer.train_epoch
    calls = {"n": 0}

    def crashing(self):
        calls["n"] += 1
        if calls["n"] == 4:  # dies in epoch 4; the last checkpoint is after epoch 2
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", crashing)
    run_dir = str(tmp_path / "r000")
    with pytest.raises(KeyboardInterrupt):
        run_recon(cfg, run_dir, env())
    ds = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    assert not ds.attrs["complete"] and ds.committed.values.tolist() == [1, 1, 1, 0, 0, 0]
    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", original)
    run_recon(cfg, run_dir, env())
    a = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    b = xr.open_zarr(os.path.join(run_dir_ref, "store.zarr"))
    assert a.attrs["complete"]
    np.testing.assert_array_equal(a.reconstruction.values, b.reconstruction.values)
    np.testing.assert_array_equal(a.loss.values, b.loss.values)
    np.testing.assert_array_equal(a.latent_code.values, b.latent_code.values)
