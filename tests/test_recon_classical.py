"""The classical baselines as registry models, through ``insr-hpc run`` and the store."""

import json

import numpy as np
import pytest
import xarray as xr

from _small import write_tas

from insr_hpc.cli import main


def write_smooth(path, n_t=6, h=16, w=20):
    lat, lon = np.linspace(20, 50, h), np.linspace(-130, -90, w)
    t = np.arange(n_t)[:, None, None]
    la, lo = np.radians(lat)[None, :, None], np.radians(lon)[None, None, :]
    vals = 270 + 10 * np.sin(3 * la + 0.2 * t) * np.cos(2 * lo) + 3 * np.cos(5 * lo - 0.1 * t)
    write_tas(path, vals, lat, lon)
    return vals


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classical")
    path = str(tmp / "smooth.nc")
    truth = write_smooth(path)
    out = {}
    for model in ("idw", "kriging"):
        code = main(["run", "configs/reconstruct.yaml", f"output.root={tmp / 'runs'}", f"name={model}",
                     f"data.path={path}", "data.variable=tas", f"network.model={model}", "task.name=task3",
                     "task.ratio=0.15", "device=cpu"])
        assert code == 0
        run_dir = tmp / "runs" / model / "r000"
        with open(run_dir / "run.json") as fh:
            out[model] = (xr.open_zarr(str(run_dir / "store.zarr")), json.load(fh))
    return truth, out


def test_idw_and_kriging_run_through_the_cli_and_beat_the_mean_field(runs):
    truth, out = runs
    obs = out["idw"][0].observed.values.astype(bool)
    mean_field = np.stack([np.full(truth.shape[1:], truth[t][obs[t]].mean()) for t in range(truth.shape[0])])
    mse_mean = ((mean_field - truth) ** 2).mean()
    for model, (ds, state) in out.items():
        assert state["state"] == "done" and ds.attrs["complete"] and ds.attrs["model"] == model
        rec = ds.reconstruction.values
        mse = ((rec - truth) ** 2).mean()
        span = truth.max() - truth.min()
        assert mse / span**2 == pytest.approx(state["summary"]["mse"], rel=1e-3)
        assert mse < 0.2 * mse_mean, (model, mse, mse_mean)
        assert np.isfinite(state["summary"]["val_mse"])  # validation points scored, as for a network
    # a smooth field: the fitted covariance interpolates better than distance weights
    assert out["kriging"][1]["summary"]["mse"] < out["idw"][1]["summary"]["mse"]


def test_idw_reproduces_its_training_points_and_ignores_the_validation_points(runs):
    truth, out = runs
    ds = out["idw"][0]
    obs, val = ds.observed.values.astype(bool), ds.validation.values.astype(bool)
    train = obs & ~val
    assert val.any() and not (val & ~obs).any()
    np.testing.assert_allclose(ds.reconstruction.values[train], truth[train], rtol=1e-6)
    assert np.abs(ds.reconstruction.values[val] - truth[val]).max() > 1e-2  # not given to the model
