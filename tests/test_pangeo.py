"""Run stores and the report's sweep.zarr open cleanly in the Pangeo stack (issue 21):
CF attributes on every variable, netCDF round trip, dask chunks, cf_xarray; and a store
written before its attributes were netCDF-ready is still read, verified and exported."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import CONFIG, tiny

from insr_hpc.cli import main
from insr_hpc.store import JSON_ATTRS, StepStore, VarSpec, decode_attrs, to_netcdf_safe

RECON = {
    "workload": "recon", "name": "rec", "seed": 3407, "device": "cpu",
    "data": {"path": "sample:A1B_north_america.nc", "variable": "air_temperature"},
    "task": {"name": "task1", "ratio": 0.05},
    "train": {"epochs": 2, "batch_steps": 120, "eval_every": 1, "checkpoint_every": 2},
    "network": {"model": "mmgn", "width": 8, "layers": 2, "latent": 4, "input_scale": 64.0},
    "output": {"figure_every": 0},
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[str, str]:
    """A tiny advection run (swept over time.dt) and a tiny reconstruction, and their report."""
    root = str(tmp_path_factory.mktemp("pangeo"))
    with open(CONFIG, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    cfg["sweep"] = {"grid": {"time.dt": [0.05]}}
    adv = os.path.join(root, "adv.yaml")
    with open(adv, "w", encoding="utf-8") as fh:
        yaml.safe_dump(cfg, fh)
    runs = os.path.join(root, "runs")
    assert main(["run", adv, *tiny(runs)]) == 0
    rec = os.path.join(root, "rec.yaml")
    with open(rec, "w", encoding="utf-8") as fh:
        yaml.safe_dump(RECON, fh)
    assert main(["run", rec, f"output.root={runs}"]) == 0
    assert main(["report", runs, "--no-figures"]) == 0
    stores = sorted(os.path.join(d, "store.zarr") for d, sub, _ in os.walk(runs) if "store.zarr" in sub)
    pde = [s for s in stores if "advection" in s]
    recon = [s for s in stores if os.sep + "rec" + os.sep in s]
    assert len(pde) == 1 and len(recon) == 1, stores
    return {"pde": pde[0], "recon": recon[0], "sweep": os.path.join(runs, "report", "sweep.zarr")}


KINDS = ("pde", "recon", "sweep")


@pytest.mark.parametrize("kind", KINDS)
def test_every_variable_has_long_name_and_units_and_the_dataset_its_conventions(sweep, kind):
    ds = xr.open_zarr(sweep[kind], decode_times=False)
    assert ds.attrs["Conventions"].startswith("CF-")
    missing = []
    for name, var in ds.variables.items():
        if "long_name" not in var.attrs:
            missing.append(f"{name}: long_name")
        # labels (strings) are not quantities: CF asks no units of them
        if var.dtype.kind not in "OUSTb" and "units" not in var.attrs:
            missing.append(f"{name}: units")
    assert not missing, missing


@pytest.mark.parametrize("kind", KINDS)
def test_to_netcdf_round_trips(sweep, kind, tmp_path):
    ds = xr.open_zarr(sweep[kind])
    path = str(tmp_path / f"{kind}.nc")
    ds.to_netcdf(path)  # as it is: no dict-valued attribute is left to refuse
    with xr.open_dataset(path) as back:
        back.load()
        assert sorted(back.variables) == sorted(ds.variables)
        for name in ds.variables:
            a, b = ds[name].values, back[name].values
            if a.dtype.kind in "OUS":
                assert [str(x) for x in a.ravel()] == [str(x) for x in b.ravel()], name
            else:
                np.testing.assert_array_equal(a, b, err_msg=name)
        assert _same_attrs(back.attrs, ds.attrs)


def _same_attrs(a, b) -> bool:
    da, db = decode_attrs(a), decode_attrs(b)
    assert sorted(da) == sorted(db)
    for k in da:
        x, y = da[k], db[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=k)
        else:
            assert x == y, k
    return True


def test_nested_attributes_are_json_text_and_decode_back(sweep):
    ds = xr.open_zarr(sweep["pde"])
    assert isinstance(ds.attrs["config"], str) and "config" in ds.attrs[JSON_ATTRS].split()
    attrs = decode_attrs(ds.attrs)
    assert attrs["config"]["problem"]["case"] == "advection" and isinstance(attrs["param_layout"], list)
    assert StepStore.read_attrs(sweep["pde"])["config"] == attrs["config"]
    assert attrs["complete"] == 1 and StepStore.open(sweep["pde"], mode="r").attrs["final_errors"]["rel_l2"] >= 0
    assert StepStore.open(sweep["pde"], mode="r").verify().ok
    sw = decode_attrs(xr.open_zarr(sweep["sweep"]).attrs)
    assert sw["swept_keys"] == ["time.dt"] and sw["primary_error"] == {"pde": "rel_l2", "recon": "mse"}


@pytest.mark.parametrize("kind", KINDS)
def test_opens_with_dask_chunks_and_computes(sweep, kind):
    import dask.array as da

    ds = xr.open_zarr(sweep[kind], chunks={})
    name = {"pde": "rel_l2", "recon": "reconstruction", "sweep": "rel_l2"}[kind]
    assert isinstance(ds[name].data, da.Array)
    mean = float(ds[name].mean().compute())
    assert np.isfinite(mean)
    assert mean == pytest.approx(float(np.nanmean(xr.open_zarr(sweep[kind])[name].values)), rel=1e-6)
    if kind == "recon":  # the field's chunks: one per time step (as stored), streamed by dask
        assert set(ds.reconstruction.chunks[0]) == {1}


def test_cf_xarray_finds_the_time_coordinate(sweep):
    import cf_xarray  # noqa: F401

    pde = xr.open_zarr(sweep["pde"])
    assert pde.cf["time"].name == "time" and pde.cf.standard_names["time"] == ["time"]
    assert pde.cf.axes["X"] == ["x"]
    recon = xr.open_zarr(sweep["recon"])
    assert recon.cf["time"].name == "time" and recon.cf["latitude"].name == "latitude"
    sw = xr.open_zarr(sweep["sweep"])
    assert sw.cf.standard_names["time"] == ["time"]


def test_sweep_names_and_per_run_timings(sweep):
    ds = xr.open_zarr(sweep["sweep"])
    assert ds["time__dt"].attrs["swept_key"] == "time.dt"
    assert "loss_max" in ds and "iterations_total" in ds and "loss" in ds  # loss: the reconstruction's per epoch
    assert ds["loss_max"].dims == ("run", "step") and ds["loss"].dims == ("run", "epoch")
    assert "checksum" not in ds and "committed" not in ds
    for name in ("seconds_per_step", "fit_seconds", "capped_substeps"):
        assert ds[name].dims == ("run",) and ds[name].attrs["long_name"], name
    run = [r for r in ds.run.values if r.startswith("advection/")][0]
    store = xr.open_zarr(sweep["pde"])
    n = int(ds.steps_done.sel(run=run))
    assert float(ds.fit_seconds.sel(run=run)) == float(store.seconds.values[0])
    assert float(ds.seconds_per_step.sel(run=run)) == pytest.approx(float(store.seconds.values[1:n].mean()))


def test_a_store_with_dict_attributes_is_still_read_verified_and_exported(tmp_path):
    """Stores written before attributes were netCDF-ready hold dicts and booleans."""
    path = str(tmp_path / "store.zarr")
    variables = {"step": VarSpec(("step",), (3,), "int32", {"long_name": "step", "units": "1"}, np.arange(3)),
                 "rel_l2": VarSpec(("step",), (3,), "float64", {"long_name": "error", "units": "1"})}
    store = StepStore.create(path, variables, {"config": {"time": {"dt": 0.1}}, "workload": "pde"})
    for k in range(3):
        store.commit_step(k, {"rel_l2": 0.1 * k})
    store.write_arrays({})
    # rewrite the attributes as an older version did: plain JSON values, no json_attrs
    meta_path = os.path.join(path, "zarr.json")
    with open(meta_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    old = decode_attrs(meta["attributes"])
    old.pop(JSON_ATTRS, None)
    old["complete"] = True
    meta["attributes"] = old
    with open(meta_path, "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    reopened = StepStore.open(path)
    assert reopened.verify().ok and reopened.attrs["config"] == {"time": {"dt": 0.1}}
    assert StepStore.read_attrs(path)["complete"] is True
    reopened.finish({"final_errors": {"rel_l2": 0.2}})  # resumed by this version: new attributes as JSON text
    assert reopened.verify().ok and reopened.attrs["final_errors"] == {"rel_l2": 0.2}
    assert reopened.attrs["config"] == {"time": {"dt": 0.1}}
    ds = xr.open_zarr(path)
    with pytest.raises(TypeError):
        ds.to_netcdf(str(tmp_path / "raw.nc"))  # the old dict is still there
    to_netcdf_safe(ds, str(tmp_path / "safe.nc"))
    with xr.open_dataset(str(tmp_path / "safe.nc")) as back:
        assert decode_attrs(back.attrs)["config"] == {"time": {"dt": 0.1}}
        np.testing.assert_array_equal(back.rel_l2.values, [0.0, 0.1, 0.2])
