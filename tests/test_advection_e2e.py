"""End to end: a short advection run through the CLI, its store reopened with xarray
and its TensorBoard events read back."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import torch
import xarray as xr
from _small import SMALL_ADVECTION, cli, write_config

from insr_hpc.fields import build_model, load_flat_params
from insr_hpc.fields.siren import Siren
from insr_hpc.pde.cases.advection import initial_profile
from insr_hpc.store import decode_attrs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adv")
    cfg = write_config(tmp, dict(SMALL_ADVECTION, output={**SMALL_ADVECTION["output"], "root": str(tmp / "runs")}))
    res = cli("run", cfg)
    assert res.returncode == 0, res.stderr
    return os.path.join(tmp, "runs", "adv", "r000")


def test_error_vs_analytic_is_far_below_a_wrong_answer(run_dir):
    ds = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    assert int(ds.committed.sum()) == ds.sizes["step"] == 9
    t_end = float(ds.time[-1])
    x = ds.x.values
    exact = initial_profile("gaussian", x - 0.25 * t_end, -1.5, 0.1, 0)

    def rel(u):
        return np.linalg.norm(u - exact) / np.linalg.norm(exact)

    standing = rel(initial_profile("gaussian", x, -1.5, 0.1, 0))  # a = 0
    backwards = rel(initial_profile("gaussian", x + 0.25 * t_end, -1.5, 0.1, 0))  # sign of a flipped
    err = float(ds.rel_l2[-1])
    assert err == pytest.approx(rel(ds.field[-1].values.astype(float)), rel=1e-5)
    assert err < 0.08
    assert err < min(standing, backwards) / 8, (err, standing, backwards)
    assert np.all(np.isfinite(ds.rel_l2.values)) and float(ds.max_err.max()) < 0.15


def test_store_round_trip_rebuilds_the_network(run_dir):
    ds = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    ds.attrs = decode_attrs(ds.attrs)  # nested attributes are JSON text in the store (netCDF-ready)
    assert ds.field.dims == ("step", "x") and "time" in ds.field.coords
    assert ds.attrs["complete"] == 1 and ds.attrs["store_version"] == 3
    layout = ds.attrs["param_layout"]
    assert layout[0]["name"].startswith("u.") and sum(e["size"] for e in layout) == ds.sizes["parameter"]
    cfg = ds.attrs["config"]
    params = Siren.Params(**cfg["network"])
    net = build_model(params, 1, 1)
    step = 5
    load_flat_params(net, ds.weights.sel(step=step).values)
    with torch.no_grad():
        again = net(torch.tensor(ds.x.values, dtype=torch.float32)[:, None])[:, 0].numpy()
    np.testing.assert_allclose(again, ds.field.sel(step=step).values, rtol=0, atol=1e-6)
    # the layout alone (names, shapes, offsets) recovers each tensor
    for entry in layout:
        name = entry["name"].split(".", 1)[1]
        chunk = ds.weights.sel(step=step).values[entry["offset"] : entry["offset"] + entry["size"]]
        np.testing.assert_array_equal(chunk.reshape(entry["shape"]), dict(net.named_parameters())[name].detach().numpy())


def test_tensorboard_events_read_back(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = EventAccumulator(os.path.join(run_dir, "tb", "steps"), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = steps.Tags()
    errors = steps.Scalars("error/rel_l2")
    assert [e.step for e in errors] == list(range(9))
    ds = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    np.testing.assert_allclose([e.value for e in errors], ds.rel_l2.values, rtol=1e-6)
    assert [e.step for e in steps.Scalars("iterations/advance")] == list(range(1, 9))
    assert {e.step for e in steps.Images("field")} == {0, 4, 8}
    assert glob.glob(os.path.join(run_dir, "tb", "steps", "hparams", "events.*"))
    iters = EventAccumulator(os.path.join(run_dir, "tb", "iters"), size_guidance={"scalars": 0}).Reload()
    total = int(ds.iterations.where(ds.iterations > 0).sum())
    logged = iters.Scalars("loss/advance")
    assert len(logged) >= (total - int(ds.iterations[0, 0])) // 10 - 8
    assert all(e.step % 10 == 0 for e in logged)
    assert "loss/fit" in iters.Tags()["scalars"] and "error/max_err" in tags["scalars"]


def test_status_reports_done_with_progress(run_dir):
    res = cli("status", os.path.dirname(run_dir))
    assert res.returncode == 0, res.stderr
    row = [line for line in res.stdout.splitlines() if line.startswith("r000")][0]
    assert "done" in row and "9/9" in row and "rel_l2=" in row
